"""`stats`: how the runs of a window went, across runs (stores only: `agent.durable.store.stats` does the SQL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.markup import escape

from agent.cli.console import err, out, print_json
from agent.cli.exit_codes import ExitCode
from agent.cli.options import JsonOption
from agent.cli.running import Stores, with_stores

if TYPE_CHECKING:
    from datetime import timedelta

    from rich.table import Table

    from agent.durable.store import GroupStats, Percentiles, RunStats, StatsBy

BY_CHOICES = ("model", "prompt_version", "status")
"""`--by`: `agent.durable.store.STATS_BY` (tests/test_stats.py keeps the two equal; the store is not imported
for `--help`)."""


def stats(
    since: Annotated[
        str,
        typer.Option(
            "--since",
            metavar="AGE",
            help="The runs created in this last stretch of time: a number and a unit, s, m, h, d or w (30m, 24h, 7d).",
        ),
    ] = "24h",
    by: Annotated[
        str | None,
        typer.Option(
            "--by", metavar="FIELD", help="Also every figure per model, prompt_version or status.", show_default=False
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Across the runs of a window: completion rate, stop reasons, answered or not, run duration and model
    latency percentiles, turns, tokens and cost per run, tool calls and errors per tool, approval rate and the
    page cache's hit rate."""
    window = since_window(since)
    group = _by(by)

    async def body(stores: Stores) -> RunStats:
        from agent.durable.store.stats import fleet_stats

        return await fleet_stats(
            stores.pool,
            since=window,
            by=group,
            breaker_open_seconds=stores.settings.breaker_open_seconds,
            rate_window_seconds=stores.settings.rate_limit_window_seconds,
        )

    result = with_stores(body)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    for renderable in stats_tables(result, since=since):
        out.print(renderable)


def since_window(since: str) -> timedelta:
    """`--since AGE` as a window; a bad age is a one-line usage error (exit 2), as in `stats` and `alerts check`."""
    from agent.durable.store.retention import parse_age

    try:
        return parse_age(since)
    except ValueError as exc:
        err.print(f"[red]error:[/red] --since: {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(ExitCode.USAGE) from None


def _by(by: str | None) -> StatsBy | None:
    if by is None or by in BY_CHOICES:
        return cast("StatsBy | None", by)
    err.print(f"[red]error:[/red] --by {escape(repr(by))}: expected one of {', '.join(BY_CHOICES)}", soft_wrap=True)
    raise typer.Exit(ExitCode.USAGE)


# --- rendering ------------------------------------------------------------------------------------------


def stats_tables(result: RunStats, *, since: str) -> list[str | Table]:
    """A heading line, then the figures (a column per group), stop reasons, and tools."""
    from datetime import UTC

    start = result.window_start.astimezone(UTC)
    heading = f"{_count(result.total.runs, 'run')} created in the last {since} (since {start:%Y-%m-%d %H:%M} UTC)"
    if result.by:
        heading += f", by {result.by}"
    providers: list[str | Table] = [_providers(result)] if result.providers else []  # shown even with no runs
    if not result.total.runs:
        return [heading, *providers]
    groups = [result.total, *result.groups]
    return [heading, _figures(groups), _stop_reasons(groups), _tools(groups, by=result.by), *providers]


def _providers(result: RunStats) -> Table:
    """Each provider model's circuit breaker now (closed and idle ones are not listed); last errors below."""
    from rich.table import Table

    table = Table(title="Providers (circuit breaker, now)", title_justify="left")
    table.add_column("model", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for column in ("failures", "open for", "requests / tokens this window"):
        table.add_column(column, justify="right")
    errors: list[str] = []
    for p in result.providers:
        left = "" if p.open_seconds_left is None else f"{p.open_seconds_left:.0f}s"
        state = p.state + (" (probing)" if p.probe_in_flight else "")
        table.add_row(
            escape(p.key), state, str(p.consecutive_failures), left, f"{p.window_requests} / {p.window_tokens:,}"
        )
        if p.last_error and p.state != "closed":
            errors.append(f"{escape(p.key)}: {escape(p.last_error[:200])}")
    if errors:
        table.caption = "last error: " + "; ".join(errors)
        table.caption_justify = "left"
    return table


def _table(title: str, groups: list[GroupStats]) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("")
    for group in groups:
        table.add_column(escape(group.key) if group.key is not None else "all runs", justify="right")
    return table


def _figures(groups: list[GroupStats]) -> Table:
    from agent.money import money

    table = _table("Runs", groups)
    rows: list[tuple[str, list[str]]] = [
        ("runs", [str(g.runs) for g in groups]),
        ("finished / completed", [f"{g.finished} / {g.completed}" for g in groups]),
        ("completion rate", [_pct(g.completion_rate) for g in groups]),
        ("answered / not answered", [f"{g.answered} / {g.not_answered}" for g in groups]),
        ("duration p50/p95/p99 (s)", [_percentiles(g.duration_seconds, "{:.1f}") for g in groups]),
        ("turnaround p50/p95/p99 (s)", [_percentiles(g.turnaround_seconds, "{:.1f}") for g in groups]),
        ("model latency p50/p95/p99 (ms)", [_percentiles(g.model_latency_ms, "{:.0f}") for g in groups]),
        ("turns avg / p95", [f"{_num(g.turns_avg, '{:.1f}')} / {_num(g.turns_p95, '{:.1f}')}" for g in groups]),
        ("tokens per run", [_num(g.tokens_per_run, "{:,.0f}") for g in groups]),
        ("cost per run", [money(g.cost_per_run_usd) for g in groups]),
        ("total cost", [money(g.total_cost_usd) + _unpriced(g) for g in groups]),
        ("tool calls / error rate", [f"{g.tool_calls} / {_pct(g.tool_error_rate)}" for g in groups]),
        ("approval rate (runs)", [f"{_pct(g.approvals.rate)} ({g.approvals.runs})" for g in groups]),
        (
            "page cache hit rate",
            [f"{_pct(g.page_cache.hit_rate)} ({g.page_cache.hits}/{g.page_cache.fetches})" for g in groups],
        ),
    ]
    for label, values in rows:
        table.add_row(label, *values)
    return table


def _stop_reasons(groups: list[GroupStats]) -> Table:
    table = _table("Stop reasons", groups)
    reasons = sorted(groups[0].stop_reasons, key=lambda r: (-groups[0].stop_reasons[r], r))
    for reason in reasons:
        table.add_row(reason, *[str(g.stop_reasons.get(reason, 0)) for g in groups])
    return table


def _tools(groups: list[GroupStats], *, by: str | None) -> Table:
    from rich.table import Table

    table = Table(title="Tools", title_justify="left")
    if by:
        table.add_column(by)
    for name in ("tool", "calls", "errors", "error rate", "latency p50/p95/p99 (ms)"):
        table.add_column(name, justify="left" if name == "tool" else "right")
    for group in groups if by else groups[:1]:
        for tool in group.tools:
            cells = [escape(tool.tool), str(tool.calls), str(tool.errors), _pct(tool.error_rate)]
            cells.append(_percentiles(tool.latency_ms, "{:.0f}"))
            table.add_row(*([group.key or "all runs"] if by else []), *cells)
    return table


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def _num(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)


def _percentiles(p: Percentiles, form: str) -> str:
    return " / ".join(_num(v, form) for v in (p.p50, p.p95, p.p99)) if p.p50 is not None else "-"


def _unpriced(group: GroupStats) -> str:
    return f" ({group.cost_unknown_runs} unpriced)" if group.cost_unknown_runs else ""


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
