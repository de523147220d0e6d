"""Progress events the runner emits while it works (the CLI renders them live)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

ProgressKind = Literal["status", "plan", "search", "fetch", "model", "tool_error", "resume"]


@dataclass(frozen=True, kw_only=True)
class ProgressEvent:
    run_id: str
    kind: ProgressKind
    message: str
    detail: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)


ProgressCallback = Callable[[ProgressEvent], None]


def ignore_progress(event: ProgressEvent) -> None:
    """The default callback: drop events."""
