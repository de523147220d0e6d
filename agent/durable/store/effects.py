"""What a run's tools did: the tool-effect ledger (`tool_effects`) and the append-only policy audit (`tool_audit`)."""

from __future__ import annotations

import uuid

from agent.durable.store.records import AuditRecord, Executor, JSONValue, ToolEffect


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
) -> None:
    await db.execute(
        "INSERT INTO tool_effects (run_id, tool_call_id, tool_name, args, result, latency_ms)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, tool_call_id) DO NOTHING",
        run_id,
        tool_call_id,
        tool_name,
        args,
        result,
        latency_ms,
    )


async def insert_audit(db: Executor, run_id: str, *, tool: str, args: JSONValue, decision: str, reason: str) -> None:
    """Append a row to the append-only `tool_audit`, on a pool or inside a caller's transaction."""
    await db.execute(
        "INSERT INTO tool_audit (run_id, tool, args, decision, reason) VALUES ($1, $2, $3, $4, $5)",
        uuid.UUID(run_id),
        tool,
        args,
        decision,
        reason,
    )


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
