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
tenacity transport, honouring Retry-After, each wait lengthened by random jitter (`jittered`);
`fallback_models` wrap the primary in a `FallbackModel`; a worker's `guard` (agent/durable/providers.py) puts
each provider model behind a circuit breaker and shared rate limits.
That transport is the only retry layer: the OpenAI and Anthropic SDK clients are built with
`max_retries=0`, and when the retries run out the last error response is handed back to the SDK, so
it raises its usual status error (pydantic-ai's `ModelHTTPError`, with the provider's status and
message) rather than a bare `httpx2.HTTPStatusError` that neither `FallbackModel` nor the runner
would recognise as a provider failure.
"""

from __future__ import annotations

import importlib
import os
import random
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import httpx2
from pydantic_ai.exceptions import UserError
from pydantic_ai.models import Model, create_async_httpx2_client, infer_model
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.providers import Provider, infer_provider, infer_provider_class
from pydantic_ai.retries import AsyncHTTPX2TenacityTransport, RetryConfig, wait_retry_after
from tenacity import RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from agent.errors import ConfigurationError
from agent.settings import Settings, env_var, is_offline_model

if TYPE_CHECKING:
    from pydantic_ai.providers.openai import OpenAIProvider

    from agent.config import RunConfig

ModelSpec = Model | str
ModelGuard = Callable[[Model, str, bool], Model]
"""Wraps a provider model resolved from a name: (model, the name, whether it is the last of its chain, so may
wait for its circuit breaker rather than fail over) -> the model to use (`agent.durable.providers`)."""
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


def jittered(wait: Callable[[RetryCallState], float], ratio: float) -> Callable[[RetryCallState], float]:
    """`wait` lengthened by a random 0..`ratio` fraction of itself: never shorter (a Retry-After stays honoured),
    and clients that failed together (runs, workers) do not all retry at the same instant."""

    def wait_with_jitter(state: RetryCallState) -> float:
        base = wait(state)
        return base + random.uniform(0, base * ratio)

    return wait_with_jitter


def retrying_http_client(settings: Settings) -> httpx2.AsyncClient:
    """An HTTP client for providers that retries transient failures with Retry-After-aware backoff and jitter."""
    transport = AsyncHTTPX2TenacityTransport(
        config=RetryConfig(
            retry=retry_if_exception_type((httpx2.HTTPStatusError, httpx2.TimeoutException, httpx2.NetworkError)),
            wait=jittered(
                wait_retry_after(
                    fallback_strategy=wait_exponential(multiplier=0.5, max=settings.provider_max_wait_seconds),
                    max_wait=settings.provider_max_wait_seconds,
                ),
                settings.provider_retry_jitter,
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


MODEL_FORMS = (
    "`offline`, `auto`, `openai:NAME` (with OPENAI_API_KEY set, or RESEARCH_AGENT_OPENAI_BASE_URL for an "
    "OpenAI-compatible server), `anthropic:NAME` (with ANTHROPIC_API_KEY set), another pydantic-ai "
    "`provider:NAME` with that provider's key, or `factory:package.module:callable`"
)
"""The model specs a string may be, for error messages."""
MODEL_ARGUMENT = "--model (model=)"
"""How errors name a model given as an argument (`research-agent ask --model`, `Runtime.submit(model=)`)."""
_PROVIDER_ENV_VAR = re.compile(r"Set the `([A-Z][A-Z0-9_]*)` environment variable")


class _Unresolvable(Exception):
    """Why a model spec cannot become a `Model`, in words; the callers add the spec and where it came from."""


def _factory_callable(spec: str) -> Callable[[], object]:
    """The callable a `factory:package.module:callable` spec names, imported but not called."""
    target = spec.removeprefix("factory:")
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise _Unresolvable("a factory must be written `factory:package.module:callable`")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise _Unresolvable(f"cannot import {target}: {exc}") from exc
    if not callable(factory):
        raise _Unresolvable(f"{target} is a {type(factory).__name__}, not a callable returning a Model")
    return factory  # type: ignore[no-any-return]


def _load_factory(spec: str) -> Model:
    model = _factory_callable(spec)()
    if not isinstance(model, Model):
        target = spec.removeprefix("factory:")
        raise _Unresolvable(f"{target}() returned {type(model).__name__}, not a Model")
    return model


def _openai_provider(settings: Settings, http_client: httpx2.AsyncClient) -> OpenAIProvider:
    """OpenAI (or the configured OpenAI-compatible server), with the SDK's own retries off.

    The SDK is imported here, not at the top: it takes half a second to import, which every offline command,
    worker and test process would otherwise pay (as for Anthropic below).
    """
    from openai import AsyncOpenAI
    from pydantic_ai.providers.openai import OpenAIProvider

    if settings.openai_base_url:
        base_url: str | None = settings.openai_base_url
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
    else:
        base_url = None  # the SDK reads OPENAI_BASE_URL
        key = os.environ.get("OPENAI_API_KEY", "")
        if not key:
            if not os.environ.get("OPENAI_BASE_URL"):
                raise _Unresolvable("OPENAI_API_KEY is not set")
            return OpenAIProvider(http_client=http_client)  # a keyless server at OPENAI_BASE_URL
    client = AsyncOpenAI(base_url=base_url, api_key=key, http_client=http_client, max_retries=0)
    return OpenAIProvider(openai_client=client)


def _anthropic_provider(http_client: httpx2.AsyncClient) -> Provider[object]:
    from anthropic import AsyncAnthropic
    from pydantic_ai.providers.anthropic import AnthropicProvider

    key = os.environ.get("ANTHROPIC_API_KEY", "")
    if not key:
        raise _Unresolvable("ANTHROPIC_API_KEY is not set")
    client = AsyncAnthropic(api_key=key, http_client=http_client, max_retries=0)
    return AnthropicProvider(anthropic_client=client)  # type: ignore[return-value]


def _provider(name: str, settings: Settings, http_client: httpx2.AsyncClient) -> Provider[object]:
    if name in OPENAI_PROVIDERS:
        return _openai_provider(settings, http_client)  # type: ignore[return-value]
    if name == "anthropic":
        return _anthropic_provider(http_client)
    provider_class = infer_provider_class(name)
    try:
        return provider_class(http_client=http_client)  # type: ignore[call-arg]
    except TypeError:
        return infer_provider(name)


def _user_error_reason(error: UserError) -> str:
    """pydantic-ai's words, without its advice to call `Agent('test')` (not something a user of this agent does)."""
    text = str(error)
    missing = _PROVIDER_ENV_VAR.search(text)
    if missing:
        return f"{missing.group(1)} is not set"
    return text.split(" To try Pydantic AI", 1)[0].strip()


