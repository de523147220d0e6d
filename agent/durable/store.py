"""The run store: runs, committed messages and steps, the tool-effect ledger, sources, page cache.

Plain SQL on asyncpg. The invariant the runner relies on: a turn (its messages, its steps, the
run's usage totals) is written in one transaction guarded by the worker's lease, so a reader never
sees half a turn and a worker that lost its lease can never write.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import asyncpg
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelRequest
from pydantic_ai.usage import RunUsage

from agent.config import RunConfig, RunStatus
from agent.errors import LeaseLostError, RunNotFoundError
from tools import FetchedPage

JSONValue = Any  # what asyncpg's jsonb codec returns: dict | list | str | int | float | bool | None
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One row of `runs`, as the API and CLI see it."""

    id: str
    question: str
    status: RunStatus
    stop_reason: str | None
    error: str | None
    config: RunConfig
    plan: list[str] | None
    report: dict[str, JSONValue] | None
    partial: dict[str, JSONValue] | None
    review: dict[str, JSONValue] | None
    """The critic's verdicts (`agent.review.critic.Review`), once the report was graded."""
    usage: RunUsage
    cost_usd: Decimal
    cost_known: bool
    elapsed_seconds: float
    message_count: int
    attempts: int
    lease_owner: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One human-readable step: a plan, a model turn, a tool call or an event."""

    seq: int
    kind: str
    name: str
    tool_call_id: str | None = None
    args: JSONValue = None
    summary: str = ""
    ok: bool = True
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal | None = None
    latency_ms: float | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class TurnCommit:
    """Everything one turn adds, written atomically."""

    messages: Sequence[ModelMessage]
    first_seq: int
    steps: Sequence[StepRecord]
    usage: RunUsage
    elapsed_seconds: float
    cost_usd: Decimal = Decimal(0)
    cost_known: bool = True
    plan: list[str] | None = None
    review: dict[str, JSONValue] | None = None


@dataclass(frozen=True, kw_only=True)
class ToolEffect:
    tool_call_id: str
    tool_name: str
    result: JSONValue
    latency_ms: float


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One row of the append-only tool-policy audit."""

    id: int
    tool: str
    args: JSONValue
    decision: str
    reason: str
    created_at: datetime


def usage_to_json(usage: RunUsage) -> dict[str, JSONValue]:
    data = dataclasses.asdict(usage)
    data["cost"] = None if usage.cost is None else str(usage.cost)
    return data


def usage_from_json(data: dict[str, JSONValue]) -> RunUsage:
    values = dict(data)
    cost = values.pop("cost", None)
    usage = RunUsage(**{k: v for k, v in values.items() if k in _RUN_USAGE_FIELDS})
    usage.cost = None if cost is None else Decimal(str(cost))
    return usage


_RUN_USAGE_FIELDS = {f.name for f in dataclasses.fields(RunUsage)} - {"cost"}


def _message_kind(message: ModelMessage) -> str:
    return "request" if isinstance(message, ModelRequest) else "response"


