"""`research-agent stats` / `agent.stats` (issue 15, point 1): every figure equals what the rows say.

The runs are real: scripted research runs (answered from the network, answered from the page cache, not
answered, stopped at the turn cap, parked for approval, queued), one moved three days back with all its rows
so the 24-hour window leaves it out and the 7-day one takes it in. Each figure `fleet_stats` computes in SQL
is recomputed here in Python from the same rows (`expected_group`), in total and per `--by` group. Then the
synthetic load of bench/stats_scale.py (every status, unpriced models, decided approvals) is checked the same
way, and EXPLAIN shows each query reading its window through an index. The CLI: text, JSON, and one-line
errors for bad `--since` / `--by`, and it does not load the agent stack.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from types import ModuleType
from typing import Any, get_args

import asyncpg
import pytest

import agent
from agent.api import Runtime
from agent.cli.stats import BY_CHOICES
from agent.durable.store import FINISHED_STATUSES, STATS_BY, RunStats, StatsBy, fleet_stats, stats_queries
from agent.money import plain_money
from agent.settings import Settings
from budgets import Budget
from tests._cli import run_cli
from tests._http_server import LocalHTTPServer
from tests._processes import ROOT, worker_env
from tests._web import install_web
from tests.scripted import research_model, unanswered_model
from tests.test_cli_startup import AGENT_STACK, COMMANDS_PROBE, _python
from tools import ToolPolicyOverrides

QUESTION = "What changed in HTTP/3 compared to HTTP/2?"
NEEDS_APPROVAL = ToolPolicyOverrides(tools={"fetch_url": "require_approval"})
DAY = timedelta(hours=24)
DECISIONS = ("approved", "rejected", "expired", "pending")
WEEK = timedelta(days=7)


# --- the same figures, by hand ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """Every row `stats` reads, as the database holds them."""

    runs: list[asyncpg.Record]
    steps: list[asyncpg.Record]
    approvals: list[asyncpg.Record]
    effects: list[asyncpg.Record]


async def read_rows(pool: asyncpg.Pool) -> Rows:
    return Rows(
        runs=await pool.fetch("SELECT * FROM runs"),
        steps=await pool.fetch("SELECT * FROM run_steps"),
        approvals=await pool.fetch("SELECT * FROM approvals"),
        effects=await pool.fetch("SELECT * FROM tool_effects"),
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """`percentile_cont`: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def three(values: Sequence[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "p99": percentile(values, 0.99)}


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def expected_group(rows: Rows, *, start: datetime, key: str | None, by: StatsBy | None) -> dict[str, Any]:
    """What `GroupStats` should hold for the runs created since `start` (and, with `key`, whose `by` is it)."""
    runs = [r for r in rows.runs if r["created_at"] >= start and (key is None or by is None or r[by] == key)]
    ids = {r["id"] for r in runs}
    finished = [r for r in runs if r["status"] in FINISHED_STATUSES]
    reports = [r["report"] for r in runs if r["report"] is not None]
    answered = sum(bool(report.get("answered", True)) for report in reports)
    steps = [s for s in rows.steps if s["run_id"] in ids]
    model_steps = [s for s in steps if s["kind"] == "model"]
    tool_steps = [s for s in steps if s["kind"] == "tool" and s["name"] != "final_result"]  # the report: not a tool
    tools = []
    for name in sorted({s["name"] for s in tool_steps}):
        calls = [s for s in tool_steps if s["name"] == name]
        errors = sum(not s["ok"] for s in calls)
        tools.append(
            {
                "tool": name,
                "calls": len(calls),
                "errors": errors,
                "error_rate": rate(errors, len(calls)),
                "latency_ms": three([s["latency_ms"] for s in calls if s["latency_ms"] is not None]),
            }
        )
    tools.sort(key=lambda t: (-t["calls"], t["tool"]))
    approvals = [a for a in rows.approvals if a["run_id"] in ids]
    origins = [e["origin"] for e in rows.effects if e["run_id"] in ids and e["origin"] is not None]
    web = sum(o in ("cache", "network") for o in origins)
    hits = origins.count("cache")
    costs = [r["cost_usd"] for r in finished]
    statuses: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for r in runs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        if r["stop_reason"] is not None:
            reasons[r["stop_reason"]] = reasons.get(r["stop_reason"], 0) + 1
    completed = statuses.get("completed", 0)
    asked = len({a["run_id"] for a in approvals})
    return {
        "key": key,
        "runs": len(runs),
        "statuses": statuses,
        "finished": len(finished),
        "completed": completed,
        "completion_rate": rate(completed, len(finished)),
        "stop_reasons": reasons,
        "answered": answered,
        "not_answered": len(reports) - answered,
        "duration_seconds": three([r["elapsed_seconds"] for r in finished]),
        "turnaround_seconds": three([(r["finished_at"] - r["created_at"]).total_seconds() for r in finished]),
        "model_requests": len(model_steps),
        "model_latency_ms": three([s["latency_ms"] for s in model_steps if s["latency_ms"] is not None]),
        "turns_avg": sum(r["requests"] for r in finished) / len(finished) if finished else None,
        "turns_p95": percentile([r["requests"] for r in finished], 0.95),
        "tokens_per_run": (
            sum(r["input_tokens"] + r["output_tokens"] for r in finished) / len(finished) if finished else None
        ),
        "input_tokens": sum(r["input_tokens"] for r in runs),
        "output_tokens": sum(r["output_tokens"] for r in runs),
        "cost_per_run_usd": (
            plain_money((sum(costs, Decimal(0)) / len(costs)).quantize(Decimal("1e-8"), ROUND_HALF_UP))
            if costs
            else None
        ),
        "total_cost_usd": plain_money(sum((r["cost_usd"] for r in runs), Decimal(0))),
        "cost_unknown_runs": sum(not r["cost_known"] for r in runs),
        "tool_calls": len(tool_steps),
        "tool_errors": sum(not s["ok"] for s in tool_steps),
        "tool_error_rate": rate(sum(not s["ok"] for s in tool_steps), len(tool_steps)),
        "tools": tools,
        "approvals": {
            "runs": asked,
            "rate": rate(asked, len(runs)),
            "requested": len(approvals),
            **{decision: sum(a["status"] == decision for a in approvals) for decision in DECISIONS},
        },
        "page_cache": {"fetches": web, "hits": hits, "hit_rate": rate(hits, web), "corpus": origins.count("corpus")},
    }


def assert_close(actual: Any, expected: Any, path: str = "") -> None:
    """Equal, floats within rounding (SQL sums in numeric, Python in binary floating point)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (path, actual, expected)
        for name in expected:
            assert_close(actual[name], expected[name], f"{path}.{name}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (path, actual, expected)
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, float) and math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9), (
            path,
            actual,
            expected,
        )
    else:
        assert actual == expected and type(actual) is type(expected), (path, actual, expected)


def check_stats(result: RunStats, rows: Rows) -> None:
    """Every figure of the total and of each group equals its recomputation from `rows`."""
    start, by = result.window_start, result.by
    assert_close(result.total.model_dump(), expected_group(rows, start=start, key=None, by=by), "total")
    in_window = [r for r in rows.runs if r["created_at"] >= start]
    keys = sorted({r[by] for r in in_window}) if by else []
    assert sorted(g.key for g in result.groups if g.key is not None) == keys
    for group in result.groups:
        assert_close(group.model_dump(), expected_group(rows, start=start, key=group.key, by=by), f"group {group.key}")
    assert [g.runs for g in result.groups] == sorted((g.runs for g in result.groups), reverse=True)


# --- a fleet of real runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    network: str
    """Answered from two pages fetched from the network, three days ago."""
    cached: str
    """Answered from the same two pages, served by the page cache."""
    unanswered: str
    capped: str
    parked: str
    queued: str


async def _age(pool: asyncpg.Pool, run_id: str, by: timedelta) -> None:
    """Move a run and every row it wrote `by` into the past, as if it had run then."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE runs SET created_at = created_at - $2::interval, started_at = started_at - $2::interval,"
            " finished_at = finished_at - $2::interval, updated_at = updated_at - $2::interval WHERE id = $1::uuid",
            run_id,
            by,
        )
        await conn.execute(
            "UPDATE run_steps SET created_at = created_at - $2::interval WHERE run_id = $1::uuid", run_id, by
        )
        await conn.execute(
            "UPDATE tool_effects SET created_at = created_at - $2::interval WHERE run_id = $1::uuid", run_id, by
        )
        await conn.execute(
            "UPDATE approvals SET requested_at = requested_at - $2::interval WHERE run_id = $1::uuid", run_id, by
        )


