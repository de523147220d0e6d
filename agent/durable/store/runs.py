"""Every SQL statement on the `runs` table, and nothing else: other modules call these functions.

Each takes what it runs on (a pool, or a connection inside the caller's transaction). A write
fenced by a worker's lease checks the lease in its own `WHERE`, so a worker that lost its lease
matches no row and gets `LeaseLostError` instead of writing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import cast

import asyncpg

from agent.config import RunConfig, RunStatus, StopReason
from agent.durable.store.records import (
    Executor,
    JSONValue,
    RunRecord,
    TurnCommit,
    stored_usage,
    usage_to_json,
)
from agent.errors import LeaseLostError, RunNotFoundError
from agent.money import plain_money

RunId = str | uuid.UUID

_CLAIMABLE = "(status = 'queued' OR (status = 'running' AND lease_expires_at < now()))"
_FAILED = "(lost_leases + (status = 'running')::int)"
"""Of a claimable run: its attempts in a row that ended without finishing it, this one included when it is
`running` (its lease expired). `lost_leases` (a name kept from 0011 for the workers of the previous release)
counts expired leases (at the next claim) and failed executions handed back (`release_lease` with an error);
a deliberate requeue starts the count afresh."""
_LEASE_EXPIRED = (
    "'the lease of worker ' || coalesce(lease_owner, '?') || ' expired at '"
    " || to_char(lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'"
    " || ' (the worker died, stalled or lost the database before it finished)'"
)
"""Of a run `running` under an expired lease: what ended its last attempt, as far as the database can tell."""
_LAST_ERROR = f"CASE WHEN status = 'running' THEN {_LEASE_EXPIRED} ELSE last_error END"
"""Of a claimable run: what ended its last failed attempt (an expired lease now, else the error recorded)."""
_CLAIM = (
    "status = 'running', lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2),"
    f" attempts = attempts + 1, lost_leases = {_FAILED}, last_error = {_LAST_ERROR},"
    " started_at = coalesce(started_at, now()), updated_at = now()"
)
# Back to the queue with its history kept: `requeue_stopped` (one run) and `requeue_killed` (kill switch off).
# Queued again on purpose, a run starts counting failed attempts afresh (the attempt cap, `fail_exhausted`).
_REQUEUE = (
    "status = 'queued', stop_reason = NULL, error = NULL, lease_owner = NULL,"
    " lease_expires_at = NULL, finished_at = NULL, lost_leases = 0, last_error = NULL, updated_at = now()"
)


async def insert(db: Executor, *, run_id: uuid.UUID, question: str, config: RunConfig) -> RunRecord:
    row = await db.fetchrow(
        "INSERT INTO runs (id, question, status, config, model, prompt_version)"
        " VALUES ($1, $2, 'queued', $3, $4, $5) RETURNING *",
        run_id,
        question,
        config.model_dump(mode="json"),
        config.model,
        config.prompt_version,
    )
    return run_from_row(row)


BY_ID = "SELECT * FROM runs WHERE id = $1::uuid"
"""`get` with a full id: the primary key."""
BY_PREFIX = "SELECT * FROM runs WHERE id BETWEEN $1::uuid AND $2::uuid ORDER BY id LIMIT 2"
"""`get` with a prefix: a range on the primary key, from the prefix padded with 0s to it padded with fs."""
_MIN_PREFIX = 6
_HEX_DIGITS = frozenset("0123456789abcdef")


async def get(db: Executor, run_id: str) -> RunRecord:
    """By full id or a unique prefix of at least 6 hex digits (any case; hyphens are ignored)."""
    low, high = id_range(run_id)
    if low == high:
        row = await db.fetchrow(BY_ID, low)
    else:
        rows = await db.fetch(BY_PREFIX, low, high)
        if len(rows) > 1:
            raise RunNotFoundError(f"run id prefix {run_id!r} is ambiguous: give more characters")
        row = rows[0] if rows else None
    if row is None:
        raise RunNotFoundError(f"no run with id {run_id!r}; see `research-agent runs list`")
    return run_from_row(row)


def id_range(run_id: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The lowest and highest uuid that a run id, or a prefix of one, stands for (the same uuid for a full id).

    Only hex digits count, so no character of `run_id` can act as a wildcard; hyphens are dropped wherever
    they are typed. Raises `RunNotFoundError` for anything else, or fewer than 6 or more than 32 digits.
    """
    digits = run_id.strip().replace("-", "").lower()
    stray = sorted({c for c in digits if c not in _HEX_DIGITS})
    if stray:
        listed = " ".join(repr(c) for c in stray)
        raise RunNotFoundError(
            f"{run_id!r} is not a run id: run ids are hexadecimal (0-9, a-f, optional hyphens), not {listed};"
            " see `research-agent runs list`"
        )
    if len(digits) < _MIN_PREFIX:
        raise RunNotFoundError(
            f"run id prefix {run_id!r} is too short: give at least {_MIN_PREFIX} characters (hex digits)"
        )
    if len(digits) > 32:
        raise RunNotFoundError(f"{run_id!r} is not a run id: it has {len(digits)} hex digits, a run id has 32")
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