class RunStore:
    """Typed access to the run tables. Implements `tools.PageCache` too."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- runs ---------------------------------------------------------------------------------
    async def create_run(self, *, question: str, config: RunConfig) -> RunRecord:
        run_id = uuid.uuid4()
        row = await self.pool.fetchrow(
            "INSERT INTO runs (id, question, status, config, model, prompt_version)"
            " VALUES ($1, $2, 'queued', $3, $4, $5) RETURNING *",
            run_id,
            question,
            config.model_dump(mode="json"),
            config.model,
            config.prompt_version,
        )
        return _run_from_row(row)

    async def get_run(self, run_id: str) -> RunRecord:
        """By full id or a unique prefix of at least 6 characters."""
        if len(run_id) >= 36:
            row = await self.pool.fetchrow("SELECT * FROM runs WHERE id::text = $1", run_id.lower())
        else:
            if len(run_id) < 6:
                raise RunNotFoundError(f"run id prefix {run_id!r} is too short: give at least 6 characters")
            rows = await self.pool.fetch("SELECT * FROM runs WHERE id::text LIKE $1 || '%' LIMIT 2", run_id.lower())
            if len(rows) > 1:
                raise RunNotFoundError(f"run id prefix {run_id!r} is ambiguous: give more characters")
            row = rows[0] if rows else None
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r}; see `research-agent runs list`")
        return _run_from_row(row)

    async def list_runs(self, *, limit: int = 20) -> list[RunRecord]:
        rows = await self.pool.fetch("SELECT * FROM runs ORDER BY created_at DESC LIMIT $1", limit)
        return [_run_from_row(r) for r in rows]

    async def claim_next(self, *, worker_id: str, lease_seconds: float) -> RunRecord | None:
        """Claim the oldest queued run, or a running one whose lease expired (its worker died)."""
        row = await self.pool.fetchrow(
            """
            UPDATE runs SET status = 'running', lease_owner = $1,
                   lease_expires_at = now() + make_interval(secs => $2),
                   attempts = attempts + 1, started_at = coalesce(started_at, now()), updated_at = now()
            WHERE id = (
                SELECT id FROM runs
                WHERE status = 'queued' OR (status = 'running' AND lease_expires_at < now())
                ORDER BY created_at
                FOR UPDATE SKIP LOCKED
                LIMIT 1)
            RETURNING *
            """,
            worker_id,
            lease_seconds,
        )
        return None if row is None else _run_from_row(row)

    async def claim_run(self, run_id: str, *, worker_id: str, lease_seconds: float) -> RunRecord | None:
        """Claim one specific run if it is claimable (queued, or running with an expired lease)."""
        row = await self.pool.fetchrow(
            """
            UPDATE runs SET status = 'running', lease_owner = $2,
                   lease_expires_at = now() + make_interval(secs => $3),
                   attempts = attempts + 1, started_at = coalesce(started_at, now()), updated_at = now()
            WHERE id = $1 AND (status = 'queued' OR (status = 'running' AND lease_expires_at < now()))
            RETURNING *
            """,
            uuid.UUID(run_id),
            worker_id,
            lease_seconds,
        )
        return None if row is None else _run_from_row(row)

    async def renew_lease(
        self, run_id: str, *, worker_id: str, lease_seconds: float, elapsed_seconds: float | None = None
    ) -> bool:
        """Extend this worker's lease; also records run time so a crash loses at most one heartbeat of it."""
        result = await self.pool.execute(
            "UPDATE runs SET lease_expires_at = now() + make_interval(secs => $3),"
            " elapsed_seconds = greatest(elapsed_seconds, coalesce($4, 0))"
            " WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
            uuid.UUID(run_id),
            worker_id,
            lease_seconds,
            elapsed_seconds,
        )
        return result == "UPDATE 1"

    async def requeue(self, run_id: str) -> RunRecord:
        """Make a stopped (failed, killed, budget_exceeded) run claimable again, keeping its history."""
        row = await self.pool.fetchrow(
            "UPDATE runs SET status = 'queued', stop_reason = NULL, error = NULL, lease_owner = NULL,"
            " lease_expires_at = NULL, finished_at = NULL, updated_at = now()"
            " WHERE id = $1 AND status IN ('failed', 'killed', 'budget_exceeded') RETURNING *",
            uuid.UUID(run_id),
        )
        if row is None:
            current = await self.get_run(run_id)
            hint = (
                "; decide its requests with `research-agent approvals`" if current.status == "awaiting_approval" else ""
            )
            raise RunNotFoundError(f"run {run_id} is {current.status}; only stopped runs can be resumed{hint}")
        return _run_from_row(row)

    # --- turns --------------------------------------------------------------------------------
    async def commit_turn(self, run_id: str, *, worker_id: str, turn: TurnCommit) -> None:
        """Write a turn's messages, steps and usage in one transaction, if this worker still holds the lease."""
        rid = uuid.UUID(run_id)
        async with self.pool.acquire() as conn, conn.transaction():
            # The lease check is the update itself: a worker that lost its lease matches no row.
            updated = await conn.execute(
                """
                UPDATE runs SET usage = $3, requests = $4, tool_calls = $5, input_tokens = $6,
                       output_tokens = $7, cost_usd = $8, cost_known = $9, elapsed_seconds = $10,
                       message_count = $11, plan = coalesce($12, plan), review = coalesce($13, review),
                       updated_at = now()
                WHERE id = $1 AND lease_owner = $2
                """,
                rid,
                worker_id,
                usage_to_json(turn.usage),
                turn.usage.requests,
                turn.usage.tool_calls,
                turn.usage.input_tokens,
                turn.usage.output_tokens,
                turn.cost_usd,
                turn.cost_known,
                turn.elapsed_seconds,
                turn.first_seq + len(turn.messages),
                turn.plan,
                turn.review,
            )
            if updated != "UPDATE 1":
                raise LeaseLostError(f"run {run_id} is no longer leased to {worker_id!r}")
            if turn.messages:
                payload = ModelMessagesTypeAdapter.dump_python(list(turn.messages), mode="json")
                await conn.executemany(
                    "INSERT INTO run_messages (run_id, seq, kind, message) VALUES ($1, $2, $3, $4)",
                    [
                        (rid, turn.first_seq + i, _message_kind(m), data)
                        for i, (m, data) in enumerate(zip(turn.messages, payload, strict=True))
                    ],
                )
            if turn.steps:
                await _insert_steps(conn, rid, turn.steps)

    async def finish_run(
        self,
        run_id: str,
        *,
        worker_id: str,
        status: RunStatus,
        stop_reason: str | None,
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
            row = await conn.fetchrow(
                """
                UPDATE runs SET status = $2, stop_reason = $3, report = $4, error = $5, partial = $6,
                       elapsed_seconds = greatest(elapsed_seconds, coalesce($7, 0)),
                       review = coalesce($9, review),
                       finished_at = CASE WHEN $2 IN ('queued', 'running', 'awaiting_approval')
                                          THEN NULL ELSE now() END,
                       lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
                WHERE id = $1 AND lease_owner = $8 RETURNING *
                """,
                rid,
                status,
                stop_reason,
                report,
                error,
                partial,
                elapsed_seconds,
                worker_id,
                review,
            )
            if row is None:
                raise LeaseLostError(f"run {run_id} is no longer leased to {worker_id!r}")
            if steps:
                await _insert_steps(conn, rid, steps)
        return _run_from_row(row)

    async def load_messages(self, run_id: str) -> list[ModelMessage]:
        rows = await self.pool.fetch(
            "SELECT message FROM run_messages WHERE run_id = $1 ORDER BY seq", uuid.UUID(run_id)
        )
        return ModelMessagesTypeAdapter.validate_python([r["message"] for r in rows])

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self.pool.fetch("SELECT * FROM run_steps WHERE run_id = $1 ORDER BY seq", uuid.UUID(run_id))
        return [
            StepRecord(
                seq=r["seq"],
                kind=r["kind"],
                name=r["name"],
                tool_call_id=r["tool_call_id"],
                args=r["args"],
                summary=r["summary"],
                ok=r["ok"],
                input_tokens=r["input_tokens"],
                output_tokens=r["output_tokens"],
                cost_usd=r["cost_usd"],
                latency_ms=r["latency_ms"],
                created_at=r["created_at"],
            )
            for r in rows
        ]

    async def create_run_with_events(
        self, *, question: str, config: RunConfig, events: Sequence[StepRecord]
    ) -> RunRecord:
        """`create_run` plus event steps in one transaction, so no worker can claim the run before they exist."""
        run_id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO runs (id, question, status, config, model, prompt_version)"
                " VALUES ($1, $2, 'queued', $3, $4, $5) RETURNING *",
                run_id,
                question,
                config.model_dump(mode="json"),
                config.model,
                config.prompt_version,
            )
            if events:
                await _insert_steps(conn, run_id, events)
        return _run_from_row(row)

    async def add_event(self, run_id: str, name: str, summary: str, args: JSONValue = None, *, ok: bool = True) -> None:
        """Append one event step outside a turn (e.g. the input screen, recorded when the run is created)."""
        rid = uuid.UUID(run_id)
        async with self.pool.acquire() as conn, conn.transaction():
            seq = await conn.fetchval("SELECT coalesce(max(seq) + 1, 0) FROM run_steps WHERE run_id = $1", rid)
            step = StepRecord(seq=int(seq), kind="event", name=name, summary=summary, args=args, ok=ok)
            await _insert_steps(conn, rid, [step])

    async def next_step_seq(self, run_id: str) -> int:
        value = await self.pool.fetchval(
            "SELECT coalesce(max(seq) + 1, 0) FROM run_steps WHERE run_id = $1", uuid.UUID(run_id)
        )
        return int(value)

    # --- tool-effect ledger ---------------------------------------------------------------------
    async def load_tool_effects(self, run_id: str) -> dict[str, ToolEffect]:
        """Every recorded tool result of the run, by tool call id (read once when a run starts or resumes)."""
        rows = await self.pool.fetch(
            "SELECT tool_call_id, tool_name, result, latency_ms FROM tool_effects WHERE run_id = $1",
            uuid.UUID(run_id),
        )
        return {
            r["tool_call_id"]: ToolEffect(
                tool_call_id=r["tool_call_id"],
                tool_name=r["tool_name"],
                result=r["result"],
                latency_ms=r["latency_ms"],
            )
            for r in rows
        }

    async def put_tool_effect(
        self,
        run_id: str,
        *,
        tool_call_id: str,
        tool_name: str,
        args: JSONValue,
        result: JSONValue,
        latency_ms: float,
    ) -> None:
        await self.pool.execute(
            "INSERT INTO tool_effects (run_id, tool_call_id, tool_name, args, result, latency_ms)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, tool_call_id) DO NOTHING",
            uuid.UUID(run_id),
            tool_call_id,
            tool_name,
            args,
            result,
            latency_ms,
        )

    # --- tool policy audit (append-only; see agent/migrations/0004_audit.sql) -------------------
    async def audit(self, run_id: str, *, tool: str, args: JSONValue, decision: str, reason: str) -> None:
        """Append one tool-policy decision; `args` must already be redacted."""
        await insert_audit(self.pool, run_id, tool=tool, args=args, decision=decision, reason=reason)

    async def audit_rows(self, run_id: str) -> list[AuditRecord]:
        rows = await self.pool.fetch("SELECT * FROM tool_audit WHERE run_id = $1 ORDER BY id", uuid.UUID(run_id))
        return [
            AuditRecord(
                id=r["id"],
                tool=r["tool"],
                args=r["args"],
                decision=r["decision"],
                reason=r["reason"],
                created_at=r["created_at"],
            )
            for r in rows
        ]

    # --- sources --------------------------------------------------------------------------------
    async def record_source(self, run_id: str, page: FetchedPage) -> None:
        await self.pool.execute(
            "INSERT INTO run_sources (run_id, url, final_url, title, text, fetched_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, url) DO UPDATE"
            " SET final_url = EXCLUDED.final_url, title = EXCLUDED.title, text = EXCLUDED.text,"
            " fetched_at = EXCLUDED.fetched_at",
            uuid.UUID(run_id),
            page.url,
            page.final_url,
            page.title,
            page.text,
            page.fetched_at,
        )

    async def load_sources(self, run_id: str) -> dict[str, FetchedPage]:
        rows = await self.pool.fetch(
            "SELECT * FROM run_sources WHERE run_id = $1 ORDER BY fetched_at", uuid.UUID(run_id)
        )
        return {
            r["url"]: FetchedPage(
                url=r["url"],
                final_url=r["final_url"],
                status_code=200,
                content_type="",
                title=r["title"],
                text=r["text"],
                fetched_at=r["fetched_at"],
            )
            for r in rows
        }

    # --- page cache (tools.PageCache) -----------------------------------------------------------
    async def get_page(self, url: str) -> FetchedPage | None:
        row = await self.pool.fetchrow("SELECT * FROM page_cache WHERE url = $1 AND expires_at > now()", url)
        if row is None:
            return None
        return FetchedPage(
            url=row["url"],
            final_url=row["final_url"],
            status_code=row["status_code"],
            content_type=row["content_type"],
            title=row["title"],
            text=row["text"],
            fetched_at=row["fetched_at"],
        )

    async def put_page(self, page: FetchedPage, *, ttl: timedelta) -> None:
        if ttl <= timedelta(0):
            return
        await self.pool.execute(
            """
            INSERT INTO page_cache (url, final_url, status_code, content_type, title, text, fetched_at, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8)
            ON CONFLICT (url) DO UPDATE SET final_url = EXCLUDED.final_url, status_code = EXCLUDED.status_code,
                content_type = EXCLUDED.content_type, title = EXCLUDED.title, text = EXCLUDED.text,
                fetched_at = EXCLUDED.fetched_at, expires_at = EXCLUDED.expires_at
            """,
            page.url,
            page.final_url,
            page.status_code,
            page.content_type,
            page.title,
            page.text,
            page.fetched_at,
            ttl,
        )


