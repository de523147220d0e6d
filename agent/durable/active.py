"""The runs executing in one runner, and what the cross-run controls can do to each of them.

The kill switch (and an interrupt: Ctrl-C, `Runtime.interrupt`) cancels active runs through pydantic-ai's
`CancellationToken` with a decided stop; the daily spend cap holds a reservation per run that must be
freed when the run ends, even if its last request was cancelled mid-flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
import logfire
from pydantic_ai import CancellationToken
from pydantic_ai.exceptions import RunCancelled
from pydantic_ai.models import Model

from agent.durable.controls import KillSwitch, RunSpend
from agent.durable.stops import StopDecision, interrupted, killed
from agent.errors import ConfigurationError
from budgets import DailySpend, Pricer


@dataclass
class RunControl:
    """One executing run: its cancellation token, the stop a control decided, its spend reservations."""

    token: CancellationToken = field(default_factory=CancellationToken)
    stop: StopDecision | None = None
    spend: RunSpend | None = None


class ActiveRuns:
    """Runs executing now, by id."""

    def __init__(self) -> None:
        self._runs: dict[str, RunControl] = {}

    def start(self, run_id: str) -> RunControl:
        control = self._runs[run_id] = RunControl()
        return control

    def attach_spend(self, run_id: str, spend: RunSpend) -> None:
        """The run's spend hooks, so its reservation can be freed when it ends."""
        control = self._runs.get(run_id)
        if control is not None:
            control.spend = spend

    def token(self, run_id: str) -> CancellationToken | None:
        control = self._runs.get(run_id)
        return control.token if control else None

    def requested_stop(self, run_id: str, error: BaseException) -> StopDecision | None:
        """The stop a control decided, when `error` is the cancellation it caused."""
        control = self._runs.get(run_id)
        return control.stop if control and isinstance(error, RunCancelled) else None

    def kill_all(self, message: str) -> list[str]:
        """Stop every active run as `killed` / `kill_switch`; idempotent; returns the runs newly asked to stop."""
        return self._stop(killed(message), run_id=None)

    def interrupt(self, message: str, *, run_id: str | None = None) -> list[str]:
        """Stop the active run `run_id` (every active run when None) as `cancelled` / `interrupted`.

        Idempotent, and the first stop decided for a run wins; returns the runs newly asked to stop.
        """
        return self._stop(interrupted(message), run_id=run_id)

    def _stop(self, decision: StopDecision, *, run_id: str | None) -> list[str]:
        stopped: list[str] = []
        for active_id, control in list(self._runs.items()):
            if run_id is not None and active_id != run_id:
                continue
            if control.stop is None:
                control.stop = decision
                control.token.cancel()
                stopped.append(active_id)
        return stopped

    async def end(self, run_id: str) -> None:
        """Forget the run; a request cancelled mid-flight never settled, so free its reservation."""
        control = self._runs.pop(run_id, None)
        if control is not None and control.spend is not None:
            try:
                await control.spend.release()
            except Exception:
                logfire.exception("could not release the daily spend reservation", run_id=run_id)


def run_spend(
    pool: asyncpg.Pool,
    *,
    run_id: str,
    model: Model,
    pricer: Pricer | None,
    daily_cap_usd: Decimal | None,
    disabled: bool,
) -> RunSpend:
    """The kill switch and the daily cap as the budget guard's spend hooks for one run."""
    if daily_cap_usd is not None and pricer is None:
        label = f"{model.system}:{model.model_name}"
        raise ConfigurationError(
            f"no price is known for model {label!r}, so the ${daily_cap_usd} daily spend cap cannot be enforced; "
            "set RESEARCH_AGENT_MODEL_PRICES for it or unset RESEARCH_AGENT_DAILY_CAP_USD"
        )
    return RunSpend(
        kill_switch=KillSwitch(pool, env_override=disabled),
        daily=DailySpend(pool, cap_usd=daily_cap_usd),
        run_id=run_id,
    )
