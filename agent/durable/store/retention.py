"""Retention: deleting what is no longer needed, and never what is the record.

- `purge_runs` deletes finished runs (completed, failed, budget_exceeded, killed, cancelled) that ended
  before a cutoff, with every per-run row: messages, steps, sources, the tool-effect ledger, approvals and
  any daily-spend hold a crashed execution left behind. Queued, running and awaiting_approval runs are
  never touched. The runs' `tool_audit` rows are kept (counted in `audit_kept`): the audit is append-only
  and has no foreign key to `runs` (0004_audit.sql, 0009_retention.sql), so it outlives them.
  `research-agent runs purge` (agent/cli/runs.py) is the command.
- `PageCacheSweeper` runs `pages.purge_expired_pages` in each worker every few minutes.

The one module besides `runs` with SQL on the `runs` table: its only statements there select and delete
the runs being purged.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import asyncpg

from agent.durable.background import repeating
from agent.durable.store.pages import purge_expired_pages
from agent.durable.store.records import Executor

if TYPE_CHECKING:
    import uuid

    from agent.config import RunStatus

__all__ = [
    "FINISHED_STATUSES",
    "PAGE_SWEEP_SECONDS",
    "PageCacheSweeper",
    "PurgeCounts",
    "count_purgeable",
    "parse_age",
    "purge_cutoff",
    "purge_runs",
]

FINISHED_STATUSES: Final[tuple[RunStatus, ...]] = ("completed", "failed", "budget_exceeded", "killed", "cancelled")
"""The statuses a run can be purged in: it ended (and may only come back by `runs resume`)."""

PAGE_SWEEP_SECONDS: Final = 600.0
"""How often a worker deletes expired `page_cache` rows (the first sweep is when it starts)."""

_PER_RUN_TABLES: Final = ("run_messages", "run_steps", "run_sources", "tool_effects", "approvals", "run_events")
"""Every table keyed by `run_id` that goes with its run (all reference `runs` ON DELETE CASCADE)."""


_RELEASE_HOLDS: Final = """
    WITH hold AS (DELETE FROM daily_spend_holds WHERE holder = ANY($1::text[]) RETURNING day, amount),
    per_day AS (SELECT day, sum(amount) AS amount FROM hold GROUP BY day),
    updated AS (
        UPDATE daily_spend AS d SET reserved_usd = greatest(d.reserved_usd - per_day.amount, 0), updated_at = now()
        FROM per_day WHERE d.day = per_day.day
    )
    SELECT count(*) FROM hold
"""
"""As `budgets.DailySpend.release_holds`, for many runs: a hold is deleted with what it reserved."""


@dataclass(frozen=True, kw_only=True)
class PurgeCounts:
    """Rows deleted by a purge, by table (for `count_purgeable`, rows it would delete), and the audit rows kept."""

    runs: int = 0
    run_messages: int = 0
    run_steps: int = 0
    run_sources: int = 0
    tool_effects: int = 0
    approvals: int = 0
    run_events: int = 0
    daily_spend_holds: int = 0
    audit_kept: int = 0
    """The purged runs' `tool_audit` rows, which stay."""

    def __add__(self, other: PurgeCounts) -> PurgeCounts:
        return PurgeCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})

    def deleted(self) -> dict[str, int]:
        """Rows deleted, by table name (`audit_kept` is not among them)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "audit_kept"}


_AGE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w` as a `timedelta`; a `ValueError` that says what is expected otherwise."""
    match = _AGE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not an age: give a whole number and a unit, s, m, h, d or w (e.g. 30d, 12h, 2w)")
    amount, unit = int(match.group(1)), match.group(2)
    try:
        age = timedelta(**{_UNITS[unit]: amount})
    except OverflowError:
        raise ValueError(f"{text!r} is too long an age") from None
    if age <= timedelta(0):
        raise ValueError(f"{text!r} is not an age: it must be more than zero")
    return age


async def purge_cutoff(db: Executor, older_than: timedelta) -> datetime:
    """The database's `now() - older_than`: a run that ended before it is old enough to purge."""
    cutoff: datetime = await db.fetchval("SELECT now() - $1::interval", older_than)
    return cutoff


