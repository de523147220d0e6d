"""What the run store reads and writes, as plain frozen dataclasses, and the JSON helpers for usage."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from pydantic_ai.messages import ModelMessage
from pydantic_ai.usage import RunUsage

from agent.config import RunConfig, RunStatus, StopReason

JSONValue = Any  # what asyncpg's jsonb codec returns: dict | list | str | int | float | bool | None
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Executor = Connection | asyncpg.Pool
"""Anything a single statement runs on: a pool, or a connection (inside a caller's transaction)."""


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One row of `runs`, as the API and CLI see it."""

    id: str
    question: str
    status: RunStatus
    stop_reason: StopReason | None
    error: str | None
    config: RunConfig
    plan: list[str] | None
    report: dict[str, JSONValue] | None
    partial: dict[str, JSONValue] | None
    review: dict[str, JSONValue] | None
    """The critic's verdicts (`agent.review.critic.Review`), once the report was graded."""
    usage: RunUsage
    cost_usd: Decimal
    cost_known: bool
    elapsed_seconds: float
    message_count: int
    attempts: int
    lease_owner: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One human-readable step: a plan, a model turn, a tool call or an event."""

    seq: int
    kind: str
    name: str
    tool_call_id: str | None = None
    args: JSONValue = None
    summary: str = ""
    ok: bool = True
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal | None = None
    latency_ms: float | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class TurnCommit:
    """Everything one turn adds, written atomically."""

    messages: Sequence[ModelMessage]
    first_seq: int
    steps: Sequence[StepRecord]
    usage: RunUsage
    elapsed_seconds: float
    cost_usd: Decimal = Decimal(0)
    cost_known: bool = True
    plan: list[str] | None = None
    review: dict[str, JSONValue] | None = None


@dataclass(frozen=True, kw_only=True)
class ToolEffect:
    tool_call_id: str
    tool_name: str
    result: JSONValue
    latency_ms: float


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One row of the append-only tool-policy audit."""

    id: int
    tool: str
    args: JSONValue
    decision: str
    reason: str
    created_at: datetime


def usage_to_json(usage: RunUsage) -> dict[str, JSONValue]:
    data = dataclasses.asdict(usage)
    data["cost"] = None if usage.cost is None else str(usage.cost)
    return data


def usage_from_json(data: dict[str, JSONValue]) -> RunUsage:
    values = dict(data)
    cost = values.pop("cost", None)
    usage = RunUsage(**{k: v for k, v in values.items() if k in _RUN_USAGE_FIELDS})
    usage.cost = None if cost is None else Decimal(str(cost))
    return usage


_RUN_USAGE_FIELDS = {f.name for f in dataclasses.fields(RunUsage)} - {"cost"}
