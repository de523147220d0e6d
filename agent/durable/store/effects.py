"""What a run's tools did: the tool-effect ledger (`tool_effects`) and the append-only policy audit (`tool_audit`)."""

from __future__ import annotations

import uuid

from agent.durable.store.records import AuditRecord, Executor, JSONValue, ToolEffect
from agent.durable.store.runs import ensure_lease, lease_held


async def load_tool_effects(db: Executor, run_id: uuid.UUID) -> dict[str, ToolEffect]:
    rows = await db.fetch(
        "SELECT tool_call_id, tool_name, result, latency_ms FROM tool_effects WHERE run_id = $1", run_id
    )
    return {
        r["tool_call_id"]: ToolEffect(
            tool_call_id=r["tool_call_id"],
            tool_name=r["tool_name"],
            result=r["result"],
            latency_ms=r["latency_ms"],
        )
        for r in rows
    }


async def put_tool_effect(
    db: Executor,
    run_id: uuid.UUID,
    *,
    tool_call_id: str,
    tool_name: str,
    args: JSONValue,
    result: JSONValue,
    latency_ms: float,
    origin: str | None = None,
    worker_id: str | None = None,
) -> None:
    """Record a tool's result once, with `origin` for a `fetch_url` that got a page (`cache`, `network`,
    `corpus`: the page cache's hit rate in `stats`). With `worker_id`, only while that worker holds the
    run's lease (checked in the same statement); otherwise `LeaseLostError` and nothing is written."""
    status = await db.execute(
        "INSERT INTO tool_effects (run_id, tool_call_id, tool_name, args, result, latency_ms, origin)"
        " SELECT $1::uuid, $2::text, $3::text, $4::jsonb, $5::jsonb, $6::float8, $8::text"
        f" WHERE {lease_held(run='$1', worker='$7')}"
        " ON CONFLICT (run_id, tool_call_id) DO NOTHING",
        run_id,
        tool_call_id,
        tool_name,
        args,
        result,
        latency_ms,
        worker_id,
        origin,
    )
    if status == "INSERT 0 0":  # already recorded (a replayed call), or fenced out
        await ensure_lease(db, run_id, worker_id)


async def insert_audit(
    db: Executor,
    run_id: str,
    *,
    tool: str,
    args: JSONValue,
    decision: str,
    reason: str,
    worker_id: str | None = None,
) -> None:
    """Append a row to the append-only `tool_audit`, on a pool or inside a caller's transaction. With
    `worker_id`, fenced by that worker's lease like `put_tool_effect`."""
    status = await db.execute(
        "INSERT INTO tool_audit (run_id, tool, args, decision, reason)"
        " SELECT $1::uuid, $2::text, $3::jsonb, $4::text, $5::text"
        f" WHERE {lease_held(run='$1', worker='$6')}",
        uuid.UUID(run_id),
        tool,
        args,
        decision,
        reason,
        worker_id,
    )
    if status == "INSERT 0 0":
        await ensure_lease(db, uuid.UUID(run_id), worker_id)


async def audit_rows(db: Executor, run_id: uuid.UUID) -> list[AuditRecord]:
    rows = await db.fetch("SELECT * FROM tool_audit WHERE run_id = $1 ORDER BY id", run_id)
    return [
        AuditRecord(
            id=r["id"],
            tool=r["tool"],
            args=r["args"],
            decision=r["decision"],
            reason=r["reason"],
            created_at=r["created_at"],
        )
        for r in rows
    ]