@pytest.fixture
async def fleet(runtime: Runtime, settings: Settings, http_server: LocalHTTPServer) -> Fleet:
    install_web(http_server)
    network = await runtime.research(QUESTION, model=research_model(max_fetches=2)[0])
    cached = await runtime.research(QUESTION, model=research_model(max_fetches=2)[0])
    unanswered = await runtime.research("Is QUIC faster than TCP on lossy links?", model=unanswered_model())
    capped = await runtime.research(QUESTION, model=research_model(max_fetches=2)[0], budget=Budget(max_turns=2))
    approving = Runtime(pool=runtime.pool, settings=settings.model_copy(update={"tool_policy": NEEDS_APPROVAL}))
    parked = await approving.research(QUESTION, model="factory:tests.scripted:crash_model")
    queued = await runtime.submit(QUESTION, model="test")
    assert (network.status, cached.status, unanswered.status) == ("completed", "completed", "completed")
    assert (capped.status, capped.stop_reason) == ("budget_exceeded", "turns")
    assert parked.status == "awaiting_approval"
    await _age(runtime.pool, network.run_id, timedelta(days=3))
    return Fleet(network.run_id, cached.run_id, unanswered.run_id, capped.run_id, parked.run_id, queued.id)


async def test_every_figure_equals_what_the_rows_say(runtime: Runtime, fleet: Fleet) -> None:
    rows = await read_rows(runtime.pool)
    origins = sorted((str(e["run_id"]), e["origin"]) for e in rows.effects if e["tool_name"] == "fetch_url")
    expected = [(fleet.network, "network")] * 2 + [(fleet.cached, "cache")] * 2 + [(fleet.unanswered, "cache")]
    assert origins == sorted(expected)  # the ledger records where each page came from

    day = await fleet_stats(runtime.pool, since=DAY)
    check_stats(day, rows)
    total = day.total
    assert total.runs == 5 and day.groups == []
    assert total.statuses == {"completed": 2, "budget_exceeded": 1, "awaiting_approval": 1, "queued": 1}
    assert total.finished == 3 and total.completion_rate == pytest.approx(2 / 3)
    assert (total.answered, total.not_answered) == (1, 1)
    assert total.stop_reasons == {"completed": 2, "turns": 1, "approval_required": 1}
    assert total.page_cache.model_dump() == {"fetches": 3, "hits": 3, "hit_rate": 1.0, "corpus": 0}
    assert total.approvals.runs == 1 and total.approvals.pending == 1 and total.approvals.rate == pytest.approx(0.2)
    assert {s["name"] for s in rows.steps if s["kind"] == "tool"} == {"web_search", "fetch_url", "final_result"}
    assert [(t.tool, t.calls) for t in total.tools] == [("web_search", 4), ("fetch_url", 3)]
    assert total.model_requests > 0 and total.model_latency_ms.p50 is not None
    assert total.duration_seconds.p99 is not None and total.total_cost_usd > 0

    week = await fleet_stats(runtime.pool, since=WEEK)  # the three-day-old run is back in
    check_stats(week, rows)
    assert week.total.runs == 6 and week.total.answered == 2
    assert week.total.page_cache.model_dump() == {"fetches": 5, "hits": 3, "hit_rate": 0.6, "corpus": 0}

    for by in STATS_BY:
        for since in (DAY, WEEK):
            grouped = await fleet_stats(runtime.pool, since=since, by=by)
            assert grouped.by == by
            check_stats(grouped, rows)
    by_status = await fleet_stats(runtime.pool, since=DAY, by="status")
    assert {g.key: g.runs for g in by_status.groups} == total.statuses
    by_model = await fleet_stats(runtime.pool, since=DAY, by="model")
    assert len(by_model.groups) >= 2 and sum(g.runs for g in by_model.groups) == total.runs


