"""`agent.stats`: how the runs of a window went, from Python: what `research-agent stats` prints.

    from agent import stats
    day = await stats("24h", by="model")
    print(day.total.completion_rate, day.total.model_latency_ms.p95, [g.key for g in day.groups])

The figures are computed in SQL by `agent.durable.store.stats.fleet_stats` (`RunStats` describes each);
`Runtime.stats` gives the same on a runtime's pool. Only the database is opened: no model, no telemetry.
"""

from __future__ import annotations

from datetime import timedelta

from agent.durable.database import open_database
from agent.durable.store.retention import parse_age
from agent.durable.store.stats import RunStats, StatsBy, fleet_stats
from agent.settings import Settings

__all__ = ["stats", "stats_window"]


def stats_window(since: str | timedelta) -> timedelta:
    """`"30m"`, `"24h"`, `"7d"` (`parse_age`) or a `timedelta`; a `ValueError` for anything not longer than zero."""
    window = parse_age(since) if isinstance(since, str) else since
    if window <= timedelta(0):
        raise ValueError(f"the window must be longer than zero, not {since!r}")
    return window


async def stats(
    since: str | timedelta = "24h", *, by: StatsBy | None = None, settings: Settings | None = None
) -> RunStats:
    """Every figure over the runs created in the last `since`, in total and, with `by` (`"model"`,
    `"prompt_version"` or `"status"`), per group."""
    window = stats_window(since)
    settings = settings or Settings.load()
    pool = await open_database(settings, max_size=2)
    try:
        return await fleet_stats(
            pool,
            since=window,
            by=by,
            breaker_open_seconds=settings.breaker_open_seconds,
            rate_window_seconds=settings.rate_limit_window_seconds,
        )
    finally:
        await pool.close()
