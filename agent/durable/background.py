"""One background loop a worker keeps running while it is up (the page-cache sweep, webhook delivery, the
control watcher): started once, cancelled and awaited on stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

__all__ = ["BackgroundTask", "repeating"]


class BackgroundTask:
    """Runs `loop()` as one named task between `start` and `stop`; starting twice starts it once."""

    def __init__(self, loop: Callable[[], Coroutine[Any, Any, None]], *, name: str) -> None:
        self._loop = loop
        self._name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


def repeating(
    step: Callable[[], Coroutine[Any, Any, object]], *, every_seconds: float, name: str, failure: str
) -> BackgroundTask:
    """A `BackgroundTask` that runs `step` at once and then every `every_seconds`.

    A step that raises is logged as `failure: error` and the next one tries again; while the database is
    unreachable nothing is logged (the worker logs each outage once, `agent.durable.outage`).
    """

    async def loop() -> None:
        import logfire

        from agent.durable.outage import database_unavailable

        while True:
            try:
                await step()
            except Exception as exc:
                if not database_unavailable(exc):
                    logfire.warn("{failure}: {error}", failure=failure, error=str(exc), task=name)
            await asyncio.sleep(every_seconds)

    return BackgroundTask(loop, name=name)
