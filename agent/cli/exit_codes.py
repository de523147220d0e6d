"""The exit codes documented in the README: scripts can branch on how a run ended."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import RunStatus


class ExitCode(IntEnum):
    """Documented in the README: scripts can branch on how a run ended."""

    COMPLETED = 0
    FAILED = 1
    USAGE = 2
    BUDGET_EXCEEDED = 3
    KILLED = 4
    REFUSED = 5
    AWAITING_APPROVAL = 6
    INTERRUPTED = 130
    """Ctrl-C: the run ended `cancelled` and can be resumed (128 + SIGINT, as shells report it)."""


STATUS_EXIT: dict[RunStatus, ExitCode] = {
    "completed": ExitCode.COMPLETED,
    "failed": ExitCode.FAILED,
    "budget_exceeded": ExitCode.BUDGET_EXCEEDED,
    "killed": ExitCode.KILLED,
    "awaiting_approval": ExitCode.AWAITING_APPROVAL,
    "cancelled": ExitCode.INTERRUPTED,
    "queued": ExitCode.COMPLETED,
    "running": ExitCode.COMPLETED,
}
