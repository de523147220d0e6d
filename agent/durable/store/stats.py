"""Fleet statistics: how the runs created in a window went, every figure aggregated in SQL (issue 15).

`fleet_stats(db, since=timedelta(hours=24), by="model")` is what `research-agent stats` and `agent.stats`
call. The window is the runs created since `now() - since`; each figure comes from the table that records it:

- `runs`: status and stop reason counts; completion rate (completed / finished); answered vs not answered
  (`report->>'answered'`, a stored report without the field was an answer); run duration percentiles (the
  run's own execution time, `elapsed_seconds`, and its turnaround from created to finished); turns
  (`requests`), tokens and cost per finished run; total cost of every run in the window.
- `run_steps`: model latency percentiles (`kind = 'model'`, the latency of each model request) and per tool
  (`kind = 'tool'`, by name) calls, errors (`ok = false`: a failure, a rejected call, a retry) and latency;
  the output tool (`final_result`: the report, which the citation check may send back) is not a tool call.
- `approvals`: the runs that asked a human (the approval rate: of all runs in the window) and the decisions.
- `tool_effects.origin`: where each successful `fetch_url` got its page; the page cache's hit rate is the
  share of web pages (cache or network, not the local corpus) the cache served.

With `by`, every figure is computed per group as well (`GROUPING SETS`): the total and each group in one
pass. The queries read one snapshot (a repeatable-read, read-only transaction) and only the window: runs
by `runs_created_idx`, the other tables by their own timestamp through the indexes of
0012_stats_indexes.sql (a row of a run created at T is written at or after T), hash-joined to the runs.
bench/stats_scale.py times it on a million runs.

The one module besides `runs` and `retention` with SQL on the `runs` table: it only reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Final, Literal, get_args

import asyncpg
from pydantic import BaseModel, Field, PlainSerializer

from agent.durable.store import providers
from agent.durable.store.retention import FINISHED_STATUSES
from agent.money import money_text, plain_money

__all__ = [
    "STATS_BY",
    "ApprovalStats",
    "GroupStats",
    "PageCacheStats",
    "Percentiles",
    "ProviderHealth",
    "RunStats",
    "StatsBy",
    "ToolStats",
    "fleet_stats",
    "stats_queries",
]

StatsBy = Literal["model", "prompt_version", "status"]
"""What `--by` may group on: a column of `runs`."""
STATS_BY: Final[tuple[StatsBy, ...]] = get_args(StatsBy)
_PERCENTILES: Final = "ARRAY[0.5, 0.95, 0.99]"

WORK_MEM: Final = "64MB"
"""Sort memory for the statistics' transaction (the server's default, 4MB, spills a day of steps to disk)."""
OUTPUT_TOOL: Final = "final_result"
"""pydantic-ai's output tool: the report itself (and its citation retries), not a tool call of the run."""

Dollars = Annotated[Decimal, PlainSerializer(money_text, return_type=str, when_used="json")]
"""Exact dollars; in JSON a string in plain notation (`"0.0021"`), as everywhere else the CLI prints JSON."""


class Percentiles(BaseModel):
    """p50, p95 and p99 (`percentile_cont`: interpolated); None when there was nothing to measure."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    @classmethod
    def of(cls, values: Sequence[float] | None) -> Percentiles:
        return cls() if values is None else cls(p50=values[0], p95=values[1], p99=values[2])


class ToolStats(BaseModel):
    """One tool's calls (its steps) and errors (steps not ok: a failure, a rejected call, a retry)."""

    tool: str
    calls: int = 0
    errors: int = 0
    error_rate: float | None = None
    latency_ms: Percentiles = Field(default_factory=Percentiles)


class ApprovalStats(BaseModel):
    """Human approvals asked by the runs: how many runs asked (`rate`: of all runs), and the decisions."""

    runs: int = 0
    rate: float | None = None
    requested: int = 0
    approved: int = 0
    rejected: int = 0
    expired: int = 0
    pending: int = 0


class PageCacheStats(BaseModel):
    """Successful `fetch_url` calls by where the page came from; `hit_rate` = cache / (cache + network)."""

    fetches: int = 0
    """Web pages read: from the page cache or the network (corpus documents are not web pages)."""
    hits: int = 0
    hit_rate: float | None = None
    corpus: int = 0


