"""The run store: runs, committed messages and steps, the tool-effect ledger, sources, page cache.

Plain SQL on asyncpg, one module per table group; `runs` is the only module with SQL on the `runs`
table (approvals and the kill switch call it too). `RunStore` is the typed object the runner, the
API and the CLI use.
"""

from agent.durable.store.effects import insert_audit
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
from agent.durable.store.run_store import RunStore, release_lease

__all__ = [
    "AuditRecord",
    "Connection",
    "Executor",
    "JSONValue",
    "RunRecord",
    "RunStore",
    "StepRecord",
    "ToolEffect",
    "TurnCommit",
    "insert_audit",
    "release_lease",
    "stored_usage",
    "usage_from_json",
    "usage_to_json",
]