async def test_the_python_api_and_the_runtime_give_the_same_figures(
    runtime: Runtime, settings: Settings, fleet: Fleet
) -> None:
    direct = await fleet_stats(runtime.pool, since=DAY, by="model")
    for result in (await agent.stats("24h", by="model", settings=settings), await runtime.stats(DAY, by="model")):
        assert isinstance(result, agent.RunStats)
        assert result.model_dump(exclude={"window_start", "window_end"}) == direct.model_dump(
            exclude={"window_start", "window_end"}
        )
    with pytest.raises(ValueError, match="not an age"):
        await runtime.stats("yesterday")
    with pytest.raises(ValueError, match="cannot group by"):
        await fleet_stats(runtime.pool, since=DAY, by="question")  # type: ignore[arg-type]


async def test_an_empty_window_has_zeros_and_no_rates(runtime: Runtime, settings: Settings) -> None:
    result = await fleet_stats(runtime.pool, since=timedelta(minutes=30), by="model")
    assert result.groups == [] and result.total.runs == 0 and result.total.completion_rate is None
    assert result.total.duration_seconds.p50 is None and result.total.total_cost_usd == 0
    assert json.loads(result.model_dump_json())["total"]["total_cost_usd"] == "0"
    empty = run_cli(worker_env(settings), "stats", "--since", "30m")
    assert empty.returncode == 0 and empty.stdout.startswith("0 runs created in the last 30m (since ")