class GroupStats(BaseModel):
    """Every figure over a set of runs: all runs in the window (`key` None) or one `--by` group."""

    key: str | None = None
    runs: int = 0
    statuses: dict[str, int] = Field(default_factory=dict)
    finished: int = 0
    """Runs that ended: completed, failed, budget_exceeded, killed, cancelled."""
    completed: int = 0
    completion_rate: float | None = None
    """completed / finished."""
    stop_reasons: dict[str, int] = Field(default_factory=dict)
    answered: int = 0
    not_answered: int = 0
    duration_seconds: Percentiles = Field(default_factory=Percentiles)
    """The finished runs' execution time (`elapsed_seconds`, what the wall-time cap counts)."""
    turnaround_seconds: Percentiles = Field(default_factory=Percentiles)
    """The finished runs' time from created to finished: queueing and approval waits included."""
    model_requests: int = 0
    model_latency_ms: Percentiles = Field(default_factory=Percentiles)
    turns_avg: float | None = None
    turns_p95: float | None = None
    tokens_per_run: float | None = None
    """Input + output tokens per finished run, on average."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_per_run_usd: Dollars | None = None
    """Per finished run, on average."""
    total_cost_usd: Dollars = Decimal(0)
    """Every run in the window, unfinished ones included."""
    cost_unknown_runs: int = 0
    """Runs whose model has no known price: their cost counts as 0."""
    tool_calls: int = 0
    tool_errors: int = 0
    tool_error_rate: float | None = None
    tools: list[ToolStats] = Field(default_factory=list)
    approvals: ApprovalStats = Field(default_factory=ApprovalStats)
    page_cache: PageCacheStats = Field(default_factory=PageCacheStats)


class ProviderHealth(BaseModel):
    """A provider model's circuit breaker as `stats` shows it; models not listed are closed and idle."""

    key: str
    state: str
    consecutive_failures: int
    open_seconds_left: float | None = None
    probe_in_flight: bool = False
    last_error: str | None = None
    window_requests: int = 0
    window_tokens: int = 0


class RunStats(BaseModel):
    """`research-agent stats`: the window, the totals, and the groups of `by` (most runs first)."""

    since_seconds: float
    window_start: datetime
    window_end: datetime
    by: StatsBy | None = None
    total: GroupStats
    groups: list[GroupStats] = Field(default_factory=list)
    providers: list[ProviderHealth] = Field(default_factory=list)
    """Each provider model's circuit breaker and current rate window (`agent.durable.providers`), now."""


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


class _Grouping:
    """The SQL that groups the window's rows (a subquery `w` with a `key` column) by `by`, or not at all."""

    def __init__(self, by: StatsBy | None) -> None:
        if by is not None and by not in STATS_BY:
            raise ValueError(f"cannot group by {by!r}: expected one of {', '.join(STATS_BY)}")
        self.by = by
        # A name from STATS_BY only. Grouping compares bytes ("C"): no locale-aware sorting of a day of rows.
        self.column = "NULL::text" if by is None else f'r.{by} COLLATE "C"'
        self.total = "true" if by is None else "grouping(key) = 1"
        self.key = "NULL::text" if by is None else "key"

    def sets(self, *dimensions: tuple[str, ...]) -> str:
        """`GROUPING SETS`: each dimension tuple alone (the totals) and, with `by`, with `key` first."""
        sets = list(dimensions) + ([("key", *d) for d in dimensions] if self.by else [])
        return "GROUPING SETS (" + ", ".join("(" + ", ".join(s) + ")" for s in sets) + ")"


def _runs_sql(g: _Grouping) -> str:
    return f"""
        SELECT {g.total} AS total, {g.key} AS key,
            count(*) AS runs,
            count(*) FILTER (WHERE finished) AS finished,
            count(*) FILTER (WHERE status = 'completed') AS completed,
            count(*) FILTER (WHERE answered) AS answered,
            count(*) FILTER (WHERE NOT answered) AS not_answered,
            percentile_cont({_PERCENTILES}) WITHIN GROUP (ORDER BY elapsed_seconds) FILTER (WHERE finished)
                AS duration,
            percentile_cont({_PERCENTILES}) WITHIN GROUP (ORDER BY turnaround) FILTER (WHERE finished) AS turnaround,
            (avg(requests) FILTER (WHERE finished))::float8 AS turns_avg,
            percentile_cont(0.95) WITHIN GROUP (ORDER BY requests) FILTER (WHERE finished) AS turns_p95,
            (avg(input_tokens + output_tokens) FILTER (WHERE finished))::float8 AS tokens_per_run,
            coalesce(sum(input_tokens), 0)::bigint AS input_tokens,
            coalesce(sum(output_tokens), 0)::bigint AS output_tokens,
            round(avg(cost_usd) FILTER (WHERE finished), 8) AS cost_per_run,
            coalesce(sum(cost_usd), 0) AS total_cost,
            count(*) FILTER (WHERE NOT cost_known) AS cost_unknown
        FROM (
            SELECT {g.column} AS key, r.status, r.status = ANY($2::text[]) AS finished,
                   CASE WHEN r.report IS NOT NULL THEN coalesce((r.report ->> 'answered')::boolean, true) END
                       AS answered,
                   r.elapsed_seconds, extract(epoch FROM r.finished_at - r.created_at)::float8 AS turnaround,
                   r.requests, r.input_tokens, r.output_tokens, r.cost_usd, r.cost_known
            FROM runs r WHERE r.created_at >= $1
        ) w
        GROUP BY {g.sets(())}
    """


