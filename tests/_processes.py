"""Real worker processes for crash and concurrency tests."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg

from agent.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
POLL_SECONDS = 0.05
"""How often `wait_for` and `until` read a state another process reaches. They poll because that state (a
row, a log line, a metrics scrape) comes with nothing to await; each read is the condition itself."""


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a worker subprocess that uses this test's database and fixture web."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESEARCH_AGENT_", "RA_SCRIPT_"))}
    assert settings.database_url
    env.update(
        {
            "DATABASE_URL": settings.database_url,
            "RESEARCH_AGENT_DATA_DIR": str(settings.data_dir),
            "RESEARCH_AGENT_SEARCH_BACKEND": settings.search_backend,
            "RESEARCH_AGENT_SEARXNG_URL": settings.searxng_url or "",
            "RESEARCH_AGENT_FETCH_ALLOW_HOSTS": ",".join(settings.fetch_allow_hosts),
            "RESEARCH_AGENT_LEASE_SECONDS": str(settings.lease_seconds),
            "RESEARCH_AGENT_MODEL_PRICES": json.dumps(
                {key: price.model_dump(mode="json") for key, price in settings.model_prices.items()}
            ),
            "RESEARCH_AGENT_WORKER_POLL_SECONDS": "0.1",
            "RESEARCH_AGENT_CRITIC_MODEL": settings.critic_model,
            "PYTHONPATH": str(ROOT),
            "LOGFIRE_IGNORE_NO_CONFIG": "1",
        }
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "worker", *args],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def until(
    read: Callable[[], T | Awaitable[T]],
    ready: Callable[[T], object] = bool,
    *,
    within: float = 30.0,
    what: str,
) -> T:
    """Read (`read()`, sync or async) until `ready(value)` holds and return that value. For a state another
    process or task reaches (a row, a log line, a scrape, a metric) with nothing to await: it reads every
    POLL_SECONDS, up to `within` seconds, then fails naming `what` and the last value read."""
    deadline = time.monotonic() + within
    while True:
        value = read()
        value = await value if inspect.isawaitable(value) else value
        if ready(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; last read: {value!r:.500}")
        await asyncio.sleep(POLL_SECONDS)


async def expire_lease(pool: asyncpg.Pool, run_id: str) -> None:
    """End a SIGKILLed worker's lease now instead of `lease_seconds` after its last heartbeat.

    The next worker claims the run exactly as after a real expiry (tests/test_leases.py and the first
    crash test in tests/test_crash_recovery.py wait for one); only the waiting is skipped.
    """
    status = await pool.execute(
        "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id::text = $1 AND status = 'running'",
        run_id,
    )
    assert status == "UPDATE 1", f"run {run_id} is not running under a lease: {status}"