def _single_model(spec: ModelSpec, settings: Settings, http_client: httpx2.AsyncClient) -> Model:
    """`spec` as a `Model`; `_Unresolvable` says why it cannot be one. Builds clients, never connects."""
    if isinstance(spec, Model):
        return spec
    if spec.startswith("factory:"):
        return _load_factory(spec)
    if is_offline_model(spec):
        from agent.offline.model import offline_model

        return offline_model()
    try:
        provider_name, _, model_name = spec.partition(":")
        if settings.openai_base_url and model_name and provider_name in OPENAI_PROVIDERS:
            # OpenAI-compatible servers speak Chat Completions; the Responses API only when asked for.
            from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel

            model_class = OpenAIResponsesModel if provider_name == "openai-responses" else OpenAIChatModel
            return model_class(model_name, provider=_openai_provider(settings, http_client))
        return infer_model(spec, provider_factory=lambda name: _provider(name, settings, http_client))
    except UserError as exc:
        raise _Unresolvable(_user_error_reason(exc)) from exc
    except ImportError as exc:  # the provider's SDK is an optional extra that is not installed
        raise _Unresolvable(str(exc)) from exc
    except ValueError as exc:  # an unknown provider
        raise _Unresolvable(str(exc)) from exc


def _resolve_one(
    spec: ModelSpec,
    settings: Settings,
    http_client: httpx2.AsyncClient,
    *,
    source: str,
    guard: ModelGuard | None = None,
    last: bool = True,
) -> Model:
    try:
        model = _single_model(spec, settings, http_client)
    except _Unresolvable as exc:
        raise ConfigurationError(f"{source} {model_label(spec)!r}: {exc} — expected {MODEL_FORMS}") from exc
    if guard is None or not isinstance(spec, str) or spec.startswith("factory:") or is_offline_model(spec):
        return model  # only provider models get a breaker: not Model objects, factories or the offline model
    return guard(model, spec, last)


