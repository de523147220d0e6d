"""What the run store reads and writes, as plain frozen dataclasses, and the JSON helpers for usage.

pydantic-ai is imported only where one of its types is built (`RunRecord.usage`, `usage_from_json`): the
CLI's read-only commands read and print records without loading it (tests/test_cli_startup.py). What they
print of a run's usage is `RunRecord.usage_json`, the stored JSON in `usage_to_json`'s shape.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import asyncpg

from agent.config import RunConfig, RunStatus, StopReason
from agent.money import repr_with_money

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.usage import RunUsage

JSONValue = Any  # what asyncpg's jsonb codec returns: dict | list | str | int | float | bool | None
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Executor = Connection | asyncpg.Pool
"""Anything a single statement runs on: a pool, or a connection (inside a caller's transaction)."""

USAGE_DEFAULTS: Mapping[str, JSONValue] = MappingProxyType(
    {
        "input_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "cache_read_tokens": 0,
        "output_tokens": 0,
        "unmeasured_requests": 0,
        "output_reasoning_tokens": 0,
        "input_audio_tokens": 0,
        "cache_audio_read_tokens": 0,
        "output_audio_tokens": 0,
        "audio_seconds": 0,
        "details": {},
        "cost": None,
        "requests": 0,
        "tool_calls": 0,
    }
)
"""pydantic-ai's `RunUsage` fields with their defaults, in its order: `usage_to_json(RunUsage())`, known
without importing pydantic-ai. tests/test_cli_startup.py fails when a pydantic-ai upgrade changes them."""


@dataclass(frozen=True, kw_only=True, repr=False)
class RunRecord:
    """One row of `runs`, as the API and CLI see it."""

    __repr__ = repr_with_money

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
    usage_json: dict[str, JSONValue]
    """The run's usage as `usage_to_json` writes it, every field present (`stored_usage`): what the CLI prints."""
    cost_usd: Decimal
    cost_known: bool
    elapsed_seconds: float
    message_count: int
    attempts: int
    lease_owner: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None = None
    """What ended the run's last failed attempt (an unexpected error, or whose lease expired), if any since
    it was last queued on purpose: what the attempt cap's `too_many_attempts` error names."""

    @functools.cached_property
    def usage(self) -> RunUsage:
        """The run's usage as pydantic-ai's `RunUsage`, built on first use (one object per record)."""
        return usage_from_json(self.usage_json)


@dataclass(frozen=True, kw_only=True, repr=False)
class StepRecord:
    """One human-readable step: a plan, a model turn, a tool call or an event."""

    __repr__ = repr_with_money

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


def usage_from_json(data: Mapping[str, JSONValue]) -> RunUsage:
    from pydantic_ai.usage import RunUsage

    values = dict(data)
    cost = values.pop("cost", None)
    fields = {f.name for f in dataclasses.fields(RunUsage)} - {"cost"}
    usage = RunUsage(**{k: v for k, v in values.items() if k in fields})
    usage.cost = None if cost is None else Decimal(str(cost))
    return usage


def stored_usage(data: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
    """`usage_to_json(usage_from_json(data))`, without pydantic-ai: stored usage with every field present
    (a queued run stores `{}`), unknown fields dropped and the cost in one notation."""
    usage = {name: data.get(name, default) for name, default in USAGE_DEFAULTS.items()}
    usage["details"] = dict(usage["details"])
    usage["cost"] = None if usage["cost"] is None else str(Decimal(str(usage["cost"])))
    return usage
