"""Retention (issue 14, point 8): `runs purge` and the workers' page-cache sweep, on real PostgreSQL.

A purge deletes old finished runs with every per-run row (messages, steps, sources, tool effects,
approvals, leftover daily-spend holds) and nothing else: every table of the schema is counted before
and after. The runs' `tool_audit` rows stay, and stay append-only. Queued, running and
awaiting_approval runs are never deleted, however old. A worker deletes expired `page_cache` rows only.
Purges run as the owner and as the application role the app signs in as (`research_agent_app`), which
may delete runs but not audit rows.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from agent.api import Runtime
from agent.config import RunConfig, RunStatus, StopReason
from agent.durable.database import APP_ROLE, create_pool
from agent.durable.store import (
    PurgeCounts,
    count_purgeable,
    insert_audit,
    parse_age,
    purge_cutoff,
    purge_expired_pages,
    purge_runs,
)
from agent.durable.store.pages import PURGE_EXPIRED_PAGES
from agent.durable.worker import Worker
from agent.settings import Settings
from tests._cli import run_cli as cli
from tests._processes import until, worker_env
from tools import FetchedPage

STOP: dict[RunStatus, StopReason | None] = {
    "completed": "completed",
    "failed": "error",
    "budget_exceeded": "turns",
    "killed": "kill_switch",
    "cancelled": "interrupted",
    "queued": None,
    "running": None,
    "awaiting_approval": "approval_required",
}
HOLD = Decimal("0.25")
PER_RUN = {
    "run_messages": 2,
    "run_steps": 2,
    "run_sources": 1,
    "tool_effects": 1,
    "approvals": 1,
    "run_events": 1,  # the terminal event its trigger writes for a run inserted finished (0016_run_events.sql)
    "daily_spend_holds": 1,
    "tool_audit": 2,
}
"""The rows `_seed` gives each run, by table."""


async def _seed(pool: asyncpg.Pool, config: RunConfig, status: RunStatus, *, days_ago: float) -> uuid.UUID:
    """A run that ended (or, unfinished, was last touched) `days_ago`, with rows in every per-run table."""
    run_id = uuid.uuid4()
    at = datetime.now(UTC) - timedelta(days=days_ago)
    finished = status in ("completed", "failed", "budget_exceeded", "killed", "cancelled")
    await pool.execute(
        "INSERT INTO runs (id, question, status, stop_reason, config, model, prompt_version, created_at, updated_at,"
        " started_at, finished_at, lease_owner, lease_expires_at)"
        " VALUES ($1, $2, $3, $4, $5, 'test', 'test', $6, $6, $6, $7, $8, $9)",
        run_id,
        f"{status} {days_ago} days ago",
        status,
        STOP[status],
        config.model_dump(mode="json"),
        at,
        at if finished else None,
        "dead-worker" if status == "running" else None,
        at if status == "running" else None,  # an expired lease
    )
    for seq, kind in enumerate(("request", "response")):
        await pool.execute(
            "INSERT INTO run_messages (run_id, seq, kind, message) VALUES ($1, $2, $3, '{}')", run_id, seq, kind
        )
        await pool.execute(
            "INSERT INTO run_steps (run_id, seq, kind, name) VALUES ($1, $2, $3, 'step')",
            run_id,
            seq,
            ("plan", "tool")[seq],
        )
    await pool.execute(
        "INSERT INTO tool_effects (run_id, tool_call_id, tool_name, args, result, latency_ms)"
        " VALUES ($1, 'call-1', 'fetch_url', '{}', '{}', 1.0)",
        run_id,
    )
    await pool.execute(
        "INSERT INTO run_sources (run_id, url, final_url, text, fetched_at) VALUES ($1, 'https://x.test/', "
        "'https://x.test/', 'page text', $2)",
        run_id,
        at,
    )
    await pool.execute(
        "INSERT INTO approvals (id, run_id, tool_call_id, tool, reason, status, expires_at)"
        " VALUES ($1, $2, 'call-1', 'fetch_url', 'policy', $3, $4)",
        f"ap_{run_id.hex[:10]}",
        run_id,
        "pending" if status == "awaiting_approval" else "approved",
        at + timedelta(hours=1),
    )
    for decision in ("require_approval", "approved"):
        await insert_audit(pool, str(run_id), tool="fetch_url", args={}, decision=decision, reason="policy")
    # A hold left by an execution that died mid-request, reserved against the day it ended.
    await pool.execute(
        "WITH d AS (INSERT INTO daily_spend AS d (day, reserved_usd) VALUES ($3, $2)"
        " ON CONFLICT (day) DO UPDATE SET reserved_usd = d.reserved_usd + EXCLUDED.reserved_usd)"
        " INSERT INTO daily_spend_holds (token, holder, day, amount) VALUES ($1, $4, $3, $2)",
        uuid.uuid4(),
        HOLD,
        at.date(),
        str(run_id),
    )
    return run_id


async def _table_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Rows in every table of the schema (migrations' bookkeeping included)."""
    tables = [r["tablename"] for r in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert {"runs", "tool_audit", "page_cache", *PER_RUN} <= set(tables)
    return {t: await pool.fetchval(f'SELECT count(*) FROM "{t}"') for t in sorted(tables)}


async def _rows_of(pool: asyncpg.Pool, run_ids: list[uuid.UUID]) -> dict[str, int]:
    """Rows of these runs in every table that names a run (`run_id`, or the hold's `holder`)."""
    columns = await pool.fetch(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND (column_name = 'run_id' OR (table_name = 'runs' AND column_name = 'id')"
        " OR (table_name = 'daily_spend_holds' AND column_name = 'holder'))"
    )
    counts = {}
    for c in columns:
        cast = "::text" if c["column_name"] == "holder" else ""
        counts[c["table_name"]] = await pool.fetchval(
            f'SELECT count(*) FROM "{c["table_name"]}" WHERE "{c["column_name"]}" = ANY($1::uuid[]{cast}[])',
            run_ids,
        )
    return counts


@pytest.fixture
def config(settings: Settings) -> RunConfig:
    return RunConfig.from_settings(settings, model="test", prompt_version="test")


ROLES = ["owner", "app_role"]
"""Who purges: the owner that migrates (the test server's superuser), or the role the app signs in as."""


@pytest.mark.parametrize("role", ROLES)
async def test_purge_deletes_old_finished_runs_with_all_their_rows_and_keeps_the_audit(
    runtime: Runtime, config: RunConfig, app_url: str, role: str
) -> None:
    if role == "owner":
        await _purge_and_check(runtime.pool, runtime.pool, config, role=role)
        return
    app = await create_pool(app_url, max_size=2)
    try:
        assert await app.fetchval("SELECT current_user") == APP_ROLE
        await _purge_and_check(runtime.pool, app, config, role=role)
    finally:
        await app.close()


async def _purge_and_check(pool: asyncpg.Pool, purger: asyncpg.Pool, config: RunConfig, *, role: str) -> None:
    """Seed old and recent runs through `pool`, purge through `purger`, and check what went and what stayed."""
    old = [
        await _seed(pool, config, status, days_ago=40)
        for status in ("completed", "failed", "budget_exceeded", "killed", "cancelled")
    ]
    kept = [
        await _seed(pool, config, "completed", days_ago=5),
        await _seed(pool, config, "failed", days_ago=29),
        await _seed(pool, config, "queued", days_ago=40),
        await _seed(pool, config, "running", days_ago=40),  # its worker died long ago: still not finished
        await _seed(pool, config, "awaiting_approval", days_ago=40),
    ]
    old_day = (datetime.now(UTC) - timedelta(days=40)).date()
    reserved_before = await pool.fetchval("SELECT reserved_usd FROM daily_spend WHERE day = $1", old_day)
    assert reserved_before == HOLD * 8  # the five old finished runs and the three old unfinished ones
    before = await _table_counts(pool)
    audit_before = await pool.fetch("SELECT * FROM tool_audit ORDER BY id")

    cutoff = await purge_cutoff(pool, timedelta(days=30))
    expected = PurgeCounts(
        runs=5,
        **{table: 5 * n for table, n in PER_RUN.items() if table != "tool_audit"},
        audit_kept=5 * PER_RUN["tool_audit"],
    )
    assert await count_purgeable(purger, finished_before=cutoff) == expected  # the dry run ...
    assert await _table_counts(pool) == before  # ... deletes nothing

    started = time.perf_counter()
    purged = await purge_runs(purger, finished_before=cutoff, batch_size=2)  # three transactions
    seconds = time.perf_counter() - started
    assert purged == expected

    after = await _table_counts(pool)
    changed = {t: before[t] - after[t] for t in before if before[t] != after[t]}
    assert changed == {"runs": 5, **{t: 5 * n for t, n in PER_RUN.items() if t != "tool_audit"}}
    assert await _rows_of(pool, old) == {t: 0 for t in ("runs", *PER_RUN) if t != "tool_audit"} | {"tool_audit": 10}
    # Of the kept runs only the two finished ones have their terminal event.
    assert await _rows_of(pool, kept) == {"runs": 5, **{t: 5 * n for t, n in PER_RUN.items()}, "run_events": 2}
    assert await pool.fetch("SELECT * FROM tool_audit ORDER BY id") == audit_before  # untouched, every column
    # The holds of the purged runs released what they reserved; the unfinished runs' holds stay.
    assert await pool.fetchval("SELECT reserved_usd FROM daily_spend WHERE day = $1", old_day) == HOLD * 3
    # The audit is as append-only as before: not even a purge's connection can delete it (the owner is stopped by
    # the trigger; the app role has no DELETE on it at all).
    refusal = "append-only" if role == "owner" else "permission denied for table tool_audit"
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=refusal):
        await purger.execute("DELETE FROM tool_audit WHERE run_id = ANY($1::uuid[])", old)
    # Nothing is left to purge; a second purge is a no-op.
    assert await purge_runs(purger, finished_before=cutoff) == PurgeCounts()
    print(f"\npurged 5 of 10 runs as {role} with {sum(expected.deleted().values())} rows in {seconds * 1000:.1f} ms")


async def test_purge_refuses_unfinished_statuses(runtime: Runtime) -> None:
    cutoff = datetime.now(UTC)
    for status in ("running", "queued", "awaiting_approval"):
        with pytest.raises(ValueError, match=f"runs in status {status} cannot be purged: only finished ones"):
            await purge_runs(runtime.pool, finished_before=cutoff, statuses=["completed", status])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("given", "age"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        (" 2W ", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_ages(given: str, age: timedelta) -> None:
    assert parse_age(given) == age


@pytest.mark.parametrize("role", ROLES)
async def test_runs_purge_command(
    settings: Settings, runtime: Runtime, config: RunConfig, app_url: str, role: str
) -> None:
    pool = runtime.pool
    completed = await _seed(pool, config, "completed", days_ago=40)
    failed = await _seed(pool, config, "failed", days_ago=40)
    killed = await _seed(pool, config, "killed", days_ago=40)
    recent = await _seed(pool, config, "completed", days_ago=1)
    running = await _seed(pool, config, "running", days_ago=40)
    env = worker_env(settings)
    if role == "app_role":  # the command signs in as the app does
        env["DATABASE_URL"] = app_url
    before = await _table_counts(pool)

    # Bad ages and statuses: one clear line, exit 2, no traceback, nothing deleted.
    for args, message in (
        (["--older-than", "30x"], "--older-than: '30x' is not an age: give a whole number and a unit"),
        (["--older-than", "30"], "'30' is not an age"),
        (["--older-than", "d"], "'d' is not an age"),
        (["--older-than", "-5d"], "'-5d' is not an age"),
        (["--older-than", "0d"], "'0d' is not an age: it must be more than zero"),
        (["--older-than", "99999999999d"], "too long an age"),
        (["--older-than", "30d", "--status", "running"], "--status running: only finished runs can be purged"),
        (["--older-than", "30d", "--status", "completed,awaiting_approval"], "only finished runs can be purged"),
        (["--older-than", "30d", "--status", "complete"], "unknown --status 'complete'"),
    ):
        refused = cli(env, "runs", "purge", *args, "--yes")
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert message in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    missing = cli(env, "runs", "purge", "--yes")
    assert missing.returncode == 2 and "--older-than" in missing.stderr

    # --dry-run counts and deletes nothing.
    dry = cli(env, "runs", "purge", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would delete 3 runs (completed or failed or budget_exceeded or killed or cancelled)")
    assert "with 6 messages, 6 steps, 3 sources, 3 tool effects, 3 approvals, 3 events, 3 spend holds" in dry.stdout
    assert "their 6 audit rows are kept (dry run: nothing deleted)" in dry.stdout
    dry_json = json.loads(cli(env, "runs", "purge", "--older-than", "30d", "--dry-run", "--json").stdout)
    assert dry_json["dry_run"] is True and dry_json["would_delete"]["runs"] == 3 and dry_json["audit_kept"] == 6
    # No terminal to confirm on and no --yes: refused, nothing deleted.
    unconfirmed = cli(env, "runs", "purge", "--older-than", "30d")
    assert unconfirmed.returncode == 2 and "3 runs would be deleted: pass --yes" in unconfirmed.stderr
    assert await _table_counts(pool) == before

    # Comma-separated and repeated statuses; only those go.
    done = cli(env, "runs", "purge", "--older-than", "30d", "--status", "completed,failed", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["deleted"] == {
        "runs": 2,
        "run_messages": 4,
        "run_steps": 4,
        "run_sources": 2,
        "tool_effects": 2,
        "approvals": 2,
        "run_events": 2,
        "daily_spend_holds": 2,
    }
    assert (report["dry_run"], report["statuses"], report["audit_kept"]) == (False, ["completed", "failed"], 4)
    remaining = {r["id"] for r in await pool.fetch("SELECT id FROM runs")}
    assert remaining == {killed, recent, running}
    assert (await _rows_of(pool, [completed, failed]))["tool_audit"] == 4

    rest = cli(env, "runs", "purge", "--older-than", "30d", "-s", "killed", "-s", "cancelled", "-y")
    assert rest.returncode == 0, rest.stderr
    assert rest.stdout.startswith("deleted 1 run (killed or cancelled) that ended before ")
    assert "with 2 messages, 2 steps, 1 source, 1 tool effect, 1 approval, 1 event, 1 spend hold;" in rest.stdout
    nothing = cli(env, "runs", "purge", "--older-than", "30d", "--yes")
    assert nothing.returncode == 0 and nothing.stdout.startswith("nothing to purge: no runs (")
    assert {r["id"] for r in await pool.fetch("SELECT id FROM runs")} == {recent, running}
    after = await _table_counts(pool)
    assert after["tool_audit"] == before["tool_audit"] == 10


def _page(url: str) -> FetchedPage:
    return FetchedPage(
        url=url,
        final_url=url,
        status_code=200,
        content_type="text/html",
        title="t",
        text="cached text",
        fetched_at=datetime.now(UTC),
    )


async def _cache(runtime: Runtime, *, expired: int, live: int) -> tuple[set[str], set[str]]:
    stale = {f"https://expired.test/{n}" for n in range(expired)}
    fresh = {f"https://live.test/{n}" for n in range(live)}
    for url in stale | fresh:
        await runtime.store.put_page(_page(url), ttl=timedelta(hours=1))
    await runtime.pool.execute(
        "UPDATE page_cache SET expires_at = now() - interval '1 second' WHERE url = ANY($1::text[])", list(stale)
    )
    return stale, fresh


async def test_purge_expired_pages_deletes_expired_rows_only(runtime: Runtime) -> None:
    _, fresh = await _cache(runtime, expired=5, live=3)
    assert await purge_expired_pages(runtime.pool, batch_size=2) == 5  # three batches: 2, 2, 1
    assert {r["url"] for r in await runtime.pool.fetch("SELECT url FROM page_cache")} == fresh
    assert await purge_expired_pages(runtime.pool) == 0
    for url in fresh:
        assert await runtime.store.get_page(url) is not None


async def test_a_worker_sweeps_expired_pages(runtime: Runtime) -> None:
    _, fresh = await _cache(runtime, expired=4, live=2)
    worker = Worker(runtime, concurrency=1)
    task = asyncio.create_task(worker.run())
    try:

        async def cached() -> set[str]:
            return {r["url"] for r in await runtime.pool.fetch("SELECT url FROM page_cache")}

        urls = await until(cached, lambda found: found == fresh, within=10, what="the expired pages to be swept")
        assert urls == fresh
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
    assert task.result() == []  # no run was claimed: the sweep is the worker's own


async def test_the_sweep_reads_the_expires_at_index(runtime: Runtime) -> None:
    await runtime.pool.execute(
        "INSERT INTO page_cache (url, final_url, status_code, content_type, text, fetched_at, expires_at)"
        " SELECT 'https://p.test/' || n, 'https://p.test/' || n, 200, 'text/html', 'x', now(),"
        " now() + make_interval(secs => n) FROM generate_series(1, 5000) AS n"
    )
    await runtime.pool.execute("ANALYZE page_cache")
    plan = "\n".join(r[0] for r in await runtime.pool.fetch(f"EXPLAIN {PURGE_EXPIRED_PAGES}", 1000))
    assert "page_cache_expires_idx" in plan, plan