async def list_recent(db: Executor, *, limit: int, statuses: Sequence[RunStatus] | None = None) -> list[RunRecord]:
    """The newest `limit` runs, of any status or only of `statuses`."""
    rows = await db.fetch(
        "SELECT * FROM runs WHERE ($2::text[] IS NULL OR status = ANY($2::text[])) ORDER BY created_at DESC LIMIT $1",
        limit,
        None if statuses is None else list(statuses),
    )
    return [run_from_row(r) for r in rows]


async def count_running(db: Executor) -> int:
    """Runs holding a live lease (a worker is executing them now)."""
    count = await db.fetchval("SELECT count(*) FROM runs WHERE status = 'running' AND lease_expires_at > now()")
    return int(count)


# --- leases -----------------------------------------------------------------------------------------
async def fail_exhausted(db: Executor, *, max_attempts: int) -> list[RunRecord]:
    """End every claimable run whose last `max_attempts` attempts in a row all failed (its worker died,
    stalled or failed with an unexpected error each time): `failed` / `too_many_attempts`, with an error
    naming the last failure. Without this a poison run would change hands forever. `claim_next` never claims
    such a run, so no worker can start an attempt beyond the cap, whichever of the two runs first."""
    rows = await db.fetch(
        f"""
        UPDATE runs SET status = 'failed', stop_reason = 'too_many_attempts',
               error = 'the run was attempted ' || {_FAILED} || ' times in a row and no attempt finished it'
                       || ' (each time its worker died, stalled, lost the database or failed with an unexpected'
                       || ' error); last error: ' || coalesce({_LAST_ERROR}, 'none recorded')
                       || '. Resume it with `research-agent runs resume` once the cause is fixed.',
               lost_leases = {_FAILED}, last_error = {_LAST_ERROR},
               lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
        WHERE id IN (SELECT id FROM runs WHERE {_CLAIMABLE} AND {_FAILED} >= $1 FOR UPDATE SKIP LOCKED)
        RETURNING *
        """,
        max_attempts,
    )
    return [run_from_row(row) for row in rows]


async def claim_next(
    db: Executor, *, worker_id: str, lease_seconds: float, max_attempts: int | None = None
) -> RunRecord | None:
    """Claim the oldest queued run, or a running one whose lease expired (its worker died).

    With `max_attempts`, a run that used them all is never claimed: the claim checks it in its own statement,
    under the row lock, so a run whose lease expires after the worker's `fail_exhausted` and before this claim
    gets no attempt beyond the cap; the worker's next `fail_exhausted` ends it.
    """
    row = await db.fetchrow(
        f"""
        UPDATE runs SET {_CLAIM}
        WHERE id = (SELECT id FROM runs WHERE {_CLAIMABLE} AND ($3::int IS NULL OR {_FAILED} < $3::int)
                    ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)
        RETURNING *
        """,
        worker_id,
        lease_seconds,
        max_attempts,
    )
    return None if row is None else run_from_row(row)


async def claim(db: Executor, run_id: RunId, *, worker_id: str, lease_seconds: float) -> RunRecord | None:
    """Claim one specific run if it is claimable (queued, or running with an expired lease)."""
    row = await db.fetchrow(
        f"UPDATE runs SET {_CLAIM} WHERE id = $3 AND {_CLAIMABLE} RETURNING *",
        worker_id,
        lease_seconds,
        _uuid(run_id),
    )
    return None if row is None else run_from_row(row)


async def renew_lease(
    db: Executor, run_id: RunId, *, worker_id: str, lease_seconds: float, elapsed_seconds: float | None
) -> bool:
    """Extend this worker's lease; also records run time so a crash loses at most one heartbeat of it."""
    result = await db.execute(
        "UPDATE runs SET lease_expires_at = now() + make_interval(secs => $3),"
        " elapsed_seconds = greatest(elapsed_seconds, coalesce($4, 0))"
        " WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        _uuid(run_id),
        worker_id,
        lease_seconds,
        elapsed_seconds,
    )
    return result == "UPDATE 1"