def _outcomes_sql(g: _Grouping) -> str:
    return f"""
        SELECT {g.total} AS total, {g.key} AS key, grouping(stop_reason) = 1 AS of_status, status, stop_reason,
               count(*) AS runs
        FROM (SELECT {g.column} AS key, r.status, r.stop_reason FROM runs r WHERE r.created_at >= $1) w
        GROUP BY {g.sets(("status",), ("stop_reason",))}
    """


def _steps_sql(g: _Grouping) -> str:
    return f"""
        SELECT {g.total} AS total, {g.key} AS key, kind, tool,
               count(*) AS calls, count(*) FILTER (WHERE NOT ok) AS errors,
               percentile_cont({_PERCENTILES}) WITHIN GROUP (ORDER BY latency_ms) AS latency
        FROM (
            SELECT {g.column} AS key, s.kind COLLATE "C" AS kind,
                   CASE WHEN s.kind = 'tool' THEN s.name COLLATE "C" END AS tool, s.ok, s.latency_ms
            FROM run_steps s JOIN runs r ON r.id = s.run_id
            WHERE s.kind IN ('model', 'tool') AND s.name <> '{OUTPUT_TOOL}'
              AND s.created_at >= $1 AND r.created_at >= $1
        ) w
        GROUP BY {g.sets(("kind", "tool"))}
    """


def _approvals_sql(g: _Grouping) -> str:
    return f"""
        SELECT {g.total} AS total, {g.key} AS key, count(DISTINCT run_id) AS runs, count(*) AS requested,
               count(*) FILTER (WHERE status = 'approved') AS approved,
               count(*) FILTER (WHERE status = 'rejected') AS rejected,
               count(*) FILTER (WHERE status = 'expired') AS expired,
               count(*) FILTER (WHERE status = 'pending') AS pending
        FROM (
            SELECT {g.column} AS key, a.run_id, a.status
            FROM approvals a JOIN runs r ON r.id = a.run_id
            WHERE a.requested_at >= $1 AND r.created_at >= $1
        ) w
        GROUP BY {g.sets(())}
    """


def _fetches_sql(g: _Grouping) -> str:
    return f"""
        SELECT {g.total} AS total, {g.key} AS key,
               count(*) FILTER (WHERE origin IN ('cache', 'network')) AS fetches,
               count(*) FILTER (WHERE origin = 'cache') AS hits,
               count(*) FILTER (WHERE origin = 'corpus') AS corpus
        FROM (
            SELECT {g.column} AS key, e.origin
            FROM tool_effects e JOIN runs r ON r.id = e.run_id
            WHERE e.origin IS NOT NULL AND e.created_at >= $1 AND r.created_at >= $1
        ) w
        GROUP BY {g.sets(())}
    """


def stats_queries(by: StatsBy | None = None) -> dict[str, str]:
    """Every statement `fleet_stats` runs, by name (`$1` the window's start; `runs` also takes `$2`, the
    finished statuses): for EXPLAIN in tests and the benchmark."""
    g = _Grouping(by)
    return {
        "runs": _runs_sql(g),
        "outcomes": _outcomes_sql(g),
        "steps": _steps_sql(g),
        "approvals": _approvals_sql(g),
        "fetches": _fetches_sql(g),
    }


async def fleet_stats(
    db: asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    *,
    since: timedelta = timedelta(hours=24),
    by: StatsBy | None = None,
    breaker_open_seconds: float = 60.0,
    rate_window_seconds: float = 60.0,
) -> RunStats:
    """Every figure over the runs created in the last `since`, in total and, with `by`, per group, and each
    provider's breaker now (`breaker_open_seconds` and `rate_window_seconds` as the settings give them)."""
    if since <= timedelta(0):
        raise ValueError("the window must be longer than zero")
    queries = stats_queries(by)
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            result = await _read(conn, since=since, by=by, queries=queries)
    else:
        result = await _read(db, since=since, by=by, queries=queries)
    states = await providers.health(db, open_seconds=breaker_open_seconds, window_seconds=rate_window_seconds)
    result.providers = [
        ProviderHealth(
            key=state.key,
            state=state.state,
            consecutive_failures=state.consecutive_failures,
            open_seconds_left=state.open_seconds_left,
            probe_in_flight=state.probe_in_flight,
            last_error=state.last_error,
            window_requests=state.window_requests,
            window_tokens=state.window_tokens,
        )
        for state in states
    ]
    return result


