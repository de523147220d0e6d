"""Stopping at a cap: why (`StopReason`), the two exceptions that say so, and the hooks shared controls use.

Plain Python with no pydantic-ai: `agent.config` builds the run's stop reasons from `CapReason`, and the
daily cap and the kill switch raise `SpendGate`, in processes (the CLI's read-only commands) that never
load the agent loop. `BudgetGuard` (`_guard.py`) is what raises and catches them during a run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, TypeAlias

from tools.errors import ResearchAgentError

StopReason = Literal["turns", "tokens", "wall_time", "cost", "tool_calls", "loop", "daily_cap", "kill_switch"]
CapReason: TypeAlias = StopReason
"""Which cap stopped a run (`BudgetExceeded.reason`, `SpendGate.reason`); the agent's run stop reasons include these."""


class BudgetExceeded(ResearchAgentError):
    """A cap was reached; the run stops with `reason` and keeps what it gathered."""

    def __init__(self, reason: StopReason, message: str) -> None:
        super().__init__(message)
        self.reason: StopReason = reason


class SpendGate(ResearchAgentError):
    """Raised by a `SpendHooks.reserve` to refuse a request (daily cap reached, kill switch on)."""

    def __init__(self, reason: StopReason, message: str) -> None:
        super().__init__(message)
        self.reason: StopReason = reason


@dataclass(kw_only=True)
class SpendHooks:
    """Cross-run controls the guard consults; the defaults allow everything."""

    reserve: Callable[[Decimal], Awaitable[None]] | None = None
    """Reserve the worst-case cost of the next request against shared limits; raise `SpendGate` to refuse."""
    settle: Callable[[Decimal, Decimal], Awaitable[None]] | None = None
    """`settle(reserved, actual)` once the response is priced."""
