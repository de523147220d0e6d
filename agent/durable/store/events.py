"""Named run events (migrations/0016_run_events.sql): each run's life as the operating guides name it.

Triggers write them in the transaction of the change they record, so this module only reads. One terminal
event (`TERMINAL_EVENTS`) follows each finish; `run.requeued` opens the run again, so the invariant checked by
tests/test_run_events.py is: a finished run has exactly one terminal event after its last `run.requeued`,
and an unfinished run has none.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from agent.durable.store.records import Executor, JSONValue

__all__ = ["EVENT_NAMES", "TERMINAL_EVENTS", "RunEvent", "run_events"]

TERMINAL_EVENTS: Final = frozenset({"run.completed", "run.limit_exceeded", "run.failed", "run.killed", "run.cancelled"})
"""One per finish, named after the status the run finished in (`budget_exceeded` is `run.limit_exceeded`)."""
EVENT_NAMES: Final = frozenset(
    {"run.started", "run.resumed", "run.requeued", "cost.recorded", "budget.warning", "tool.blocked", "loop.halted"}
    | TERMINAL_EVENTS
)


@dataclass(frozen=True, kw_only=True)
class RunEvent:
    id: int
    run_id: str
    name: str
    attributes: dict[str, JSONValue]
    created_at: datetime

    @property
    def terminal(self) -> bool:
        return self.name in TERMINAL_EVENTS


async def run_events(db: Executor, run_id: uuid.UUID) -> list[RunEvent]:
    """The run's events, oldest first."""
    rows = await db.fetch(
        "SELECT id, run_id, name, attributes, created_at FROM run_events WHERE run_id = $1 ORDER BY id", run_id
    )
    return [
        RunEvent(
            id=r["id"],
            run_id=str(r["run_id"]),
            name=r["name"],
            attributes=r["attributes"],
            created_at=r["created_at"],
        )
        for r in rows
    ]
