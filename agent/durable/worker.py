"""The worker: claims queued (or abandoned) runs and executes them, up to `concurrency` at once.

Claims use `FOR UPDATE SKIP LOCKED` plus a lease the runner keeps renewing, so many workers on many
machines can share one database; a run whose worker died is claimed again once its lease expires.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from contextlib import suppress

import logfire
from pydantic_ai.models import Model

from agent.api import Runtime, new_worker_id
from agent.durable.approvals import ApprovalStore
from agent.durable.controls import ControlWatcher, KillSwitchState
from agent.durable.runner import DurableRunner
from agent.durable.store import RunRecord, release_lease
from agent.events import ProgressCallback, ignore_progress


class Worker:
    """Runs claimed runs until stopped (or until `max_runs` have finished / the queue is idle)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        concurrency: int = 4,
        worker_id: str | None = None,
        max_runs: int | None = None,
        exit_when_idle: bool = False,
        models: dict[str, Model] | None = None,
        progress: ProgressCallback = ignore_progress,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.runtime = runtime
        self.concurrency = concurrency
        self.worker_id = worker_id or new_worker_id()
        self.max_runs = max_runs
        self.exit_when_idle = exit_when_idle
        self.finished: list[RunRecord] = []
        self._runner = DurableRunner(
            store=runtime.store,
            settings=runtime.settings,
            worker_id=self.worker_id,
            models=models,
            progress=progress,
        )
        self._approvals = ApprovalStore(runtime.pool)
        self._approvals_checked = -math.inf
        self._active: dict[str, asyncio.Task[RunRecord]] = {}
        self._stopping = asyncio.Event()
        # The kill switch: no claims while it is on, and every run executing here stops within ~1 s.
        self._controls = ControlWatcher(
            runtime.pool, on_kill=self._kill_switch_on, env_override=runtime.settings.disabled
        )

    def stop(self) -> None:
        """Stop claiming; in-flight runs are handed back to the queue."""
        self._stopping.set()

    async def run(self) -> list[RunRecord]:
        store = self.runtime.store
        settings = self.runtime.settings
        claimed_total = 0
        logfire.info("worker started", worker_id=self.worker_id, concurrency=self.concurrency)
        await self._controls.start()
        try:
            while not self._stopping.is_set():
                if self.max_runs is not None and claimed_total >= self.max_runs:
                    if not self._active:
                        break
                elif self._controls.kill_switch_on:  # claim nothing; an idle batch worker has nothing to wait for
                    if self.exit_when_idle and not self._active:
                        break
                elif len(self._active) < self.concurrency:
                    await self._expire_approvals()
                    run = await store.claim_next(worker_id=self.worker_id, lease_seconds=settings.lease_seconds)
                    if run is not None:
                        claimed_total += 1
                        logfire.info("claimed run", run_id=run.id, worker_id=self.worker_id, attempt=run.attempts)
                        task = asyncio.create_task(self._runner.execute(run))
                        self._active[run.id] = task
                        task.add_done_callback(functools.partial(self._done, run.id))
                        continue
                    if self.exit_when_idle and not self._active:
                        break
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=settings.worker_poll_seconds)
        finally:
            await self._shutdown()
        return self.finished

    async def _expire_approvals(self) -> None:
        """Time out approval requests nobody decided (a rejection), so their runs can go on.

        At most once per poll interval: a worker draining a queue claims runs back to back.
        """
        now = time.monotonic()
        if now - self._approvals_checked < self.runtime.settings.worker_poll_seconds:
            return
        self._approvals_checked = now
        try:
            expired = await self._approvals.expire_due()
        except Exception as exc:  # a database blip: the next poll tries again
            logfire.warn("could not expire approval requests: {error}", error=str(exc), worker_id=self.worker_id)
            return
        for approval in expired:
            logfire.info("approval {id} timed out: rejected", id=approval.id, run_id=approval.run_id)

    def _done(self, run_id: str, task: asyncio.Task[RunRecord]) -> None:
        self._active.pop(run_id, None)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logfire.error("run task failed: {error}", error=repr(error), run_id=run_id)
            return
        self.finished.append(task.result())

    def _kill_switch_on(self, state: KillSwitchState) -> None:
        stopped = self._runner.kill_all(f"stopped: {state.describe()}")
        if stopped:
            logfire.warn("kill switch on: stopping {count} runs", count=len(stopped), worker_id=self.worker_id)

    async def _shutdown(self) -> None:
        await self._controls.stop()
        active = dict(self._active)
        for task in active.values():
            task.cancel()
        for run_id, task in active.items():
            with suppress(asyncio.CancelledError, Exception):
                await task
            await release_lease(self.runtime.store, run_id, worker_id=self.worker_id)
        await self._runner.aclose()
