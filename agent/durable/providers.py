"""Provider health: a circuit breaker and shared rate limits per provider model, across every worker.

`ProviderHealth` (one per runner, built by `RunFactory` with the runner's pool) wraps each provider model a
run resolves in a `GuardedModel` (`agent.models.resolve_model(..., guard=...)`). Before a request the
wrapper asks the breaker (Postgres, `agent.durable.store.providers`):

- **closed**: go on. **open** (5 provider failures in a row, `RESEARCH_AGENT_BREAKER_FAILURES`): refused for
  `RESEARCH_AGENT_BREAKER_OPEN_SECONDS` (60 s), without calling the provider. A model with a fallback after
  it raises `CircuitOpenError` at once (a 503 `ModelHTTPError`, so `FallbackModel` tries the next model);
  the last model of a run (or its only one) waits for the breaker, up to
  `RESEARCH_AGENT_BREAKER_MAX_WAIT_SECONDS` and the run's wall time, then raises it (the run ends `failed` /
  `provider_error`, resumable with `runs resume`).
- **half-open** (the open period has passed): exactly one request at a time, across all workers, goes
  through as the probe (claimed in one UPDATE); `RESEARCH_AGENT_BREAKER_CLOSE_SUCCESSES` (2) probe
  successes close it, a probe failure opens it for another period.

Failures are provider faults only, after the retrying transport gave up: 429, 5xx and the other retryable
statuses, timeouts and connection errors. A 4xx of ours (a bad schema), a validation error or a
cancellation counts for nothing.

Then, with `RESEARCH_AGENT_RATE_LIMITS` naming the model, the wrapper reserves one request and the
request's token bound (input bound + output allowance) in the current window of the shared ledger; when
that does not fit it sleeps until the next window (plus jitter) and tries again, so concurrent runs on many
workers pace themselves instead of each discovering the same 429. After the response the reservation's
tokens are replaced by the tokens really used.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import logfire
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelRequestTimeout,
    ModelServerError,
    ModelUnavailableError,
)
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

from agent.durable.store import providers as store
from agent.durable.store.providers import Admission, ProviderState, Reservation
from agent.models import RETRYABLE_STATUS
from agent.settings import ProviderRateLimit, Settings
from budgets import input_token_bound

__all__ = [
    "CircuitOpenError",
    "GuardedModel",
    "ProviderHealth",
    "ProviderState",
    "is_provider_fault",
    "provider_health",
    "provider_key",
]

_PROVIDER_FAULTS = (
    ModelRateLimitError,
    ModelUnavailableError,
    ModelServerError,
    ModelConnectionError,
    ModelRequestTimeout,
)


class CircuitOpenError(ModelHTTPError):
    """The breaker of `key` is open (or probing): the provider was not called. A 503, so fallbacks take over."""

    def __init__(self, key: str, model_name: str, *, state: str, retry_in: float | None) -> None:
        when = f"; a probe may go in {retry_in:.1f}s" if retry_in is not None else "; a probe is in flight"
        message = f"circuit breaker {state} for {key} after repeated provider failures{when}"
        super().__init__(503, model_name, body={"error": message}, retry_after=retry_in)
        self.key = key


def is_provider_fault(exc: BaseException) -> bool:
    """A failure the provider is to blame for (what the breaker counts): 429/5xx, timeouts, connection errors."""
    if isinstance(exc, CircuitOpenError) or not isinstance(exc, ModelAPIError):
        return False
    if isinstance(exc, ModelHTTPError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    return isinstance(exc, _PROVIDER_FAULTS)


def provider_key(model: Model) -> str:
    """`system:model`, the key of breakers and rate limits (as in `model_prices`)."""
    return f"{model.system}:{model.model_name}"


async def provider_health(pool: asyncpg.Pool, *, settings: Settings | None = None) -> list[ProviderState]:
    """Every provider model's breaker (and current rate window) that has state worth showing, by key.

    A model missing from the list is closed with nothing reserved. For `stats` and metrics; `settings` gives
    the open period and the rate window (default: the built-in 60 s each).
    """
    open_seconds = settings.breaker_open_seconds if settings else _default("breaker_open_seconds")
    window = settings.rate_limit_window_seconds if settings else _default("rate_limit_window_seconds")
    return await store.health(pool, open_seconds=open_seconds, window_seconds=window)


def _default(field: str) -> float:
    return float(Settings.model_fields[field].default)


@dataclass
class _Ticket:
    """One admitted request: its breaker admission and rate reservation, settled when it ends."""

    key: str
    admission: Admission
    reservation: Reservation | None = None
    reserved_tokens: int = 0
    used_tokens: int | None = None


class ProviderHealth:
    """The breaker and rate limits of one runner's models, shared through `pool` with every other worker."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        # A probe stuck longer than a request can take (every attempt and wait, one rate window) is presumed dead.
        s = settings
        self.probe_seconds = (
            s.model_request_timeout_seconds * (s.provider_max_retries + 1)
            + s.provider_max_wait_seconds * s.provider_max_retries
            + s.rate_limit_window_seconds
        )
        self.poll_seconds = max(0.05, min(1.0, s.breaker_open_seconds / 4))

    def guard(self, model: Model, label: str, may_wait: bool) -> Model:
        """`model` behind the breaker and rate limits (the `guard` of `agent.models.resolve_model`)."""
        return GuardedModel(model, health=self, spec=label, may_wait=may_wait)

    def rate_limit(self, key: str, label: str) -> ProviderRateLimit | None:
        limits = self.settings.rate_limits
        return limits.get(key) or limits.get(label)

    @asynccontextmanager
    async def admitted(
        self, key: str, *, label: str, model_name: str, may_wait: bool, tokens: int
    ) -> AsyncIterator[_Ticket]:
        """Admit one request (waiting as the breaker and rate limits say), then record how it ended."""
        ticket = _Ticket(key, await self._admit(key, model_name, may_wait=may_wait))
        try:
            limit = self.rate_limit(key, label)
            if limit is not None:
                ticket.reserved_tokens = min(tokens, limit.tpm) if limit.tpm else tokens
                ticket.reservation = await self._reserve(key, limit, ticket.reserved_tokens)
            yield ticket
        except BaseException as exc:
            await self._record(self._failed(ticket, exc))
            raise
        await self._record(self._succeeded(ticket))

    async def _admit(self, key: str, model_name: str, *, may_wait: bool) -> Admission:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.settings.breaker_max_wait_seconds if may_wait else 0.0)
        announced = False
        while True:
            admission = await store.admit(
                self.pool, key, open_seconds=self.settings.breaker_open_seconds, probe_seconds=self.probe_seconds
            )
            if admission.allowed:
                if admission.probe:
                    logfire.info("circuit breaker half-open for {key}: probing", key=key)
                return admission
            left = deadline - loop.time()
            if left <= 0:
                raise CircuitOpenError(key, model_name, state=admission.state, retry_in=admission.retry_in)
            if not announced:
                logfire.info("circuit breaker {state} for {key}: waiting", key=key, state=admission.state)
                announced = True
            wait = admission.retry_in if admission.retry_in and admission.retry_in > 0 else self.poll_seconds
            await asyncio.sleep(min(left, wait) + random.uniform(0, self.poll_seconds / 2))

    async def _reserve(self, key: str, limit: ProviderRateLimit, tokens: int) -> Reservation:
        """Reserve in the current window; when it is full, sleep to the next one (plus jitter) and try again."""
        window = self.settings.rate_limit_window_seconds
        while True:
            reservation = await store.reserve(
                self.pool, key, tokens=tokens, rpm=limit.rpm, tpm=limit.tpm, window_seconds=window
            )
            if reservation.granted:
                return reservation
            await asyncio.sleep(reservation.wait_seconds + random.uniform(0, min(window * 0.1, 2.0)))

    async def _record(self, outcome: Awaitable[None]) -> None:
        """Record an outcome; a database error here loses one breaker count, never the response."""
        try:
            await outcome
        except Exception:
            logfire.exception("could not record a provider outcome")

    async def _succeeded(self, ticket: _Ticket) -> None:
        key, admission = ticket.key, ticket.admission
        if admission.probe:
            if await store.probe_succeeded(self.pool, key, successes_to_close=self.settings.breaker_close_successes):
                logfire.info("circuit breaker closed for {key}", key=key)
        elif admission.consecutive_failures:
            await store.record_success(self.pool, key)
        if ticket.reservation is not None and ticket.used_tokens is not None:
            delta = ticket.used_tokens - ticket.reserved_tokens
            if delta:
                await store.settle(self.pool, key, window_start=ticket.reservation.window_start, tokens_delta=delta)

    async def _failed(self, ticket: _Ticket, exc: BaseException) -> None:
        key, probe = ticket.key, ticket.admission.probe
        if not is_provider_fault(exc):
            if probe:
                await store.probe_abandoned(self.pool, key)
            return
        error = f"{type(exc).__name__}: {exc}"
        if probe:
            await store.probe_failed(self.pool, key, error=error)
            logfire.warn("circuit breaker re-opened for {key}: the probe failed: {error}", key=key, error=error)
        elif await store.record_failure(self.pool, key, threshold=self.settings.breaker_failures, error=error):
            logfire.warn("circuit breaker opened for {key}: {error}", key=key, error=error)


