"""The run store: runs, committed messages and steps, the tool-effect ledger, sources, page cache.

Plain SQL on asyncpg, one module per table group; `runs` is the only module with SQL on the `runs`
table (approvals and the kill switch call it too), but for `retention`, which deletes old finished runs
with their rows (`runs purge`) and sweeps the expired page cache, and `stats`, which only reads the runs of
a window (`research-agent stats`). `RunStore` is the typed object the runner, the API and the CLI use.
"""

from agent.durable.store.effects import insert_audit
from agent.durable.store.events import EVENT_NAMES, TERMINAL_EVENTS, RunEvent, run_events
from agent.durable.store.pages import purge_expired_pages
from agent.durable.store.records import (
    AuditRecord,
    Connection,
    Executor,
    JSONValue,
    RunRecord,
    StepRecord,
    ToolEffect,
    TurnCommit,
    stored_usage,
    usage_from_json,
    usage_to_json,
)
from agent.durable.store.retention import (
    FINISHED_STATUSES,
    PageCacheSweeper,
    PurgeCounts,
    count_purgeable,
    parse_age,
    purge_cutoff,
    purge_runs,
)
from agent.durable.store.run_store import RunStore, release_lease
from agent.durable.store.stats import (
    STATS_BY,
    ApprovalStats,
    GroupStats,
    PageCacheStats,
    Percentiles,
    RunStats,
    StatsBy,
    ToolStats,
    fleet_stats,
    stats_queries,
)

__all__ = [
    "EVENT_NAMES",
    "FINISHED_STATUSES",
    "STATS_BY",
    "TERMINAL_EVENTS",
    "ApprovalStats",
    "AuditRecord",
    "Connection",
    "Executor",
    "GroupStats",
    "JSONValue",
    "PageCacheStats",
    "PageCacheSweeper",
    "Percentiles",
    "PurgeCounts",
    "RunEvent",
    "RunRecord",
    "RunStats",
    "RunStore",
    "StatsBy",
    "StepRecord",
    "ToolEffect",
    "ToolStats",
    "TurnCommit",
    "count_purgeable",
    "fleet_stats",
    "insert_audit",
    "parse_age",
    "purge_cutoff",
    "purge_expired_pages",
    "purge_runs",
    "release_lease",
    "run_events",
    "stats_queries",
    "stored_usage",
    "usage_from_json",
    "usage_to_json",
]
