"""What an eval may spend: a worst-case estimate before it starts, and a cap it can never pass.

Each research run is already capped by its own `Budget` (dollars, or tokens at the model's price), and
the LLM critic's call by its pinned `max_tokens`; so a run's worst case is known before it starts. The
cap reserves that worst case before each run and settles it to the recorded cost after, so the eval's
spend cannot pass the cap even with runs in flight; a run that cannot reserve is not started, and the
report names it (decision 0021).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from genai_prices import Usage, calc_price

from agent.errors import ResearchAgentError
from agent.settings import is_offline_model
from budgets import Budget

__all__ = ["JUDGE_INPUT_BOUND", "CostCap", "NotRun", "worst_case_per_run"]

JUDGE_INPUT_BOUND = 20_000
"""Input tokens the critic's prompt can reach: the rubric, the question, an answer and its quotes
(answers and quotes are bounded by the report's own limits, far below this)."""
JUDGE_OUTPUT_BOUND = 600
"""`JUDGE_MODEL_SETTINGS.max_tokens`."""
NOT_RUN = "not run: the eval's cost cap"


class NotRun(ResearchAgentError):
    """A case run the cost cap did not let start."""


def _price(model: str, *, input_tokens: int, output_tokens: int) -> Decimal | None:
    """genai-prices for `provider:model`; None when it does not know the model."""
    provider, _, name = model.partition(":")
    if not name:
        return None
    try:
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        return calc_price(usage, name, provider_id=provider).total_price
    except LookupError:
        return None


def worst_case_per_run(model: str, *, budget: Budget, judge_model: str | None) -> Decimal | None:
    """The most one case run can cost: its research run at its budget's cap, plus the LLM critic's call.
    None when a price is unknown (no dollar cap and no price for the model, or none for the judge)."""
    if is_offline_model(model):
        return Decimal(0)
    research = budget.max_cost_usd
    if research is None:
        by_tokens = [
            _price(model, input_tokens=budget.max_tokens, output_tokens=0),
            _price(model, input_tokens=0, output_tokens=budget.max_tokens),
        ]
        if any(p is None for p in by_tokens):
            return None
        research = max(p for p in by_tokens if p is not None)
    if judge_model is None or is_offline_model(judge_model):
        return research
    judge = _price(judge_model, input_tokens=JUDGE_INPUT_BOUND, output_tokens=JUDGE_OUTPUT_BOUND)
    return None if judge is None else research + judge


@dataclass(kw_only=True)
class CostCap:
    """Reserve a run's worst case before it starts, settle to what it cost after: spend + reservations
    never pass `limit`. Single event loop: no await between the check and the update."""

    limit: Decimal
    per_run: Decimal
    judge_per_run: Decimal = Decimal(0)
    """The critic's worst case, added to each run's recorded cost (the judge's own usage is not recorded)."""
    spent: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)
    refused: int = 0

    @property
    def reached(self) -> bool:
        return self.refused > 0

    def reserve(self) -> None:
        """Raise NotRun when this run's worst case no longer fits under the cap."""
        if self.spent + self.reserved + self.per_run > self.limit:
            self.refused += 1
            raise NotRun(f"{NOT_RUN} (${self.limit}) was reached: ${self.spent:.4f} spent")
        self.reserved += self.per_run

    def settle(self, cost: Decimal | None) -> None:
        """Release the reservation; count what the run cost (its worst case when unknown, e.g. it failed)."""
        self.reserved -= self.per_run
        self.spent += self.per_run if cost is None else min(self.per_run, cost + self.judge_per_run)
