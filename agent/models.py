"""Turning a model spec into a pydantic-ai `Model`, with retries and fallbacks.

Accepted specs:
- a `pydantic_ai.models.Model` instance (tests pass `FunctionModel` / `TestModel`);
- a pydantic-ai model name, `openai:gpt-4.1-mini`, `anthropic:claude-sonnet-4-5`, ...; with
  `RESEARCH_AGENT_OPENAI_BASE_URL` set, `openai:NAME` (and `openai-chat:NAME`) talks to that
  OpenAI-compatible server through Chat Completions, the API such servers (vLLM, Ollama, LM Studio)
  share; `openai-responses:NAME` uses its Responses API instead;
- `factory:package.module:callable`, a zero-argument callable returning a `Model`. Workers run in
  other processes and receive the model as text, so this is how a custom model reaches them.

Transient provider errors (429, 5xx, timeouts, connection errors) are retried by pydantic-ai's
tenacity transport, honouring Retry-After; `fallback_models` wrap the primary in a `FallbackModel`.
That transport is the only retry layer: the OpenAI and Anthropic SDK clients are built with
`max_retries=0`, and when the retries run out the last error response is handed back to the SDK, so
it raises its usual status error (pydantic-ai's `ModelHTTPError`, with the provider's status and
message) rather than a bare `httpx2.HTTPStatusError` that neither `FallbackModel` nor the runner
would recognise as a provider failure.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

import httpx2
from openai import AsyncOpenAI
from pydantic_ai.exceptions import UserError
from pydantic_ai.models import Model, create_async_httpx2_client, infer_model
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers import Provider, infer_provider, infer_provider_class
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.retries import AsyncHTTPX2TenacityTransport, RetryConfig, wait_retry_after
from tenacity import RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from agent.errors import ConfigurationError
from agent.settings import Settings, is_offline_model

ModelSpec = Model | str
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
OPENAI_PROVIDERS = frozenset({"openai", "openai-chat", "openai-responses"})
# pydantic-ai's default pool for the clients it creates.
_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)
# Headers that no longer describe a body that has been read (and decoded) into memory.
_STALE_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _raise_for_retryable(response: httpx2.Response) -> None:
    if response.status_code in RETRYABLE_STATUS:
        response.raise_for_status()


class _BufferRetryableErrors(httpx2.AsyncBaseTransport):
    """Reads the (small) body of a retryable error response, so the last one can be returned intact."""

    def __init__(self, wrapped: httpx2.AsyncBaseTransport) -> None:
        self.wrapped = wrapped

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.wrapped.handle_async_request(request)
        if response.status_code in RETRYABLE_STATUS:
            await response.aread()
        return response

    async def __aenter__(self) -> _BufferRetryableErrors:
        await self.wrapped.__aenter__()
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.wrapped.__aexit__(*args)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        await self.wrapped.aclose()


def _last_response_or_raise(state: RetryCallState) -> httpx2.Response:
    """Retries exhausted: give the SDK the last error response (it raises its status error from it)."""
    assert state.outcome is not None
    error = state.outcome.exception()
    if isinstance(error, httpx2.HTTPStatusError):
        failed = error.response
        headers = [(k, v) for k, v in failed.headers.multi_items() if k.lower() not in _STALE_BODY_HEADERS]
        return httpx2.Response(failed.status_code, headers=headers, content=failed.content, request=failed.request)
    return state.outcome.result()  # type: ignore[no-any-return]  # re-raises the timeout / network error


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
            retry_error_callback=_last_response_or_raise,
        ),
        validate_response=_raise_for_retryable,
        wrapped=_BufferRetryableErrors(httpx2.AsyncHTTPTransport(limits=_LIMITS)),
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


def _openai_provider(settings: Settings, http_client: httpx2.AsyncClient) -> OpenAIProvider:
    """OpenAI (or the configured OpenAI-compatible server), with the SDK's own retries off."""
    if settings.openai_base_url:
        base_url: str | None = settings.openai_base_url
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
    else:
        base_url = None  # the SDK reads OPENAI_BASE_URL
        key = os.environ.get("OPENAI_API_KEY", "")
        if not key:
            return OpenAIProvider(http_client=http_client)  # raises pydantic-ai's missing-key error
    client = AsyncOpenAI(base_url=base_url, api_key=key, http_client=http_client, max_retries=0)
    return OpenAIProvider(openai_client=client)


def _anthropic_provider(http_client: httpx2.AsyncClient) -> Provider[object]:
    from anthropic import AsyncAnthropic
    from pydantic_ai.providers.anthropic import AnthropicProvider

    key = os.environ.get("ANTHROPIC_API_KEY", "")
    if not key:
        return AnthropicProvider(http_client=http_client)  # type: ignore[return-value]  # raises missing-key
    client = AsyncAnthropic(api_key=key, http_client=http_client, max_retries=0)
    return AnthropicProvider(anthropic_client=client)  # type: ignore[return-value]


def _single_model(spec: ModelSpec, settings: Settings, http_client: httpx2.AsyncClient) -> Model:
    if isinstance(spec, Model):
        return spec
    if spec.startswith("factory:"):
        return _load_factory(spec)
    if is_offline_model(spec):
        from agent.offline.model import offline_model

        return offline_model()

    def provider_factory(name: str) -> Provider[object]:
        if name in OPENAI_PROVIDERS:
            return _openai_provider(settings, http_client)  # type: ignore[return-value]
        if name == "anthropic":
            return _anthropic_provider(http_client)
        provider_class = infer_provider_class(name)
        try:
            return provider_class(http_client=http_client)  # type: ignore[call-arg]
        except TypeError:
            return infer_provider(name)

    try:
        provider_name, _, model_name = spec.partition(":")
        if settings.openai_base_url and model_name and provider_name in OPENAI_PROVIDERS:
            # OpenAI-compatible servers speak Chat Completions; the Responses API only when asked for.
            model_class = OpenAIResponsesModel if provider_name == "openai-responses" else OpenAIChatModel
            return model_class(model_name, provider=_openai_provider(settings, http_client))
        return infer_model(spec, provider_factory=provider_factory)
    except UserError as exc:
        raise ConfigurationError(f"model {spec!r}: {exc}") from exc
    except ValueError as exc:
        raise ConfigurationError(f"unknown model {spec!r}: {exc}") from exc


def resolve_model(
    spec: ModelSpec,
    *,
    settings: Settings,
    fallback_models: Sequence[str] = (),
    http_client: httpx2.AsyncClient,
) -> Model:
    """The model a run uses: the primary, wrapped in a `FallbackModel` when fallbacks are configured."""
    primary = _single_model(spec, settings, http_client)
    if not fallback_models:
        return primary
    fallbacks = [_single_model(name, settings, http_client) for name in fallback_models]
    return FallbackModel(primary, *fallbacks)
