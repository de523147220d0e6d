"""The worker: claims queued (or abandoned) runs and executes them, up to `concurrency` at once.

Claims use `FOR UPDATE SKIP LOCKED` plus a lease the runner keeps renewing, so many workers on many
machines can share one database; a run whose worker died is claimed again once its lease expires.
`on_event` hears one `WorkerEvent` when a run is claimed and one when the worker is done with it (the
CLI prints one log line each).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from contextlib import suppress

import logfire
from pydantic_ai.models import Model

from agent.api import Runtime, new_worker_id
from agent.durable.alerts import AlertMonitor
from agent.durable.approvals import ApprovalStore
from agent.durable.controls import ControlWatcher, KillSwitchState
from agent.durable.outage import Outage, database_unavailable, quiet_pool_reconnects
from agent.durable.runner import DurableRunner
from agent.durable.stops import describe
from agent.durable.store import PageCacheSweeper, RunRecord, release_lease
from agent.durable.webhooks import WebhookDispatcher
from agent.events import (
    ProgressCallback,
    WorkerCallback,
    WorkerEvent,
    WorkerEventKind,
    ignore_progress,
    ignore_worker_events,
)
from agent.guardrails import redact_text
from agent.metrics import MetricsRefresher, record_run_end  # metrics hook
from tools import truncate_text


def _log_notice(message: str) -> None:
    logfire.warn(message)


MAX_ERROR_CHARS = 2_000


def failure_text(exc: BaseException, *, attempt: int, worker_id: str) -> str:
    """An execution's unexpected error as the run records it (`last_error`): described as a run's own
    `internal_error` is (`stops.describe`), redacted and bounded, with the attempt and the worker."""
    text, _ = truncate_text(redact_text(describe(exc))[0], max_chars=MAX_ERROR_CHARS)
    return f"{text} (attempt {attempt}, worker {worker_id})"


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
        on_event: WorkerCallback = ignore_worker_events,
        on_notice: Callable[[str], None] = _log_notice,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.runtime = runtime
        self.concurrency = concurrency
        self.worker_id = worker_id or new_worker_id()
        self.max_runs = max_runs
        self.exit_when_idle = exit_when_idle
        self.finished: list[RunRecord] = []
        self.on_event = on_event
        self._claimed: dict[str, tuple[RunRecord, float]] = {}  # run id -> the run as claimed, when (monotonic)
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
        self._page_sweeper = PageCacheSweeper(runtime.pool)  # deletes expired page_cache rows while running
        self._metrics = MetricsRefresher(runtime.pool, runtime.settings)  # metrics hook: the gauges' readings
        self._alerts = AlertMonitor(runtime.pool, runtime.settings, worker_id=self.worker_id)  # alerts hook
        self._webhooks = WebhookDispatcher(runtime.pool, runtime.settings, worker_id=self.worker_id)  # webhooks hook
        self._outage = Outage(what=f"worker {self.worker_id}", notice=on_notice)
        quiet_pool_reconnects()
        self._abandoned: dict[str, str | None] = {}
        """Runs whose execution here ended without finishing them, to hand back to the queue (`_release_abandoned`),
        with the error to record: None for a run given up because the database went away (not a failed attempt)."""

    def stop(self) -> None:
        """Stop claiming; in-flight runs are handed back to the queue."""
        self._stopping.set()

    async def run(self) -> list[RunRecord]:
        settings = self.runtime.settings
        claimed_total = 0
        logfire.info("worker started", worker_id=self.worker_id, concurrency=self.concurrency)
        await self._webhooks.start()  # webhooks hook: ConfigurationError for a URL the fetch SSRF rules refuse
        await self._controls.start()
        self._page_sweeper.start()
        self._metrics.start()  # metrics hook: approvals waiting and breakers every metrics_refresh_seconds
        self._alerts.start()  # alerts hook: checks the rules every alert_check_seconds
        try:
            while not self._stopping.is_set():
                await self._release_abandoned()  # whatever the branch below: a failed run is retried at once
                if self.max_runs is not None and claimed_total >= self.max_runs:
                    if not self._active:
                        break
                elif self._controls.kill_switch_on:  # claim nothing; an idle batch worker has nothing to wait for
                    if self.exit_when_idle and not self._active:
                        break
                elif len(self._active) < self.concurrency:
                    await self._expire_approvals()
                    # While the database is unreachable this waits (backoff, jitter) instead of exiting.
                    run = await self._outage.call(self._claim_next, stop=self._stopping)
                    if run is not None and run.id in self._active:
                        # Its lease ran out during an outage and we claimed it again: the execution already
                        # here goes on (now under the renewed lease); a second one would duplicate its work.
                        continue
                    if run is not None:
                        claimed_total += 1
                        self._start(run)
                        continue
                    if self.exit_when_idle and not self._active:
                        break
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=settings.worker_poll_seconds)
        finally:
            await self._shutdown()
        return self.finished

    async def _claim_next(self) -> RunRecord | None:
        """End the runs that used up their attempts (counted in the metrics like any run that ends), then
        claim the oldest claimable run: never one that used up its attempts meanwhile (the claim checks)."""
        settings = self.runtime.settings
        for exhausted in await self.runtime.store.fail_exhausted(max_attempts=settings.max_attempts):
            record_run_end(exhausted)  # metrics hook: a run the attempt cap ended
            logfire.warn(
                "run {run_id} failed: too many attempts; last error: {last_error}",
                run_id=exhausted.id,
                last_error=exhausted.last_error,
                worker_id=self.worker_id,
            )
        return await self.runtime.store.claim_next(
            worker_id=self.worker_id, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts
        )

    async def _release_abandoned(self) -> None:
        """Hand back the runs whose execution here ended without finishing them, before this worker claims
        again: they resume from their last commit at once (any worker). A run given up because the database
        went away is handed back once it answers, and the outage does not count as one of its attempts. A run
        whose execution failed with an unexpected error is handed back with that error, in one statement
        fenced by the lease: a failed attempt (the attempt cap), and its `last_error`. Nothing is written for a
        run whose lease is someone else's by now."""
        for run_id, error in list(self._abandoned.items()):
            try:
                handed = await release_lease(self.runtime.store, run_id, worker_id=self.worker_id, error=error)
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                return  # still down: the claim below waits for it
            del self._abandoned[run_id]
            if handed and error is not None:
                logfire.warn("run {run_id} failed ({error}); handed back to the queue", run_id=run_id, error=error)

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
            if not database_unavailable(exc):  # an outage is logged once, by the claim that waits it out
                logfire.warn("could not expire approval requests: {error}", error=str(exc), worker_id=self.worker_id)
            return
        for approval in expired:
            logfire.info("approval {id} timed out: rejected", id=approval.id, run_id=approval.run_id)

    def _start(self, run: RunRecord) -> None:
        logfire.info("claimed run", run_id=run.id, worker_id=self.worker_id, attempt=run.attempts)
        self._claimed[run.id] = (run, time.monotonic())
        self._emit("claimed", run)
        task = asyncio.create_task(self._runner.execute(run))
        self._active[run.id] = task
        task.add_done_callback(functools.partial(self._done, run.id))

    def _done(self, run_id: str, task: asyncio.Task[RunRecord]) -> None:
        self._active.pop(run_id, None)
        if task.cancelled():  # shutdown: `_shutdown` hands it back and reports it
            return
        claimed, _ = self._claimed[run_id]
        error = task.exception()
        if error is not None and database_unavailable(error):
            self._abandoned.setdefault(run_id, None)  # nothing was finished: it goes on from its last commit
            self._emit("abandoned", claimed, error="the database became unreachable; retried from its last commit")
            return
        if error is not None:
            # Not a stop the runner decided, not an outage: a failed attempt. It is handed back to the queue with
            # the error recorded (`_release_abandoned`, before this worker's next claim), so it is retried at
            # once, and a run that fails every time ends `too_many_attempts` naming the error.
            logfire.error("run task failed: {error}", error=repr(error), run_id=run_id)
            self._abandoned[run_id] = failure_text(error, attempt=claimed.attempts, worker_id=self.worker_id)
            self._emit("abandoned", claimed, error=repr(error))
            return
        final = task.result()
        self.finished.append(final)
        # A run whose lease went to another worker is still `running`: released, not finished.
        self._emit("released" if final.status in ("queued", "running") else "finished", final)

    def _emit(self, kind: WorkerEventKind, run: RunRecord, *, error: str | None = None) -> None:
        """One `WorkerEvent` for `on_event`; a failing callback is logged, never fatal to the worker."""
        _, started = self._claimed.get(run.id, (run, time.monotonic()))
        if kind != "claimed":
            self._claimed.pop(run.id, None)
        event = WorkerEvent(
            kind=kind,
            worker_id=self.worker_id,
            run_id=run.id,
            question=run.question,
            status=run.status,
            stop_reason=run.stop_reason,
            attempt=run.attempts,
            duration_seconds=0.0 if kind == "claimed" else time.monotonic() - started,
            cost_usd=run.cost_usd,
            error=error or (run.error if kind == "finished" else None),
        )
        try:
            self.on_event(event)
        except Exception:
            logfire.exception("worker event callback failed", run_id=run.id, worker_id=self.worker_id)

    def _kill_switch_on(self, state: KillSwitchState) -> None:
        stopped = self._runner.kill_all(f"stopped: {state.describe()}")
        if stopped:
            logfire.warn("kill switch on: stopping {count} runs", count=len(stopped), worker_id=self.worker_id)

    async def _shutdown(self) -> None:
        await self._webhooks.stop()  # webhooks hook: a delivery cut short is sent again (at least once)
        await self._controls.stop()
        await self._page_sweeper.stop()
        await self._metrics.stop()  # metrics hook
        await self._alerts.stop()  # alerts hook
        active = dict(self._active)
        for task in active.values():
            task.cancel()
        for run_id, task in active.items():
            with suppress(asyncio.CancelledError, Exception):
                await task
            try:
                await release_lease(self.runtime.store, run_id, worker_id=self.worker_id)
            except Exception as exc:  # the database is down: the lease expires and another worker resumes it
                if not database_unavailable(exc):
                    raise
                logfire.warn("could not hand run {run_id} back: {error}", run_id=run_id, error=str(exc))
            if run_id in self._claimed:  # not reported by `_done`: handed back to the queue
                with suppress(Exception):
                    self._emit("released", await self.runtime.store.get_run(run_id))
        try:  # runs that failed here since the last poll: handed back with their error, not left to expire
            await self._release_abandoned()
        except Exception as exc:
            logfire.warn("could not hand back failed runs: {error}", error=str(exc), worker_id=self.worker_id)
        await self._runner.aclose()
