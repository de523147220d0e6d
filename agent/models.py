"""Turning a model spec into a pydantic-ai `Model`, with retries and fallbacks.

Accepted specs:
- a `pydantic_ai.models.Model` instance (tests pass `FunctionModel` / `TestModel`);
- a pydantic-ai model name, `openai:gpt-4.1-mini`, `anthropic:claude-sonnet-4-5`, ...; with
  `RESEARCH_AGENT_OPENAI_BASE_URL` set, `openai:NAME` talks to that OpenAI-compatible server;
- `factory:package.module:callable`, a zero-argument callable returning a `Model`. Workers run in
  other processes and receive the model as text, so this is how a custom model reaches them.

Transient provider errors (429, 5xx, timeouts, connection errors) are retried by pydantic-ai's
tenacity transport, honouring Retry-After; `fallback_models` wrap the primary in a `FallbackModel`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import httpx2
from pydantic_ai.models import Model, create_async_httpx2_client, infer_model
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.providers import Provider, infer_provider, infer_provider_class
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.retries import AsyncHTTPX2TenacityTransport, RetryConfig, wait_retry_after
from pydantic_ai.exceptions import UserError
from tenacity import retry_if_exception_type, stop_after_attempt, wait_exponential

from agent.errors import ConfigurationError
from agent.settings import Settings

ModelSpec = Model | str
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def _raise_for_retryable(response: httpx2.Response) -> None:
    if response.status_code in RETRYABLE_STATUS:
        response.raise_for_status()


def retrying_http_client(settings: Settings) -> httpx2.AsyncClient:
    """An HTTP client for providers that retries transient failures with Retry-After-aware backoff."""
    transport = AsyncHTTPX2TenacityTransport(
        config=RetryConfig(
            retry=retry_if_exception_type((httpx2.HTTPStatusError, httpx2.TimeoutException, httpx2.NetworkError)),
            wait=wait_retry_after(
                fallback_strategy=wait_exponential(multiplier=0.5, max=settings.provider_max_wait_seconds),
                max_wait=settings.provider_max_wait_seconds,
            ),
            stop=stop_after_attempt(settings.provider_max_retries + 1),
            reraise=True,
        ),
        validate_response=_raise_for_retryable,
    )
    return create_async_httpx2_client(
        timeout=httpx2.Timeout(settings.model_request_timeout_seconds, connect=10), transport=transport
    )


def model_label(model: ModelSpec) -> str:
    """The text stored in a run's config for this model."""
    if isinstance(model, str):
        return model
    return f"{model.system}:{model.model_name}"


def _load_factory(spec: str) -> Model:
    target = spec.removeprefix("factory:")
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"model {spec!r}: expected `factory:package.module:callable`")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"model {spec!r}: cannot import {target}: {exc}") from exc
    model = factory()
    if not isinstance(model, Model):
        raise ConfigurationError(f"model {spec!r}: {target}() returned {type(model).__name__}, not a Model")
    return model


def _single_model(spec: ModelSpec, settings: Settings, http_client: httpx2.AsyncClient) -> Model:
    if isinstance(spec, Model):
        return spec
    if spec.startswith("factory:"):
        return _load_factory(spec)

    def provider_factory(name: str) -> Provider[object]:
        if name == "openai" and settings.openai_base_url:
            key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
            return OpenAIProvider(base_url=settings.openai_base_url, api_key=key, http_client=http_client)
        provider_class = infer_provider_class(name)
        try:
            return provider_class(http_client=http_client)  # type: ignore[call-arg]
        except TypeError:
            return infer_provider(name)

    try:
        return infer_model(spec, provider_factory=provider_factory)
    except UserError as exc:
        raise ConfigurationError(f"model {spec!r}: {exc}") from exc
    except ValueError as exc:
        raise ConfigurationError(f"unknown model {spec!r}: {exc}") from exc


def resolve_model(
    spec: ModelSpec, *, settings: Settings, fallback_models: Sequence[str] = (), http_client: httpx2.AsyncClient
) -> Model:
    """The model a run uses: the primary, wrapped in a `FallbackModel` when fallbacks are configured."""
    primary = _single_model(spec, settings, http_client)
    if not fallback_models:
        return primary
    fallbacks = [_single_model(name, settings, http_client) for name in fallback_models]
    return FallbackModel(primary, *fallbacks)
