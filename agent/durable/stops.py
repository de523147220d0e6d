"""How a run stops: every exception that can end a run, mapped by its type to a status and a reason.

Reasons come from exception types and their fields, never from message text. pydantic-ai's
`UsageLimitExceeded` carries no field saying which limit fired, so `usage_limit_reason` checks the
run's own limits against its usage, in the order pydantic-ai checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import logfire
from pydantic_ai.exceptions import (
    FallbackExceptionGroup,
    ModelAPIError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
    UserError,
)
from pydantic_ai.usage import RunUsage, UsageLimits

from agent.config import RunStatus, StopReason
from agent.errors import ConfigurationError
from budgets import Budget, BudgetExceeded


@dataclass(frozen=True, kw_only=True)
class StopDecision:
    """The terminal state a run is finished with."""

    status: RunStatus
    stop_reason: StopReason
    error: str | None = None


COMPLETED = StopDecision(status="completed", stop_reason="completed")


def interrupted(message: str) -> StopDecision:
    """An interrupted run (Ctrl-C, `Runtime.interrupt`): `cancelled`, terminal, resumable with `runs resume`."""
    return StopDecision(status="cancelled", stop_reason="interrupted", error=message)


def killed(message: str) -> StopDecision:
    """A run the kill switch stopped: `killed`; turning the switch off queues it again."""
    return StopDecision(status="killed", stop_reason="kill_switch", error=message)


def usage_limit_reason(limits: UsageLimits, usage: RunUsage) -> StopReason:
    """Which of `limits` the run's `usage` crossed when pydantic-ai raised `UsageLimitExceeded`.

    The tool-call limit is the only one pydantic-ai checks against a projection (calls not yet
    counted in `usage`), so it is the answer when no other limit is crossed.
    """
    if limits.request_limit is not None and usage.requests >= limits.request_limit:
        return "turns"
    token_limits = (
        (limits.input_tokens_limit, usage.input_tokens),
        (limits.output_tokens_limit, usage.output_tokens),
        (limits.total_tokens_limit, usage.total_tokens),
    )
    if any(limit is not None and used > limit for limit, used in token_limits):
        return "tokens"
    if limits.cost_limit is not None and usage.cost is not None and usage.cost > limits.cost_limit:
        return "cost"
    return "tool_calls"


def decide_stop(error: BaseException, *, run_id: str, budget: Budget, usage: RunUsage) -> StopDecision:
    """Every way a run can stop early, as a status and a reason; an unknown error is still a state."""
    if isinstance(error, BudgetExceeded):
        status: RunStatus = "killed" if error.reason == "kill_switch" else "budget_exceeded"
        return StopDecision(status=status, stop_reason=error.reason, error=str(error))
    if isinstance(error, UsageLimitExceeded):
        reason = usage_limit_reason(budget.usage_limits(), usage)
        return StopDecision(status="budget_exceeded", stop_reason=reason, error=str(error))
    if isinstance(error, TimeoutError):
        cap = budget.max_wall_seconds
        return StopDecision(
            status="budget_exceeded", stop_reason="wall_time", error=f"wall-time cap of {cap:g}s reached"
        )
    if isinstance(error, ModelAPIError | FallbackExceptionGroup):
        return StopDecision(status="failed", stop_reason="provider_error", error=describe(error))
    if isinstance(error, UnexpectedModelBehavior | UserError | ConfigurationError):
        return StopDecision(status="failed", stop_reason="error", error=describe(error))
    logfire.exception("run crashed", run_id=run_id, _exc_info=error)  # a bug: still a state, not a crash
    return StopDecision(status="failed", stop_reason="internal_error", error=describe(error))


def describe(exc: BaseException) -> str:
    """`Type: message`, flattening exception groups (a fallback chain's failures)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
