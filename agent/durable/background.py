"""One background loop a worker keeps running while it is up (the page-cache sweep, webhook delivery, the
control watcher): started once, cancelled and awaited on stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

__all__ = ["BackgroundTask"]


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
