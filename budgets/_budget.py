"""`Budget`: the caps a run may not exceed, frozen into the run's config."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # imported where used: reading a run's config (the CLI) does not load pydantic-ai
    from pydantic_ai.usage import UsageLimits


class Budget(BaseModel):
    """Caps for one run. Defaults: 10 turns, 200k tokens, 120 s, $0.50."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_turns: int = Field(default=10, ge=1, le=1_000, description="Model requests per run.")
    max_tokens: int = Field(default=200_000, ge=1, description="Input + output tokens per run.")
    max_wall_seconds: float = Field(default=120.0, gt=0, description="Active run time, summed over resumes.")
    max_cost_usd: Decimal | None = Field(
        default=Decimal("0.50"), ge=0, description="Dollars per run; None = no cost cap (any model may run)."
    )
    max_tool_calls: int | None = Field(default=None, ge=1, description="Tool calls per run.")
    per_tool: dict[str, int] = Field(default_factory=dict, description="Calls allowed per tool name.")

    def usage_limits(self) -> UsageLimits:
        """pydantic-ai's own limits: the tool-call cap, plus backstops for what `BudgetGuard` enforces first.

        pydantic-ai checks tokens after a response arrives (the crossing request is already paid), so
        the guard checks before each request instead; these limits can only fire if the guard is bypassed.
        """
        from pydantic_ai.usage import UsageLimits

        return UsageLimits(
            request_limit=self.max_turns,
            total_tokens_limit=self.max_tokens,
            tool_calls_limit=self.max_tool_calls,
        )