class GuardedModel(WrapperModel):
    """A provider model behind its breaker and rate limits (see the module docstring)."""

    def __init__(self, wrapped: Model, *, health: ProviderHealth, spec: str, may_wait: bool) -> None:
        super().__init__(wrapped)
        self.health = health
        self.spec = spec
        self.may_wait = may_wait
        self.key = provider_key(wrapped)

    def _token_bound(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        parameters: ModelRequestParameters,
    ) -> int:
        output = (model_settings or {}).get("max_tokens") or 0
        return input_token_bound(messages, parameters) + int(output)

    def _admitted(self, tokens: int) -> AbstractAsyncContextManager[_Ticket]:
        return self.health.admitted(
            self.key, label=self.spec, model_name=self.model_name, may_wait=self.may_wait, tokens=tokens
        )

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        tokens = self._token_bound(messages, model_settings, model_request_parameters)
        async with self._admitted(tokens) as ticket:
            response = await self.wrapped.request(messages, model_settings, model_request_parameters)
            ticket.used_tokens = response.usage.input_tokens + response.usage.output_tokens
            return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: Any = None,
    ) -> AsyncGenerator[StreamedResponse]:
        tokens = self._token_bound(messages, model_settings, model_request_parameters)
        async with (
            self._admitted(tokens) as ticket,
            self.wrapped.request_stream(messages, model_settings, model_request_parameters, run_context) as stream,
        ):
            yield stream
            usage = stream.usage
            ticket.used_tokens = usage.input_tokens + usage.output_tokens