async def count_purgeable(
    db: Executor, *, finished_before: datetime, statuses: Sequence[RunStatus] = FINISHED_STATUSES
) -> PurgeCounts:
    """What `purge_runs` with these arguments would delete now (a dry run): nothing is deleted or locked."""
    ids = await _candidates(db, finished_before=finished_before, statuses=statuses)
    counts = {
        table: await _count(db, f"SELECT count(*) FROM {table} WHERE run_id = ANY($1::uuid[])", ids)
        for table in _PER_RUN_TABLES
    }
    return PurgeCounts(
        runs=len(ids),
        **counts,
        daily_spend_holds=await _count(
            db, "SELECT count(*) FROM daily_spend_holds WHERE holder = ANY($1::text[])", [str(i) for i in ids]
        ),
        audit_kept=await _count(db, "SELECT count(*) FROM tool_audit WHERE run_id = ANY($1::uuid[])", ids),
    )


async def purge_runs(
    pool: asyncpg.Pool,
    *,
    finished_before: datetime,
    statuses: Sequence[RunStatus] = FINISHED_STATUSES,
    batch_size: int = 500,
) -> PurgeCounts:
    """Delete the runs in `statuses` (finished ones only) that ended before `finished_before`, with their rows.

    `batch_size` runs per transaction; each batch locks its runs and checks them again first, so a run
    resumed meanwhile (queued again) is left alone. Returns what was deleted; `tool_audit` is never touched.
    """
    ids = await _candidates(pool, finished_before=finished_before, statuses=statuses)
    total = PurgeCounts()
    for start in range(0, len(ids), batch_size):
        async with pool.acquire() as conn, conn.transaction():
            locked = await conn.fetch(
                f"SELECT id FROM runs WHERE id = ANY($1::uuid[]) AND {_purgeable('$2', '$3')} ORDER BY id FOR UPDATE",
                ids[start : start + batch_size],
                list(statuses),
                finished_before,
            )
            total += await _delete(conn, [r["id"] for r in locked])
    return total


async def _candidates(db: Executor, *, finished_before: datetime, statuses: Sequence[RunStatus]) -> list[uuid.UUID]:
    unfinished = sorted(set(statuses) - set(FINISHED_STATUSES))
    if unfinished:
        raise ValueError(
            f"runs in status {', '.join(unfinished)} cannot be purged: only finished ones"
            f" ({', '.join(FINISHED_STATUSES)})"
        )
    rows = await db.fetch(
        f"SELECT id FROM runs WHERE {_purgeable('$1', '$2')} ORDER BY id", list(statuses), finished_before
    )
    return [r["id"] for r in rows]


def _purgeable(statuses: str, cutoff: str) -> str:
    """The condition on a run to purge, given the placeholders of the statuses and of the cutoff."""
    return f"status = ANY({statuses}::text[]) AND coalesce(finished_at, updated_at) < {cutoff}"


async def _delete(db: Executor, ids: list[uuid.UUID]) -> PurgeCounts:
    """Delete the runs `ids` (locked by the caller's transaction) and their rows; count the audit kept."""
    if not ids:
        return PurgeCounts()
    counts = {
        table: _affected(await db.execute(f"DELETE FROM {table} WHERE run_id = ANY($1::uuid[])", ids))
        for table in _PER_RUN_TABLES
    }
    holds = await _count(db, _RELEASE_HOLDS, [str(i) for i in ids])
    audit = await _count(db, "SELECT count(*) FROM tool_audit WHERE run_id = ANY($1::uuid[])", ids)
    runs = _affected(await db.execute("DELETE FROM runs WHERE id = ANY($1::uuid[])", ids))
    return PurgeCounts(runs=runs, **counts, daily_spend_holds=holds, audit_kept=audit)


async def _count(db: Executor, sql: str, values: Sequence[object]) -> int:
    return int(await db.fetchval(sql, list(values)))


def _affected(status: str) -> int:
    """The row count of a command status such as `DELETE 12`."""
    return int(status.rsplit(" ", 1)[-1])


class PageCacheSweeper:
    """Deletes expired `page_cache` rows every `every_seconds` while started, the first time at once.

    Each worker runs one; a failed sweep (a database blip) is logged and the next one tries again.
    """

    def __init__(self, pool: asyncpg.Pool, *, every_seconds: float = PAGE_SWEEP_SECONDS) -> None:
        self.pool = pool
        self.every_seconds = every_seconds
        self._background = repeating(
            self._sweep,
            every_seconds=every_seconds,
            name="page-cache sweep",
            failure="could not delete expired cached pages",
        )

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()

    async def _sweep(self) -> None:
        deleted = await purge_expired_pages(self.pool)
        if deleted:
            import logfire  # a worker's process has it already; the store's readers do not need it

            logfire.info("deleted {count} expired cached pages", count=deleted)
