"""What the runtime tells its caller while it works; the CLI renders these live.

- `ProgressEvent`: one run's progress (plan, searches, fetches, model turns, indexing the reference, its end).
- `WorkerEvent`: a worker claimed a run, or is done with it: one log line each.
- `StartupEvent`: the cold start (starting the embedded database, migrating it), before any run exists.

Kept free of heavy imports: the CLI imports it before it knows what a command needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # annotations only: agent.config pulls in settings, budgets and tools
    from agent.config import RunStatus, StopReason

ProgressKind = Literal["status", "plan", "search", "fetch", "model", "tool_error", "resume", "index"]


@dataclass(frozen=True, kw_only=True)
class ProgressEvent:
    run_id: str
    kind: ProgressKind
    message: str
    detail: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    done: int | None = None
    """`index` events: steps done so far (only grows, ends equal to `total`); None for other kinds."""
    total: int | None = None
    """`index` events: steps in all, for a progress bar; None for other kinds."""


ProgressCallback = Callable[[ProgressEvent], None]


def ignore_progress(event: ProgressEvent) -> None:
    """The default callback: drop events."""


WorkerEventKind = Literal["claimed", "finished", "released", "abandoned"]
"""`claimed`: the worker starts (or resumes) the run. Then exactly one of: `finished` (a terminal or
parked state: completed, failed, budget_exceeded, killed, cancelled, awaiting_approval); `released`
(handed back to the queue at shutdown, or its lease was lost to another worker); `abandoned` (the
runner crashed: the lease expires and another worker resumes it)."""


@dataclass(frozen=True, kw_only=True)
class WorkerEvent:
    """One line of a worker's log: a run it claimed, or is done with."""

    kind: WorkerEventKind
    worker_id: str
    run_id: str
    question: str
    status: RunStatus
    """The run's status after the event (`running` once claimed)."""
    stop_reason: StopReason | None
    attempt: int
    """1 for a fresh run; more when it is resumed (after a crash, a kill switch, `runs resume`)."""
    duration_seconds: float
    """Wall-clock time this worker spent on the run (0 when claimed)."""
    cost_usd: Decimal
    """The run's cost so far, across all its attempts."""
    error: str | None = None

    def line(self) -> str:
        """`claimed 1a2b3c4d "question" running ...`: what a job runner would log, in one line."""
        question = self.question if len(self.question) <= 60 else self.question[:59] + "…"
        state = self.status + (f" ({self.stop_reason})" if self.stop_reason and self.stop_reason != self.status else "")
        text = f'{self.kind:<9} {self.run_id[:8]}  "{question}"  {state}  attempt {self.attempt}'
        if self.kind != "claimed":
            text += f"  {self.duration_seconds:.1f}s"
        text += f"  ${self.cost_usd:.4f}"
        return text + (f"  {self.error}" if self.error and self.kind != "claimed" else "")


WorkerCallback = Callable[[WorkerEvent], None]


def ignore_worker_events(event: WorkerEvent) -> None:
    """The default callback: drop events."""


StartupStage = Literal["starting_database", "migrating", "ready"]
"""`starting_database`: no server is running under the data directory, one is being started (first run:
created); `migrating`: the schema is being brought up to date; `ready`: after either, the database is up."""


@dataclass(frozen=True, kw_only=True)
class StartupEvent:
    """A slow step of opening the runtime; a warm start (server running, schema current) emits none."""

    stage: StartupStage
    message: str
    seconds: float | None = None
    """`ready`: how long the start took."""


StartupCallback = Callable[[StartupEvent], None]


def ignore_startup(event: StartupEvent) -> None:
    """The default callback: drop events."""