async def insert_audit(
    conn: Connection | asyncpg.Pool, run_id: str, *, tool: str, args: JSONValue, decision: str, reason: str
) -> None:
    """Append a row to the append-only `tool_audit`, on a pool or inside a caller's transaction."""
    await conn.execute(
        "INSERT INTO tool_audit (run_id, tool, args, decision, reason) VALUES ($1, $2, $3, $4, $5)",
        uuid.UUID(run_id),
        tool,
        args,
        decision,
        reason,
    )


async def _insert_steps(conn: Connection, run_id: uuid.UUID, steps: Sequence[StepRecord]) -> None:
    await conn.executemany(
        "INSERT INTO run_steps (run_id, seq, kind, name, tool_call_id, args, summary, ok,"
        " input_tokens, output_tokens, cost_usd, latency_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
        [
            (
                run_id,
                s.seq,
                s.kind,
                s.name,
                s.tool_call_id,
                s.args,
                s.summary,
                s.ok,
                s.input_tokens,
                s.output_tokens,
                s.cost_usd,
                s.latency_ms,
            )
            for s in steps
        ],
    )


def _run_from_row(row: asyncpg.Record | None) -> RunRecord:
    assert row is not None
    return RunRecord(
        id=str(row["id"]),
        question=row["question"],
        status=cast(RunStatus, row["status"]),
        stop_reason=row["stop_reason"],
        error=row["error"],
        config=RunConfig.model_validate(row["config"]),
        plan=row["plan"],
        report=row["report"],
        partial=row["partial"],
        review=row["review"],
        usage=usage_from_json(row["usage"]),
        cost_usd=row["cost_usd"],
        cost_known=row["cost_known"],
        elapsed_seconds=row["elapsed_seconds"],
        message_count=row["message_count"],
        attempts=row["attempts"],
        lease_owner=row["lease_owner"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


async def release_lease(store: RunStore, run_id: str, *, worker_id: str) -> bool:
    """Hand a running run back to the queue (graceful worker shutdown); False if not ours."""
    result = await store.pool.execute(
        "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
        " WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        uuid.UUID(run_id),
        worker_id,
    )
    return bool(result == "UPDATE 1")
