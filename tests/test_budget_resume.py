"""Caps hold across crashes: usage, cost and elapsed time carry over every SIGKILL and resume."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from agent.api import Runtime
from agent.settings import Settings
from budgets import Budget
from tests._http_server import LocalHTTPServer
from tests._processes import expire_lease, start_worker, wait_for, worker_env
from tests._web import install_web

CRASH_MODEL = "factory:tests.scripted:crash_model"


def _kill_when_hanging(settings: Settings, tmp_path: Path, *, hang_at: int, name: str, hold: float = 0.0) -> None:
    """Start a worker that hangs in the model call with `hang_at` messages, then SIGKILL it."""
    mark = tmp_path / f"{name}.hanging"
    env = worker_env(
        settings,
        RA_SCRIPT_LOG=str(tmp_path / "calls.jsonl"),
        RA_SCRIPT_HANG_AT=str(hang_at),
        RA_SCRIPT_HANG_MARK=str(mark),
    )
    worker = start_worker(env, log=tmp_path / f"{name}.log")
    try:
        wait_for(mark.exists, timeout=30, what=f"{name} to hang at {hang_at} messages")
        time.sleep(hold)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()


def _finish(settings: Settings, tmp_path: Path) -> None:
    env = worker_env(settings, RA_SCRIPT_LOG=str(tmp_path / "calls.jsonl"))
    worker = start_worker(env, "--max-runs", "1", log=tmp_path / "last.log")
    assert worker.wait(timeout=60) == 0, (tmp_path / "last.log").read_text()


async def test_turn_and_cost_caps_hold_across_repeated_sigkills(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    budget = Budget(max_turns=4, max_cost_usd=Decimal("0.2"))
    run = await runtime.submit("What changed in HTTP/3?", model=CRASH_MODEL, budget=budget)

    for number, hang_at in enumerate((3, 5, 7)):  # killed inside the 2nd, 3rd and 4th model calls
        _kill_when_hanging(settings, tmp_path, hang_at=hang_at, name=f"worker-{number}")
        await expire_lease(runtime.pool, run.id)
    _finish(settings, tmp_path)

    final = await runtime.store.get_run(run.id)
    assert final.status == "budget_exceeded" and final.stop_reason == "turns"
    assert final.usage.requests == 4 and final.attempts == 4
    calls = Counter(json.loads(line)["messages"] for line in (tmp_path / "calls.jsonl").read_text().splitlines())
    assert calls == Counter({1: 1, 3: 2, 5: 2, 7: 2})  # never a 5th turn (9 messages), even after 3 crashes
    steps = await runtime.store.get_steps(run.id)
    model_costs = [s.cost_usd for s in steps if s.kind == "model"]
    assert len(model_costs) == 4 and sum(c or 0 for c in model_costs) == final.cost_usd <= budget.max_cost_usd


async def test_wall_time_carries_over_crashes(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    run = await runtime.submit("What changed in HTTP/3?", model=CRASH_MODEL, budget=Budget(max_wall_seconds=5.0))

    # The first worker spends ~3 s inside a model call before dying; its heartbeat records that time.
    _kill_when_hanging(settings, tmp_path, hang_at=3, name="worker-a", hold=3.0)
    carried = (await runtime.store.get_run(run.id)).elapsed_seconds
    assert carried >= 2.0
    await expire_lease(runtime.pool, run.id)

    # The next worker hangs again; only the carried-over remainder of the 5 s is left to it.
    env = worker_env(settings, RA_SCRIPT_LOG=str(tmp_path / "calls.jsonl"), RA_SCRIPT_HANG_AT="5")
    worker = start_worker(env, "--max-runs", "1", log=tmp_path / "worker-b.log")
    try:
        assert worker.wait(timeout=60) == 0, (tmp_path / "worker-b.log").read_text()
    finally:
        if worker.poll() is None:
            worker.kill()

    final = await runtime.store.get_run(run.id)
    assert final.status == "budget_exceeded" and final.stop_reason == "wall_time"
    assert 5.0 <= final.elapsed_seconds <= 5.0 + 1.0
    assert final.attempts == 2
