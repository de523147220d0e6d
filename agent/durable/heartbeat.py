"""The lease heartbeat: renews a worker's lease on a run while the run executes, and stops the run when
another worker has taken it.

A renewal that fails because the database is unreachable is retried (backoff with jitter, never slower
than the normal beat) and logged once per outage; the lease may run out meanwhile, and then whoever
claims the run next resumes it from its last commit. A renewal the database refuses (the lease is
someone else's now) cancels the run's task at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import logfire

from agent.durable.outage import Outage, database_unavailable
from agent.durable.store import RunStore

__all__ = ["keep_lease"]


async def keep_lease(
    store: RunStore,
    *,
    run_id: str,
    worker_id: str,
    lease_seconds: float,
    task: asyncio.Task[Any],
    lost: asyncio.Event,
    elapsed: Callable[[], float | None],
) -> None:
    """Renew every third of the lease until `task` is done; set `lost` and cancel `task` if the lease is gone.
    `elapsed` is the run's active time so far, recorded with each renewal so a crash loses little of it."""
    interval = lease_seconds / 3
    outage = Outage(what=f"lease of run {run_id}", notice=lambda message: logfire.warn(message, run_id=run_id))
    delay = interval
    while not task.done():
        await asyncio.sleep(delay)
        try:
            renewed = await store.renew_lease(
                run_id, worker_id=worker_id, lease_seconds=lease_seconds, elapsed_seconds=elapsed()
            )
        except Exception as exc:
            if not database_unavailable(exc):
                logfire.warn("lease renewal failed: {error}", error=str(exc), run_id=run_id)
                delay = interval
            else:
                delay = min(interval, outage.failed(exc))
            continue
        outage.recovered()
        delay = interval
        if not renewed:
            lost.set()
            task.cancel()
            return