# --- the command line ------------------------------------------------------------------------------------


async def test_the_command_prints_tables_and_json(settings: Settings, fleet: Fleet) -> None:
    env = worker_env(settings, COLUMNS="250")
    shown = run_cli(env, "stats")
    assert shown.returncode == 0, shown.stderr
    for expected in ("5 runs created in the last 24h", "completion rate", "66.7%", "page cache hit rate"):
        assert expected in shown.stdout, shown.stdout
    for expected in ("100.0% (3/3)", "Stop reasons", "approval_required", "Tools", "fetch_url", "web_search"):
        assert expected in shown.stdout, shown.stdout

    grouped = run_cli(env, "stats", "--since", "7d", "--by", "status", "--json")
    assert grouped.returncode == 0, grouped.stderr
    data = json.loads(grouped.stdout)
    assert set(data) == {"since_seconds", "window_start", "window_end", "by", "total", "groups", "providers"}
    assert data["by"] == "status" and data["since_seconds"] == 7 * 86400 and data["total"]["runs"] == 6
    assert {g["key"]: g["runs"] for g in data["groups"]} == data["total"]["statuses"]
    assert isinstance(data["total"]["total_cost_usd"], str) and Decimal(data["total"]["total_cost_usd"]) > 0
    assert set(data["total"]["duration_seconds"]) == {"p50", "p95", "p99"}
    assert RunStats.model_validate(data).total.runs == 6  # the JSON reads back as the model

    by_model = run_cli(env, "stats", "--by", "model")
    assert by_model.returncode == 0 and "by model" in by_model.stdout and "all runs" in by_model.stdout