async def _read(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    *,
    since: timedelta,
    by: StatsBy | None,
    queries: Mapping[str, str],
) -> RunStats:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # The percentiles sort every value of the window: in memory, not in temporary files (bench/stats_scale.py).
        await conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        window = await conn.fetchrow("SELECT now() - $1::interval AS start, now() AS end", since)
        assert window is not None
        start, end = window["start"], window["end"]
        rows = {"runs": await conn.fetch(queries["runs"], start, list(FINISHED_STATUSES))}
        for name in ("outcomes", "steps", "approvals", "fetches"):
            rows[name] = await conn.fetch(queries[name], start)
    groups: dict[str | None, GroupStats] = {}
    for row in rows["runs"]:
        groups[_key(row)] = _group_of(row)
    for row in rows["outcomes"]:
        _add_outcome(groups[_key(row)], row)
    for row in rows["steps"]:
        _add_steps(groups[_key(row)], row)
    for row in rows["approvals"]:
        _add_approvals(groups[_key(row)], row)
    for row in rows["fetches"]:
        _add_fetches(groups[_key(row)], row)
    for group in groups.values():
        group.tools.sort(key=lambda t: (-t.calls, t.tool))
        group.approvals.rate = _rate(group.approvals.runs, group.runs)  # 0 for a group no approval row names
    total = groups.pop(None)
    return RunStats(
        since_seconds=since.total_seconds(),
        window_start=start,
        window_end=end,
        by=by,
        total=total,
        groups=sorted(groups.values(), key=lambda g: (-g.runs, g.key or "")),
    )


def _key(row: asyncpg.Record) -> str | None:
    return None if row["total"] else str(row["key"])


def _group_of(row: asyncpg.Record) -> GroupStats:
    return GroupStats(
        key=_key(row),
        runs=row["runs"],
        finished=row["finished"],
        completed=row["completed"],
        completion_rate=_rate(row["completed"], row["finished"]),
        answered=row["answered"],
        not_answered=row["not_answered"],
        duration_seconds=Percentiles.of(row["duration"]),
        turnaround_seconds=Percentiles.of(row["turnaround"]),
        turns_avg=row["turns_avg"],
        turns_p95=row["turns_p95"],
        tokens_per_run=row["tokens_per_run"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cost_per_run_usd=None if row["cost_per_run"] is None else plain_money(row["cost_per_run"]),
        total_cost_usd=plain_money(row["total_cost"]),
        cost_unknown_runs=row["cost_unknown"],
    )


def _add_outcome(group: GroupStats, row: asyncpg.Record) -> None:
    if row["of_status"]:
        group.statuses[row["status"]] = row["runs"]
    elif row["stop_reason"] is not None:  # queued and running runs have none yet
        group.stop_reasons[row["stop_reason"]] = row["runs"]


def _add_steps(group: GroupStats, row: asyncpg.Record) -> None:
    """A row of model steps (`tool` NULL) or of one tool's; the tool totals are the sum of the tools' rows."""
    if row["kind"] == "model":
        group.model_requests = row["calls"]
        group.model_latency_ms = Percentiles.of(row["latency"])
    else:
        group.tool_calls += row["calls"]
        group.tool_errors += row["errors"]
        group.tool_error_rate = _rate(group.tool_errors, group.tool_calls)
        group.tools.append(
            ToolStats(
                tool=row["tool"],
                calls=row["calls"],
                errors=row["errors"],
                error_rate=_rate(row["errors"], row["calls"]),
                latency_ms=Percentiles.of(row["latency"]),
            )
        )


def _add_approvals(group: GroupStats, row: asyncpg.Record) -> None:
    group.approvals = ApprovalStats(
        runs=row["runs"],
        requested=row["requested"],
        approved=row["approved"],
        rejected=row["rejected"],
        expired=row["expired"],
        pending=row["pending"],
    )


def _add_fetches(group: GroupStats, row: asyncpg.Record) -> None:
    group.page_cache = PageCacheStats(
        fetches=row["fetches"], hits=row["hits"], hit_rate=_rate(row["hits"], row["fetches"]), corpus=row["corpus"]
    )