async def release_lease(db: Executor, run_id: RunId, *, worker_id: str, error: str | None = None) -> bool:
    """Hand a running run back to the queue; False if it is not this worker's any more (nothing written).

    Without `error`, a graceful hand-back (worker shutdown, a database outage): not a failed attempt. With
    `error`, the attempt failed (an unexpected exception): it counts towards the attempt cap and `error`
    becomes the run's `last_error`, in the same statement, fenced by the lease like every write of a worker.
    """
    result = await db.execute(
        "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),"
        " lost_leases = lost_leases + ($3::text IS NOT NULL)::int, last_error = coalesce($3, last_error)"
        " WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        _uuid(run_id),
        worker_id,
        error,
    )
    return result == "UPDATE 1"


# --- turns and terminal states (fenced by the lease) -------------------------------------------------
async def record_turn(db: Executor, run_id: RunId, *, worker_id: str, turn: TurnCommit) -> None:
    """The run's totals after `turn`; call it in the turn's transaction, before its messages and steps."""
    updated = await db.execute(
        """
        UPDATE runs SET usage = $3, requests = $4, tool_calls = $5, input_tokens = $6,
               output_tokens = $7, cost_usd = $8, cost_known = $9, elapsed_seconds = $10,
               message_count = $11, plan = coalesce($12, plan), review = coalesce($13, review),
               updated_at = now()
        WHERE id = $1 AND lease_owner = $2
        """,
        _uuid(run_id),
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
        raise _lease_lost(run_id, worker_id)


async def finish(
    db: Executor,
    run_id: RunId,
    *,
    worker_id: str,
    status: RunStatus,
    stop_reason: StopReason | None,
    report: dict[str, JSONValue] | None,
    partial: dict[str, JSONValue] | None,
    error: str | None,
    elapsed_seconds: float | None,
    review: dict[str, JSONValue] | None,
) -> RunRecord:
    """Set the run's final (or parked) state and release the lease."""
    row = await db.fetchrow(
        """
        UPDATE runs SET status = $2, stop_reason = $3, report = $4, error = $5, partial = $6,
               elapsed_seconds = greatest(elapsed_seconds, coalesce($7, 0)),
               review = coalesce($9, review),
               finished_at = CASE WHEN $2 IN ('queued', 'running', 'awaiting_approval') THEN NULL ELSE now() END,
               lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
        WHERE id = $1 AND lease_owner = $8 RETURNING *
        """,
        _uuid(run_id),
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
        raise _lease_lost(run_id, worker_id)
    return run_from_row(row)


async def park_for_approval(db: Executor, run_id: RunId, *, worker_id: str, elapsed_seconds: float | None) -> None:
    """Set the run `awaiting_approval` (`approval_required`) and release the lease."""
    row = await db.fetchrow(
        """
        UPDATE runs SET status = 'awaiting_approval', stop_reason = 'approval_required',
               elapsed_seconds = greatest(elapsed_seconds, coalesce($3, 0)),
               lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
        WHERE id = $1 AND lease_owner = $2 RETURNING id
        """,
        _uuid(run_id),
        worker_id,
        elapsed_seconds,
    )
    if row is None:
        raise _lease_lost(run_id, worker_id)


# --- back to the queue ---------------------------------------------------------------------------------
_RESUMABLE = "('failed', 'killed', 'budget_exceeded', 'cancelled')"
"""Stopped runs `runs resume` queues again (`cancelled`: interrupted with Ctrl-C or `Runtime.interrupt`)."""


async def requeue_stopped(db: Executor, run_id: str) -> RunRecord:
    """Make a stopped (failed, killed, budget_exceeded, cancelled) run claimable again, keeping its history."""
    row = await db.fetchrow(
        f"UPDATE runs SET {_REQUEUE} WHERE id = $1 AND status IN {_RESUMABLE} RETURNING *",
        _uuid(run_id),
    )
    if row is None:
        raise await _not_resumable(db, run_id)
    return run_from_row(row)


async def requeue_with_budget(
    db: Executor, run_id: str, *, budget: dict[str, JSONValue]
) -> tuple[RunRecord, dict[str, JSONValue]]:
    """`requeue_stopped` with new caps: the run's frozen `config.budget` becomes `budget` in the statement that
    queues it, so no worker can claim it under the old caps. Returns the run and its budget as it was."""
    row = await db.fetchrow(
        f"""
        UPDATE runs SET {_REQUEUE}, config = jsonb_set(runs.config, '{{budget}}', $2::jsonb)
        FROM (SELECT id, config -> 'budget' AS budget FROM runs WHERE id = $1 FOR UPDATE) AS prior
        WHERE runs.id = prior.id AND runs.status IN {_RESUMABLE}
        RETURNING runs.*, prior.budget AS budget_before
        """,
        _uuid(run_id),
        budget,
    )
    if row is None:
        raise await _not_resumable(db, run_id)
    return run_from_row(row), row["budget_before"]


async def _not_resumable(db: Executor, run_id: str) -> RunNotFoundError:
    current = await get(db, run_id)
    hint = "; decide its requests with `research-agent approvals`" if current.status == "awaiting_approval" else ""
    return RunNotFoundError(f"run {run_id} is {current.status}; only stopped runs can be resumed{hint}")


async def requeue_killed(db: Executor, *, stop_reason: StopReason) -> list[str]:
    """Queue again every run `killed` with `stop_reason` (the kill switch turned off); ids of those queued."""
    rows = await db.fetch(
        f"UPDATE runs SET {_REQUEUE} WHERE status = 'killed' AND stop_reason = $1 RETURNING id", stop_reason
    )
    return [str(r["id"]) for r in rows]


async def requeue_if_decided(db: Executor, run_id: RunId) -> bool:
    """Queue a run `awaiting_approval` again once none of its approval requests is pending."""
    result = await db.execute(
        """
        UPDATE runs SET status = 'queued', stop_reason = NULL, lost_leases = 0, last_error = NULL,
               updated_at = now()
        WHERE id = $1 AND status = 'awaiting_approval'
          AND NOT EXISTS (SELECT 1 FROM approvals WHERE run_id = $1 AND status = 'pending')
        """,
        _uuid(run_id),
    )
    return result == "UPDATE 1"


async def fetch(db: Executor, run_id: RunId) -> RunRecord:
    """The run by its exact id (`get` also resolves prefixes)."""
    return run_from_row(await db.fetchrow("SELECT * FROM runs WHERE id = $1", _uuid(run_id)))


def run_from_row(row: asyncpg.Record | None) -> RunRecord:
    assert row is not None
    return RunRecord(
        id=str(row["id"]),
        question=row["question"],
        status=cast(RunStatus, row["status"]),
        stop_reason=cast(StopReason | None, row["stop_reason"]),
        error=row["error"],
        config=RunConfig.model_validate(row["config"]),
        plan=row["plan"],
        report=row["report"],
        partial=row["partial"],
        review=row["review"],
        usage_json=stored_usage(row["usage"]),
        cost_usd=plain_money(row["cost_usd"]),
        cost_known=row["cost_known"],
        elapsed_seconds=row["elapsed_seconds"],
        message_count=row["message_count"],
        attempts=row["attempts"],
        lease_owner=row["lease_owner"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        last_error=row["last_error"],
    )


def _uuid(run_id: RunId) -> uuid.UUID:
    return run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(run_id)


# --- the fence other tables' writes use ------------------------------------------------------------------
def lease_held(*, run: str, worker: str) -> str:
    """A `WHERE` condition for a write made on behalf of a run: true when the worker parameter is NULL (not a
    worker's write, e.g. a person deciding an approval) or that worker holds the run's lease. `FOR SHARE`
    makes a concurrent claim wait for the write, or the write see the claim: never both."""
    return (
        f"({worker}::text IS NULL OR EXISTS (SELECT 1 FROM runs WHERE id = {run}::uuid"
        f" AND lease_owner = {worker}::text AND status = 'running' FOR SHARE))"
    )


async def ensure_lease(db: Executor, run_id: RunId, worker_id: str | None) -> None:
    """After a fenced write changed nothing: `LeaseLostError` if the reason is that the lease is gone."""
    if worker_id is None:
        return
    row = await db.fetchrow("SELECT lease_owner, status FROM runs WHERE id = $1", _uuid(run_id))
    if row is None or row["lease_owner"] != worker_id or row["status"] != "running":
        raise _lease_lost(run_id, worker_id)


def _lease_lost(run_id: RunId, worker_id: str) -> LeaseLostError:
    return LeaseLostError(f"run {run_id} is no longer leased to {worker_id!r}")
