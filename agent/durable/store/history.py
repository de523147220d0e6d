"""A run's committed history: its pydantic-ai messages (`run_messages`) and readable steps (`run_steps`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.durable.store.records import Executor, StepRecord
from agent.money import plain_money

if TYPE_CHECKING:  # the message functions import it when called: reading steps (`runs show`) does not load it
    from pydantic_ai.messages import ModelMessage


async def insert_messages(db: Executor, run_id: uuid.UUID, *, first_seq: int, messages: Sequence[ModelMessage]) -> None:
    if not messages:
        return
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    payload = ModelMessagesTypeAdapter.dump_python(list(messages), mode="json")
    await db.executemany(
        "INSERT INTO run_messages (run_id, seq, kind, message) VALUES ($1, $2, $3, $4)",
        [
            (run_id, first_seq + i, _message_kind(m), data)
            for i, (m, data) in enumerate(zip(messages, payload, strict=True))
        ],
    )


async def load_messages(db: Executor, run_id: uuid.UUID) -> list[ModelMessage]:
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    rows = await db.fetch("SELECT message FROM run_messages WHERE run_id = $1 ORDER BY seq", run_id)
    return ModelMessagesTypeAdapter.validate_python([r["message"] for r in rows])


async def insert_steps(db: Executor, run_id: uuid.UUID, steps: Sequence[StepRecord]) -> None:
    if not steps:
        return
    await db.executemany(
        "INSERT INTO run_steps (run_id, seq, kind, name, tool_call_id, args, summary, ok,"
        " input_tokens, output_tokens, cost_usd, latency_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
        [
            (
                run_id,
                s.seq,
                s.kind,
                s.name,
                s.tool_call_id,
                s.args,
                s.summary,
                s.ok,
                s.input_tokens,
                s.output_tokens,
                s.cost_usd,
                s.latency_ms,
            )
            for s in steps
        ],
    )


async def get_steps(db: Executor, run_id: uuid.UUID) -> list[StepRecord]:
    rows = await db.fetch("SELECT * FROM run_steps WHERE run_id = $1 ORDER BY seq", run_id)
    return [
        StepRecord(
            seq=r["seq"],
            kind=r["kind"],
            name=r["name"],
            tool_call_id=r["tool_call_id"],
            args=r["args"],
            summary=r["summary"],
            ok=r["ok"],
            input_tokens=r["input_tokens"],
            output_tokens=r["output_tokens"],
            cost_usd=None if r["cost_usd"] is None else plain_money(r["cost_usd"]),
            latency_ms=r["latency_ms"],
            created_at=r["created_at"],
        )
        for r in rows
    ]


async def next_step_seq(db: Executor, run_id: uuid.UUID) -> int:
    value = await db.fetchval("SELECT coalesce(max(seq) + 1, 0) FROM run_steps WHERE run_id = $1", run_id)
    return int(value)


def _message_kind(message: ModelMessage) -> str:
    return "request" if message.kind == "request" else "response"
