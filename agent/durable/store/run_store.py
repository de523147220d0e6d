"""`RunStore`: one typed object over the run tables, delegating to the module that owns each table."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import asyncpg

from agent.config import RunConfig, RunStatus, StopReason
from agent.durable.store import effects, events, history, pages, runs
from agent.durable.store.events import RunEvent
from agent.durable.store.records import AuditRecord, JSONValue, RunRecord, StepRecord, ToolEffect, TurnCommit
from tools import FetchedPage

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage

    from budgets import Budget


class RunStore:
    """Typed access to the run tables. Implements `tools.PageCache` too.

    The invariant the runner relies on: a turn (its messages, its steps, the run's usage totals) is
    written in one transaction guarded by the worker's lease, so a reader never sees half a turn and
    a worker that lost its lease can never write.
    """

    def __init__(self, pool: asyncpg.Pool, *, worker_id: str | None = None, run_id: str | None = None) -> None:
        if (worker_id is None) != (run_id is None):
            raise ValueError("a leased store needs both the worker and the run it holds the lease of")
        self.pool = pool
        self.worker_id = worker_id
        """Set on a worker's view of one run (`leased`): its tool effects, audit rows, sources and cached pages
        are then written only while that worker holds the run's lease, checked in the writing statement."""
        self.run_id = run_id
        """The run `worker_id` holds: the page cache (`put_page`, shared by every run) is written on its behalf."""

    def leased(self, worker_id: str, *, run_id: str) -> RunStore:
        """This store as the worker `worker_id` executing the run `run_id` uses it: every write it makes on the
        run's behalf is fenced by the lease (`LeaseLostError` once another worker has the run), the page cache
        included."""
        return RunStore(self.pool, worker_id=worker_id, run_id=run_id)

    # --- runs -------------------------------------------------------------------------------------
    async def create_run(self, *, question: str, config: RunConfig) -> RunRecord:
        return await runs.insert(self.pool, run_id=uuid.uuid4(), question=question, config=config)

    async def create_run_with_events(
        self, *, question: str, config: RunConfig, events: Sequence[StepRecord]
    ) -> RunRecord:
        """`create_run` plus event steps in one transaction, so no worker can claim the run before they exist."""
        run_id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            run = await runs.insert(conn, run_id=run_id, question=question, config=config)
            await history.insert_steps(conn, run_id, events)
        return run

    async def get_run(self, run_id: str) -> RunRecord:
        """By full id or a unique prefix of at least 6 characters."""
        return await runs.get(self.pool, run_id)

    async def list_runs(self, *, limit: int = 20, statuses: Sequence[RunStatus] | None = None) -> list[RunRecord]:
        """The newest `limit` runs, of any status or only of `statuses`."""
        return await runs.list_recent(self.pool, limit=limit, statuses=statuses)

    async def claim_next(
        self, *, worker_id: str, lease_seconds: float, max_attempts: int | None = None
    ) -> RunRecord | None:
        """Claim the oldest queued run, or a running one whose lease expired (its worker died). With
        `max_attempts`, a run that used them all is never claimed (checked in the claiming statement); the
        worker ends such runs with `fail_exhausted` before it claims."""
        return await runs.claim_next(
            self.pool, worker_id=worker_id, lease_seconds=lease_seconds, max_attempts=max_attempts
        )

    async def fail_exhausted(self, *, max_attempts: int) -> list[RunRecord]:
        """End the runs whose last `max_attempts` attempts in a row failed (`failed` / `too_many_attempts`, the
        error naming the last failure) and return them, for the worker to report (log line, metrics)."""
        return await runs.fail_exhausted(self.pool, max_attempts=max_attempts)

    async def claim_run(self, run_id: str, *, worker_id: str, lease_seconds: float) -> RunRecord | None:
        """Claim one specific run if it is claimable (queued, or running with an expired lease)."""
        return await runs.claim(self.pool, run_id, worker_id=worker_id, lease_seconds=lease_seconds)

    async def renew_lease(
        self, run_id: str, *, worker_id: str, lease_seconds: float, elapsed_seconds: float | None = None
    ) -> bool:
        """Extend this worker's lease; also records run time so a crash loses at most one heartbeat of it."""
        return await runs.renew_lease(
            self.pool, run_id, worker_id=worker_id, lease_seconds=lease_seconds, elapsed_seconds=elapsed_seconds
        )

    async def requeue(self, run_id: str, *, budget: Budget | None = None) -> RunRecord:
        """Make a stopped (failed, killed, budget_exceeded, cancelled) run claimable again, keeping its history.

        With `budget`, the run continues under those caps: its frozen `config.budget` is replaced in the
        statement that queues it, and a `budget_changed` event step records the caps before and after
        (in the same transaction: no worker claims the run before both are written).
        """
        if budget is None:
            return await runs.requeue_stopped(self.pool, run_id)
        rid = uuid.UUID(run_id)
        async with self.pool.acquire() as conn, conn.transaction():
            run, before = await runs.requeue_with_budget(conn, run_id, budget=budget.model_dump(mode="json"))
            old, new = budget_change(before, run.config.budget.model_dump(mode="json"))
            if new:
                step = StepRecord(
                    seq=await history.next_step_seq(conn, rid),
                    kind="event",
                    name="budget_changed",
                    args={"old": old, "new": new},
                    summary=f"caps changed on resume: {describe_budget_change(old, new)}",
                )
                await history.insert_steps(conn, rid, [step])
        return run

    # --- turns --------------------------------------------------------------------------------------
    async def commit_turn(self, run_id: str, *, worker_id: str, turn: TurnCommit) -> None:
        """Write a turn's messages, steps and usage in one transaction, if this worker still holds the lease."""
        rid = uuid.UUID(run_id)
        async with self.pool.acquire() as conn, conn.transaction():
            # The lease check is the update itself: a worker that lost its lease matches no row.
            await runs.record_turn(conn, rid, worker_id=worker_id, turn=turn)
            await history.insert_messages(conn, rid, first_seq=turn.first_seq, messages=turn.messages)
            await history.insert_steps(conn, rid, turn.steps)

    async def finish_run(
        self,
        run_id: str,
        *,
        worker_id: str,
        status: RunStatus,
        stop_reason: StopReason | None,
        report: dict[str, JSONValue] | None,
        partial: dict[str, JSONValue] | None = None,
        error: str | None = None,
        steps: Sequence[StepRecord] = (),
        elapsed_seconds: float | None = None,
        review: dict[str, JSONValue] | None = None,
    ) -> RunRecord:
        rid = uuid.UUID(run_id)
        async with self.pool.acquire() as conn, conn.transaction():
            # As in commit_turn, the lease check is the update itself.
            run = await runs.finish(
                conn,
                rid,
                worker_id=worker_id,
                status=status,
                stop_reason=stop_reason,
                report=report,
                partial=partial,
                error=error,
                elapsed_seconds=elapsed_seconds,
                review=review,
            )
            await history.insert_steps(conn, rid, steps)
        return run

    async def load_messages(self, run_id: str) -> list[ModelMessage]:
        return await history.load_messages(self.pool, uuid.UUID(run_id))

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        return await history.get_steps(self.pool, uuid.UUID(run_id))

    async def add_event(self, run_id: str, name: str, summary: str, args: JSONValue = None, *, ok: bool = True) -> None:
        """Append one event step outside a turn (e.g. the input screen, recorded when the run is created)."""
        rid = uuid.UUID(run_id)
        async with self.pool.acquire() as conn, conn.transaction():
            seq = await history.next_step_seq(conn, rid)
            step = StepRecord(seq=seq, kind="event", name=name, summary=summary, args=args, ok=ok)
            await history.insert_steps(conn, rid, [step])

    async def next_step_seq(self, run_id: str) -> int:
        return await history.next_step_seq(self.pool, uuid.UUID(run_id))

    # --- tool-effect ledger and policy audit (append-only; see migrations/0004_audit.sql) -------------
    async def load_tool_effects(self, run_id: str) -> dict[str, ToolEffect]:
        """Every recorded tool result of the run, by tool call id (read once when a run starts or resumes)."""
        return await effects.load_tool_effects(self.pool, uuid.UUID(run_id))

    async def put_tool_effect(
        self,
        run_id: str,
        *,
        tool_call_id: str,
        tool_name: str,
        args: JSONValue,
        result: JSONValue,
        latency_ms: float,
        origin: str | None = None,
    ) -> None:
        """Record a tool's result once; `origin`: where a `fetch_url` got its page (cache, network, corpus)."""
        await effects.put_tool_effect(
            self.pool,
            uuid.UUID(run_id),
            tool_call_id=tool_call_id,
            tool_name=tool_name,
            args=args,
            result=result,
            latency_ms=latency_ms,
            origin=origin,
            worker_id=self.worker_id,
        )

    async def audit(self, run_id: str, *, tool: str, args: JSONValue, decision: str, reason: str) -> None:
        """Append one tool-policy decision; `args` must already be redacted."""
        await effects.insert_audit(
            self.pool, run_id, tool=tool, args=args, decision=decision, reason=reason, worker_id=self.worker_id
        )

    async def audit_rows(self, run_id: str) -> list[AuditRecord]:
        return await effects.audit_rows(self.pool, uuid.UUID(run_id))

    async def events(self, run_id: str) -> list[RunEvent]:
        """The run's named events (`run.started` ... one terminal event), oldest first."""
        return await events.run_events(self.pool, uuid.UUID(run_id))

    # --- sources and the page cache (tools.PageCache) -------------------------------------------------
    async def record_source(self, run_id: str, page: FetchedPage) -> None:
        await pages.record_source(self.pool, uuid.UUID(run_id), page, worker_id=self.worker_id)

    async def load_sources(self, run_id: str) -> dict[str, FetchedPage]:
        return await pages.load_sources(self.pool, uuid.UUID(run_id))

    async def get_page(self, url: str) -> FetchedPage | None:
        return await pages.get_page(self.pool, url)

    async def put_page(self, page: FetchedPage, *, ttl: timedelta) -> None:
        """Cache `page` for every run; on a leased store, only while the worker holds the run's lease."""
        run_id = None if self.run_id is None else uuid.UUID(self.run_id)
        await pages.put_page(self.pool, page, ttl=ttl, run_id=run_id, worker_id=self.worker_id)


def budget_change(
    old: Mapping[str, JSONValue], new: Mapping[str, JSONValue]
) -> tuple[dict[str, JSONValue], dict[str, JSONValue]]:
    """The caps that differ between two budgets (as `Budget.model_dump(mode="json")`): before, after."""
    changed = [cap for cap in new if old.get(cap) != new[cap]]
    return {cap: old.get(cap) for cap in changed}, {cap: new[cap] for cap in changed}


def describe_budget_change(old: Mapping[str, JSONValue], new: Mapping[str, JSONValue]) -> str:
    """`max_turns 3 → 10, max_cost_usd 0.5 → none`, from `budget_change`'s two halves."""

    def text(value: JSONValue) -> str:
        return "none" if value is None else str(value)

    return ", ".join(f"{cap} {text(old.get(cap))} → {text(value)}" for cap, value in new.items()) or "unchanged"


async def release_lease(store: RunStore, run_id: str, *, worker_id: str, error: str | None = None) -> bool:
    """Hand a running run back to the queue; False if not ours (nothing written). With `error`, the attempt
    failed: it counts towards the attempt cap and `error` is recorded as the run's `last_error`."""
    return await runs.release_lease(store.pool, run_id, worker_id=worker_id, error=error)
