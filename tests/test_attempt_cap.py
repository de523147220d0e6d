"""Poison runs end: a run whose worker dies on it every time is failed after `max_attempts` claims.

A hand-back (graceful shutdown) or a deliberate requeue (resume, an approval decided) is not a failed
attempt: only claims whose lease expired count.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from agent.api import Runtime
from agent.durable.store import runs
from agent.settings import Settings
from tests._http_server import LocalHTTPServer
from tests._processes import expire_lease, start_worker, wait_for, worker_env
from tests._web import install_web

CRASH_MODEL = "factory:tests.scripted:crash_model"


async def test_expired_claims_count_and_the_cap_fails_the_run(runtime: Runtime) -> None:
    run = await runtime.submit("q?", model="offline")
    pool = runtime.pool
    for attempt in (1, 2, 3):
        claimed = await runs.claim_next(pool, worker_id=f"w{attempt}", lease_seconds=30, max_attempts=3)
        assert claimed is not None and claimed.id == run.id and claimed.attempts == attempt
        await expire_lease(pool, run.id)  # the worker died: its lease runs out

    assert await runs.claim_next(pool, worker_id="w4", lease_seconds=30, max_attempts=3) is None
    final = await runtime.store.get_run(run.id)
    assert final.status == "failed" and final.stop_reason == "too_many_attempts"
    assert final.error is not None and "attempted 3 times in a row" in final.error and "runs resume" in final.error
    assert final.lease_owner is None and final.finished_at is not None

    resumed = await runs.requeue_stopped(pool, run.id)  # a person fixed the cause: it starts counting afresh
    assert resumed.status == "queued" and resumed.attempts == 3  # every claim is still counted
    assert await pool.fetchval("SELECT lost_leases FROM runs WHERE id = $1::uuid", run.id) == 0
    again = await runs.claim_next(pool, worker_id="w5", lease_seconds=30, max_attempts=3)
    assert again is not None and again.id == run.id and again.attempts == 4


async def test_a_hand_back_is_not_a_failed_attempt(runtime: Runtime) -> None:
    run = await runtime.submit("q?", model="offline")
    pool = runtime.pool
    for attempt in range(1, 6):  # five graceful restarts of the worker holding it
        claimed = await runs.claim_next(pool, worker_id="w", lease_seconds=30, max_attempts=2)
        assert claimed is not None and claimed.id == run.id and claimed.attempts == attempt
        assert await runs.release_lease(pool, run.id, worker_id="w")
    assert (await runtime.store.get_run(run.id)).status == "queued"


async def test_a_run_that_kills_its_worker_every_time_ends_with_a_clear_status(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    run = await runtime.submit("What changed in HTTP/3 compared to HTTP/2?", model=CRASH_MODEL)
    script_log = tmp_path / "model-calls.jsonl"
    for attempt in (1, 2):
        mark = tmp_path / f"hanging-{attempt}"
        env = worker_env(
            settings,
            RA_SCRIPT_LOG=str(script_log),
            RA_SCRIPT_HANG_AT="3",  # the second model call hangs, every time
            RA_SCRIPT_HANG_MARK=str(mark),
            RESEARCH_AGENT_MAX_ATTEMPTS="2",
        )
        worker = start_worker(env, log=tmp_path / f"worker-{attempt}.log")
        try:
            wait_for(mark.exists, timeout=30, what=f"attempt {attempt} to reach the hanging call")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        await expire_lease(runtime.pool, run.id)

    env = worker_env(settings, RA_SCRIPT_LOG=str(script_log), RESEARCH_AGENT_MAX_ATTEMPTS="2")
    last = start_worker(env, "--exit-when-idle", log=tmp_path / "worker-last.log")
    assert last.wait(timeout=60) == 0, (tmp_path / "worker-last.log").read_text()

    final = await runtime.store.get_run(run.id)
    assert final.status == "failed" and final.stop_reason == "too_many_attempts", final.error
    assert final.error is not None and "attempted 2 times in a row" in final.error
    calls = [json.loads(line) for line in script_log.read_text().splitlines() if line.strip()]
    assert sum(call["messages"] == 3 for call in calls) == 2  # the third worker never ran it again
