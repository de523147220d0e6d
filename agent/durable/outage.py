"""Riding out a database outage: which errors mean "the server is unreachable", and retrying until it is back.

A worker must not exit, and a run must not end `internal_error`, because PostgreSQL restarted or the
network dropped for a minute (issue 14). Errors that mean the server is gone (refused or lost
connections, a server shutting down or starting up) are told apart from errors in what we asked it
(a constraint, a bad query), which still fail loudly. `Outage` logs once when an outage starts and once
when it ends, and waits between attempts with capped exponential backoff and full jitter, so a fleet of
workers does not reconnect in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

__all__ = ["Outage", "database_unavailable", "quiet_pool_reconnects"]

T = TypeVar("T")

_UNREACHABLE_SQLSTATE_CLASSES = ("08", "57")
"""08: connection exceptions; 57: operator intervention (admin shutdown, crash shutdown, cannot connect now)."""
_QUERY_CANCELED = "57014"
"""Class 57 too, but a statement timeout or a cancel, not an unreachable server."""


def database_unavailable(error: BaseException) -> bool:
    """True when `error` says the database server is unreachable, not that a statement was wrong.

    Only the error and the causes it was explicitly raised from count (`raise ... from`), not whatever
    happened to be handled nearby: a model call that fails while a socket error is being handled is not
    a database outage. An `OSError` counts only when it was raised inside asyncpg (connection refused,
    the unix socket of a stopped server gone), never from a tool reading a file or fetching a page.
    """
    current: BaseException | None = error
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, TimeoutError):  # an OSError subclass, but a slow call, not a lost server
            return False
        if isinstance(current, asyncpg.InterfaceError):  # "connection is closed", but not our own shutdown
            return "pool is clos" not in str(current) and not isinstance(current, asyncpg.ClientConfigurationError)
        if isinstance(current, asyncpg.PostgresError):
            state = str(getattr(current, "sqlstate", "") or "")
            return state[:2] in _UNREACHABLE_SQLSTATE_CLASSES and state != _QUERY_CANCELED
        if isinstance(current, OSError) and _raised_in_asyncpg(current):
            return True
        current = current.__cause__
    return False


def _raised_in_asyncpg(error: BaseException) -> bool:
    trace = error.__traceback__
    while trace is not None:
        if f"{os.sep}asyncpg{os.sep}" in trace.tb_frame.f_code.co_filename:
            return True
        trace = trace.tb_next
    return False


@dataclass(kw_only=True)
class Outage:
    """Retries a database call while the server is unreachable; logs once per outage, not once per try."""

    what: str
    """Who is waiting, for the log lines: `worker w-1`."""
    notice: Callable[[str], None]
    first_delay: float = 0.2
    max_delay: float = 5.0
    _down_since: float | None = None
    _attempt: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, error: BaseException) -> float:
        """Record a failure; return how long to wait before the next try (full jitter, capped)."""
        loop = asyncio.get_running_loop()
        if self._down_since is None:
            self._down_since = loop.time()
            self.notice(f"{self.what}: the database is unreachable ({_describe(error)}); retrying until it is back")
        self._attempt += 1
        return self._rng.uniform(0, min(self.max_delay, self.first_delay * 2**self._attempt))

    def recovered(self) -> None:
        if self._down_since is not None:
            took = asyncio.get_running_loop().time() - self._down_since
            self.notice(f"{self.what}: the database is reachable again after {took:.1f}s")
        self._down_since = None
        self._attempt = 0

    async def call(self, operation: Callable[[], Awaitable[T]], *, stop: asyncio.Event | None = None) -> T | None:
        """`operation()` once the server answers; None if `stop` is set while waiting. Other errors raise."""
        while True:
            try:
                result = await operation()
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                delay = self.failed(exc)
                if stop is None:
                    await asyncio.sleep(delay)
                    continue
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    continue
                return None
            self.recovered()
            return result


class _PoolFloorRetries(logging.Filter):
    """asyncpg's pool logs a traceback each time it fails to reconnect its idle connections during an
    outage; `Outage` already says once that the database is unreachable and once that it is back."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pool connection floor" not in record.getMessage()


_QUIET = _PoolFloorRetries()


def quiet_pool_reconnects() -> None:
    """Drop asyncpg's per-retry reconnect tracebacks in this process (idempotent)."""
    logger = logging.getLogger("asyncpg.pool")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
