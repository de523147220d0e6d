"""Runs executed in the caller's process (`Runtime.research`), and how an interrupt stops them.

An interrupt never strands a run: the run ends `cancelled` / `interrupted` (terminal, resumable with
`runs resume` / `Runtime.resume`) with everything it committed, and its lease is released. Two ways in:

- `InlineRuns.interrupt` (what `Runtime.interrupt` calls, e.g. from `loop.add_signal_handler(SIGINT, ...)`):
  pydantic-ai's cancellation tears down the model or tool call in flight, the runner commits what
  completed and finishes the run, and `research` returns the `cancelled` result.
- Cancelling the task that awaits `research` (asyncio.run's own Ctrl-C handling, a timeout, a task group):
  the run is interrupted the same way and finished before the `CancelledError` goes on.

An interrupt that arrives before the run is claimed (while it is being submitted) is kept: the run
then starts interrupted and ends `cancelled` at once, through the same path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Final

import logfire

from agent.durable.runner import DurableRunner
from agent.durable.store import RunRecord

INTERRUPTED: Final = "interrupted by the user"
CALLER_CANCELLED: Final = "interrupted: the caller's task was cancelled"
INTERRUPT_GRACE_SECONDS: Final = 10.0
"""How long a cancelled `research` waits for its run to finish `cancelled` (it takes well under 2 s). Past
it the run is abandoned `running`; its lease expires and a worker resumes it."""


@dataclass(eq=False)
class InlineRun:
    """One `research` call: the run it executes (once claimed) and the interrupt, if one came."""

    run_id: str | None = None
    runner: DurableRunner | None = None
    interrupted: str | None = None
    started: bool = False
    finished: bool = False

    def interrupt(self, message: str) -> bool:
        """Ask the run to stop; False if it was already asked, or is over."""
        if self.interrupted is not None or self.finished:
            return False
        self.interrupted = message  # read when the run starts: see `_execute`
        if self.started and self.runner is not None and self.run_id is not None:
            return bool(self.runner.interrupt(message, run_id=self.run_id))
        return True

    async def execute(self, runner: DurableRunner, run: RunRecord) -> RunRecord:
        """`runner.execute(run)`; if the awaiting task is cancelled, interrupt the run and let it finish first."""
        self.runner, self.run_id = runner, run.id
        task = asyncio.create_task(self._execute(runner, run))
        task.add_done_callback(_retrieve)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                self.interrupt(CALLER_CANCELLED)
                await _settle(task, run_id=run.id)
            raise

    async def _execute(self, runner: DurableRunner, run: RunRecord) -> RunRecord:
        # Nothing is awaited between reading `interrupted` and `runner.execute` registering the run as
        # active, so an interrupt lands on one or the other.
        self.started = True
        try:
            return await runner.execute(run, interrupted=self.interrupted)
        finally:
            self.finished = True


class InlineRuns:
    """The `research` calls in progress in one `Runtime`."""

    def __init__(self) -> None:
        self._calls: set[InlineRun] = set()

    @contextmanager
    def track(self) -> Iterator[InlineRun]:
        call = InlineRun()
        self._calls.add(call)
        try:
            yield call
        finally:
            self._calls.discard(call)

    def interrupt(self, message: str = INTERRUPTED, *, run_id: str | None = None) -> list[str]:
        """Interrupt the call executing `run_id` (a full id or a prefix), or every call when None.

        Returns the ids of the runs newly asked to stop; a call still submitting its run has no id yet,
        but is interrupted too (its run ends `cancelled` as soon as it is claimed).
        """
        stopped: list[str] = []
        for call in list(self._calls):
            if run_id is not None and (call.run_id is None or not call.run_id.startswith(run_id.lower())):
                continue
            if call.interrupt(message) and call.run_id is not None:
                stopped.append(call.run_id)
        return stopped


async def _settle(task: asyncio.Task[RunRecord], *, run_id: str) -> None:
    """Wait for the interrupted run to finish, through further cancellations, for at most the grace period."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + INTERRUPT_GRACE_SECONDS
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            logfire.warn("interrupted run did not finish in time; abandoned to a worker", run_id=run_id)
            task.cancel()
            return
        with suppress(asyncio.CancelledError):
            await asyncio.wait({task}, timeout=remaining)


def _retrieve(task: asyncio.Task[RunRecord]) -> None:
    """Mark the outcome retrieved: after an interrupt nobody awaits the task's result."""
    if not task.cancelled():
        task.exception()