async def test_the_circuit_breakers_state_is_shown(runtime: Runtime, settings: Settings) -> None:
    # One provider's breaker open (as agent.durable.providers leaves it after 5 failures), one closed but busy.
    await runtime.pool.execute(
        "INSERT INTO provider_health (key, state, consecutive_failures, opened_at, last_error, last_failure_at)"
        " VALUES ('openai:broken', 'open', 5, now(), 'HTTP 503 from the provider', now())"
    )
    await runtime.pool.execute(
        "INSERT INTO provider_rate_usage (key, window_start, requests, tokens)"
        " VALUES ('openai:busy', to_timestamp(floor(extract(epoch FROM now()) / 60) * 60), 7, 1234)"
    )
    result = await runtime.stats("24h")
    by_key = {p.key: p for p in result.providers}
    assert set(by_key) == {"openai:broken", "openai:busy"}
    broken, busy = by_key["openai:broken"], by_key["openai:busy"]
    assert broken.state == "open" and broken.consecutive_failures == 5 and broken.last_error
    assert broken.open_seconds_left is not None and 0 < broken.open_seconds_left <= settings.breaker_open_seconds
    assert busy.state == "closed" and (busy.window_requests, busy.window_tokens) == (7, 1234)

    shown = run_cli(worker_env(settings, COLUMNS="250"), "stats")
    assert shown.returncode == 0, shown.stderr
    flat = re.sub(r"[│\s]+", " ", shown.stdout)  # the table as words: a cell may wrap on a narrow terminal
    assert "Providers (circuit breaker, now)" in flat and "openai:broken open 5" in flat
    assert "last error: openai:broken: HTTP 503 from the provider" in flat and "openai:busy closed 0" in flat
    assert "7 / 1,234" in flat


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday"), "--since: 'yesterday' is not an age"),
        (("--since", "0h"), "must be more than zero"),
        (("--since", "24"), "is not an age"),
        (("--by", "question"), "--by 'question': expected one of model, prompt_version, status"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(settings: Settings, args: tuple[str, ...], message: str) -> None:
    result = run_cli(worker_env(settings), "stats", *args)
    assert result.returncode == 2, result
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


async def test_the_command_does_not_load_the_agent_stack(settings: Settings, fleet: Fleet) -> None:
    commands = [["stats"], ["stats", "--by", "model", "--json"]]
    probe = _python(COMMANDS_PROBE, json.dumps(commands), env=worker_env(settings, COLUMNS="200"))
    assert probe.returncode == 0 and "Traceback" not in probe.stderr, probe.stderr
    for result in json.loads(probe.stdout):
        assert result["exit"] == 0 and [m for m in AGENT_STACK if m in result["modules"]] == [], result["args"]
    assert json.loads(json.loads(probe.stdout)[1]["stdout"])["total"]["runs"] == 5


def test_by_choices_are_the_stores() -> None:
    assert BY_CHOICES == STATS_BY == get_args(StatsBy)


# --- at scale: the synthetic load of the benchmark, and the plans ------------------------------------------


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stats_scale", ROOT / "bench" / "stats_scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("stats_scale", module)
    spec.loader.exec_module(module)
    return module


INDEXES = {
    "runs": ["runs_created_idx"],
    "outcomes": ["runs_created_idx"],
    "steps": ["run_steps_stats_idx", "runs_created_idx"],
    "approvals": ["approvals_requested_idx"],
    "fetches": ["tool_effects_fetch_idx", "runs_created_idx"],
}
"""The indexes each query reads its window through (0001_runs.sql, 0012_stats_indexes.sql)."""
SMALL = {"approvals"}
"""A few thousand runs ask for about a hundred approvals: a few pages the planner rightly reads whole. For
those tables the test checks the index matches the query (the plan with sequential scans ruled out)."""


async def test_the_synthetic_load_checks_out_and_every_query_reads_its_window_through_an_index(
    runtime: Runtime,
) -> None:
    pool = runtime.pool
    counts = await _bench().load_synthetic(pool, runs=3_000, days=30)
    assert counts["runs"] == 3_000 and counts["run_steps"] > 20_000 and counts["approvals"] > 0
    await pool.execute("VACUUM ANALYZE")
    rows = await read_rows(pool)
    for by in (None, *STATS_BY):
        result = await fleet_stats(pool, since=DAY, by=by)
        check_stats(result, rows)
    day = await fleet_stats(pool, since=DAY)
    assert 80 <= day.total.runs <= 120  # a thirtieth of the runs
    assert len(day.total.statuses) >= 4 and day.total.page_cache.fetches > 0 and day.total.tool_errors > 0

    start = await pool.fetchval("SELECT now() - $1::interval", DAY)
    for by in (None, "model"):
        for name, sql in stats_queries(by).items():
            args: list[object] = [start, list(FINISHED_STATUSES)] if name == "runs" else [start]
            async with pool.acquire() as conn, conn.transaction():
                if name in SMALL:
                    await conn.execute("SET LOCAL enable_seqscan = off")
                plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args))
            for index in INDEXES[name]:
                assert index in plan, f"{name} (by {by}) does not use {index}:\n{plan}"
            for table in ("runs", "run_steps", "approvals", "tool_effects"):
                assert f"Seq Scan on {table}" not in plan, f"{name} (by {by}) scans all of {table}:\n{plan}"