def resolve_model(
    spec: ModelSpec,
    *,
    settings: Settings,
    fallback_models: Sequence[str] = (),
    http_client: httpx2.AsyncClient,
    guard: ModelGuard | None = None,
) -> Model:
    """The model a run uses: the primary, wrapped in a `FallbackModel` when fallbacks are configured.

    `guard` (a worker's circuit breaker and rate limits) wraps each provider model named by a string; the
    last model of the chain is told it may wait for an open breaker, the others fail over at once.
    """
    primary = _resolve_one(spec, settings, http_client, source="model", guard=guard, last=not fallback_models)
    if not fallback_models:
        return primary
    last = len(fallback_models) - 1
    fallbacks = [
        _resolve_one(name, settings, http_client, source="fallback model", guard=guard, last=i == last)
        for i, name in enumerate(fallback_models)
    ]
    return FallbackModel(primary, *fallbacks)


# --- checking models up front (`Runtime.submit`), before any run exists -----------------------------


class _NoNetwork(httpx2.AsyncBaseTransport):
    """The transport of the client models are checked with: building a client is fine, sending is a bug."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raise RuntimeError(f"a model check tried to send {request.method} {request.url}")


def check_model(spec: str, *, settings: Settings, source: str) -> None:
    """Raise `ConfigurationError` unless `spec` resolves to a model with this process's keys.

    The same resolution a worker's `RunFactory` runs (`_single_model`), with a client that cannot send:
    nothing touches the network. A `factory:` spec is imported but not called (it may be expensive).
    `source` names where the spec came from: `RESEARCH_AGENT_MODEL`, `--model`...
    """
    try:
        if spec.startswith("factory:"):
            _factory_callable(spec)
        else:
            _single_model(spec, settings, httpx2.AsyncClient(transport=_NoNetwork(), trust_env=False))
    except _Unresolvable as exc:
        raise ConfigurationError(f"{source} {spec!r}: {exc} — expected {MODEL_FORMS}") from exc


def check_run_models(
    settings: Settings, config: RunConfig, *, model: ModelSpec | None = None, critic: ModelSpec | None = None
) -> None:
    """Check every model `config` names (research, fallbacks, critic) the way a worker will resolve them.

    `model` and `critic` are what the caller passed (None: from settings); `Model` instances run in this
    process and need no check. Errors name the variable or argument each spec came from.
    """
    in_process = {model_label(given) for given in (model, critic) if isinstance(given, Model)}
    argument = model is not None and model != "auto"
    checks = [(config.model, MODEL_ARGUMENT if argument else env_var("model"))]
    checks += [(name, env_var("fallback_models")) for name in config.fallback_models]
    critic_label = config.critic_model
    if critic_label is not None and not is_offline_model(critic_label) and critic_label != config.model:
        checks.append((critic_label, "critic=" if critic is not None else env_var("critic_model")))
    for spec, source in checks:
        if spec not in in_process:
            check_model(spec, settings=settings, source=source)
