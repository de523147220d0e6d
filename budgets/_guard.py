"""The enforcing capability: every model request is checked against what the run has left.

Before each request it stops the run when a cap is reached (turns, tokens, cost, wall time, daily
spend, kill switch) and otherwise trims the request's output allowance (`max_tokens`) so that even
the worst case (the input bound plus every allowed output token) fits what remains. A request can
therefore never push the run past a cap. After each response it prices what was actually used.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelResponse
from pydantic_ai.models import ModelRequestContext, ModelRequestParameters
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RunUsage

from budgets._budget import Budget
from budgets._estimate import input_token_bound
from budgets._pricing import Pricer
from budgets._stops import BudgetExceeded, SpendGate, SpendHooks

CapName = Literal["turns", "tokens", "wall_time", "cost", "tool_calls"]

DEFAULT_OUTPUT_ALLOWANCE = 4_096
"""Output tokens a request may use when neither the settings nor the budget say less."""
MIN_OUTPUT_ALLOWANCE = 64
"""Below this a request cannot produce a useful answer: the run stops instead."""
WARN_FRACTION = 0.8


@dataclass(frozen=True, kw_only=True)
class BudgetEvent:
    """A decision worth recording: a soft warning at 80 % of a cap, or a trimmed output allowance."""

    kind: Literal["warning", "trimmed"]
    cap: str
    message: str
    used: float
    limit: float


@dataclass(frozen=True, kw_only=True)
class Reservation:
    amount: Decimal


@dataclass
class BudgetGuard(AbstractCapability[Any]):
    """Enforces a `Budget` on one execution of a run; `spent_usd` and elapsed time carry over resumes."""

    budget: Budget
    pricer: Pricer | None
    spent_usd: Decimal = Decimal(0)
    elapsed_before: float = 0.0
    hooks: SpendHooks = field(default_factory=SpendHooks)
    events: list[BudgetEvent] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    last_parameters: ModelRequestParameters | None = None
    """The tools and instructions of the last request, for estimating the next one (`shortfall`)."""
    _warned: set[str] = field(default_factory=set)
    _reserved: Decimal | None = None
    _allowance: int | None = None
    """The `max_tokens` the last request was sent with."""
    crossed: BudgetExceeded | None = None
    """Set when a response took the run past its token cap (the provider ignored `max_tokens`)."""

    def raise_if_crossed(self) -> None:
        """Stop the run once the crossing response is committed, before its tool calls or its answer are used."""
        if self.crossed is not None:
            raise self.crossed

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.started)

    async def before_model_request(
        self, ctx: RunContext[Any], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        budget = self.budget
        usage = ctx.usage
        if usage.requests >= budget.max_turns:
            raise BudgetExceeded("turns", f"turn cap reached: {usage.requests} of {budget.max_turns} model requests")
        if self.elapsed >= budget.max_wall_seconds:
            raise BudgetExceeded("wall_time", f"wall-time cap of {budget.max_wall_seconds:g}s reached")

        self.last_parameters = request_context.model_request_parameters
        bound_in = input_token_bound(request_context.messages, request_context.model_request_parameters)
        settings: ModelSettings = {**(request_context.model_settings or {})}
        requested = settings.get("max_tokens") or DEFAULT_OUTPUT_ALLOWANCE
        allowance = min(requested, self._token_allowance(usage.input_tokens + usage.output_tokens, bound_in))
        allowance = min(allowance, self._cost_allowance(bound_in))
        worst_case = self._price(bound_in, allowance)
        if self.hooks.reserve is not None:
            try:
                await self.hooks.reserve(worst_case)
            except SpendGate as gate:
                raise BudgetExceeded(gate.reason, str(gate)) from gate
            self._reserved = worst_case
        if allowance < requested:
            self.events.append(
                BudgetEvent(
                    kind="trimmed",
                    cap="output",
                    message=f"output allowance trimmed from {requested} to {allowance} tokens to fit the budget",
                    used=float(allowance),
                    limit=float(requested),
                )
            )
        settings["max_tokens"] = allowance
        self._allowance = allowance
        return dataclasses.replace(request_context, model_settings=settings)

    async def after_model_request(
        self, ctx: RunContext[Any], *, request_context: ModelRequestContext, response: ModelResponse
    ) -> ModelResponse:
        actual = self._price(response.usage.input_tokens, response.usage.output_tokens)
        response.usage.cost = actual  # stored with the message, shown per step
        self.spent_usd += actual
        if self._reserved is not None and self.hooks.settle is not None:
            await self.hooks.settle(self._reserved, actual)
        self._reserved = None
        tokens = ctx.usage.input_tokens + ctx.usage.output_tokens  # pydantic-ai has counted this response
        cap_usd = self.budget.max_cost_usd
        if cap_usd is not None and self.spent_usd > cap_usd:  # the same provider fault, priced
            self.crossed = BudgetExceeded(
                "cost",
                f"cost cap crossed by the provider: ${self.spent_usd:.4f} of ${cap_usd} after a response of"
                f" {response.usage.output_tokens} output tokens, though max_tokens was {self._allowance}",
            )
        elif tokens > self.budget.max_tokens:
            # Only a provider that ignored the trimmed `max_tokens` (or misreported usage) gets here. The response
            # is paid for: it is kept and counted, and `raise_if_crossed` stops the run before anything acts on it.
            self.crossed = BudgetExceeded(
                "tokens",
                f"token cap crossed by the provider: {tokens} of {self.budget.max_tokens} tokens after a response"
                f" of {response.usage.output_tokens} output tokens, though max_tokens was {self._allowance}",
            )
        self._warn_near("turns", ctx.usage.requests + 1, self.budget.max_turns)
        self._warn_near("tokens", tokens, self.budget.max_tokens)
        self._warn_near("wall_time", self.elapsed, self.budget.max_wall_seconds)
        if self.budget.max_cost_usd is not None:
            self._warn_near("cost", float(self.spent_usd), float(self.budget.max_cost_usd))
        return response

    async def on_model_request_error(
        self, ctx: RunContext[Any], *, request_context: ModelRequestContext, error: Exception
    ) -> ModelResponse:
        if self._reserved is not None and self.hooks.settle is not None:
            await self.hooks.settle(self._reserved, Decimal(0))  # a failed request is not billed
        self._reserved = None
        raise error

    def shortfall(self, usage: RunUsage, *, requests: int, tokens: int, cost: Decimal) -> str | None:
        """Why `requests` more requests of at most `tokens` and `cost` in all would not fit; None if they would.

        For optional work (a revision the critic asked for): decided up front, so it is skipped rather
        than started and cut off.
        """
        budget = self.budget
        if usage.requests + requests > budget.max_turns:
            return f"turns: {usage.requests} of {budget.max_turns} used and it needs up to {requests} more"
        used = usage.input_tokens + usage.output_tokens
        if used + tokens > budget.max_tokens:
            return f"tokens: {used} of {budget.max_tokens} used and it may need up to {tokens} more"
        if budget.max_cost_usd is not None and self.spent_usd + cost > budget.max_cost_usd:
            return f"cost: ${self.spent_usd:.6f} of ${budget.max_cost_usd} spent and it may cost up to ${cost:.6f} more"
        if self.elapsed >= budget.max_wall_seconds:
            return f"wall time: the {budget.max_wall_seconds:g}s cap is reached"
        return None

    def _token_allowance(self, used: int, bound_in: int) -> int:
        allowance = self.budget.max_tokens - used - bound_in
        if allowance < MIN_OUTPUT_ALLOWANCE:
            raise BudgetExceeded(
                "tokens",
                f"token cap: {used} of {self.budget.max_tokens} used and the next request may need up to "
                f"{bound_in + MIN_OUTPUT_ALLOWANCE}",
            )
        return allowance

    def _cost_allowance(self, bound_in: int) -> int:
        cap = self.budget.max_cost_usd
        if cap is None or self.pricer is None:
            return DEFAULT_OUTPUT_ALLOWANCE * 1_000
        remaining = cap - self.spent_usd
        input_cost = self._price(bound_in, 0)
        per_output_token = self._price(bound_in, 1_000_000) - input_cost
        if per_output_token <= 0:
            allowance = DEFAULT_OUTPUT_ALLOWANCE * 1_000 if input_cost <= remaining else 0
        else:
            allowance = math.floor((remaining - input_cost) / (per_output_token / 1_000_000))
        # Tiered prices can make the marginal rate non-linear: step down until the worst case fits.
        while allowance >= MIN_OUTPUT_ALLOWANCE and self._price(bound_in, allowance) > remaining:
            allowance = math.floor(allowance * 0.9)
        if allowance < MIN_OUTPUT_ALLOWANCE:
            raise BudgetExceeded(
                "cost",
                f"cost cap: ${self.spent_usd:.6f} of ${cap} spent; the next request could cost up to "
                f"${self._price(bound_in, MIN_OUTPUT_ALLOWANCE):.6f}",
            )
        return allowance

    def _price(self, input_tokens: int, output_tokens: int) -> Decimal:
        if self.pricer is None:
            return Decimal(0)
        return self.pricer.price(input_tokens=input_tokens, output_tokens=output_tokens)

    def merge_events(self, events: list[BudgetEvent]) -> None:
        """Take over the decisions of a guard that spent on this run's behalf (the critic's): a cap this guard
        (or an earlier merge) already warned about is not warned about again."""
        for event in events:
            if event.kind == "warning":
                if event.cap in self._warned:
                    continue
                self._warned.add(event.cap)
            self.events.append(event)

    def _warn_near(self, cap: CapName, used: float, limit: float) -> None:
        if cap in self._warned or limit <= 0 or used < WARN_FRACTION * limit:
            return
        self._warned.add(cap)
        self.events.append(
            BudgetEvent(
                kind="warning",
                cap=cap,
                message=f"{cap}: {used:g} of {limit:g} used ({used / limit:.0%})",
                used=float(used),
                limit=float(limit),
            )
        )
