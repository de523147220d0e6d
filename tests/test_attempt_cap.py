"""Poison runs end: a run whose worker dies on it, or fails on it, every time is failed after `max_attempts`
attempts, with an error naming the last failure.

A graceful hand-back (shutdown) or a deliberate requeue (resume, an approval decided) is not a failed
attempt: only claims whose lease expired and executions that failed with an unexpected error count. No
claim ever starts an attempt beyond the cap, however it interleaves with the worker ending exhausted runs.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import asyncpg
import pytest

from agent.api import Runtime
from agent.durable.runner import DurableRunner
from agent.durable.store import RunRecord, runs
from agent.durable.worker import Worker
from agent.models import model_label
from agent.settings import Settings
from tests._http_server import LocalHTTPServer
from tests._processes import expire_lease, start_worker, wait_for, worker_env
from tests._web import install_web
from tests.scripted import research_model

CRASH_MODEL = "factory:tests.scripted:crash_model"


async def _claim(pool: asyncpg.Pool, worker: str, *, max_attempts: int) -> RunRecord | None:
    """What a worker's poll does: end the runs that used up their attempts, then claim."""
    await runs.fail_exhausted(pool, max_attempts=max_attempts)
    return await runs.claim_next(pool, worker_id=worker, lease_seconds=30, max_attempts=max_attempts)


async def _failed_attempts(pool: asyncpg.Pool, run_id: str) -> tuple[int, str | None]:
    row = await pool.fetchrow("SELECT lost_leases, last_error FROM runs WHERE id = $1::uuid", run_id)
    assert row is not None
    return row["lost_leases"], row["last_error"]


async def test_expired_claims_count_and_the_cap_fails_the_run(runtime: Runtime) -> None:
    run = await runtime.submit("q?", model="offline")
    pool = runtime.pool
    for attempt in (1, 2, 3):
        claimed = await _claim(pool, f"w{attempt}", max_attempts=3)
        assert claimed is not None and claimed.id == run.id and claimed.attempts == attempt
        await expire_lease(pool, run.id)  # the worker died: its lease runs out

    assert await _claim(pool, "w4", max_attempts=3) is None
    final = await runtime.store.get_run(run.id)
    assert final.status == "failed" and final.stop_reason == "too_many_attempts"
    assert final.error is not None and "attempted 3 times in a row" in final.error and "runs resume" in final.error
    # The last error is the last attempt's: whose lease expired, and when.
    assert "last error: the lease of worker w3 expired at " in final.error, final.error
    assert final.last_error is not None and final.last_error.startswith("the lease of worker w3 expired")
    assert final.lease_owner is None and final.finished_at is not None

    resumed = await runs.requeue_stopped(pool, run.id)  # a person fixed the cause: it starts counting afresh
    assert resumed.status == "queued" and resumed.attempts == 3  # every claim is still counted
    assert await _failed_attempts(pool, run.id) == (0, None)
    again = await _claim(pool, "w5", max_attempts=3)
    assert again is not None and again.id == run.id and again.attempts == 4


async def test_a_failed_execution_handed_back_counts_and_the_cap_names_its_error(runtime: Runtime) -> None:
    run = await runtime.submit("q?", model="offline")
    pool = runtime.pool
    claimed = await _claim(pool, "w1", max_attempts=3)
    assert claimed is not None and claimed.id == run.id
    # Another worker cannot record a failure on a run it does not hold: fenced, nothing written.
    assert not await runs.release_lease(pool, run.id, worker_id="w-other", error="ValueError: not mine")
    assert (await runtime.store.get_run(run.id)).lease_owner == "w1"
    assert await _failed_attempts(pool, run.id) == (0, None)

    assert await runs.release_lease(pool, run.id, worker_id="w1", error="KeyError: 'usage' (attempt 1, worker w1)")
    queued = await runtime.store.get_run(run.id)
    assert queued.status == "queued" and queued.lease_owner is None  # retried at once, not after the lease
    assert await _failed_attempts(pool, run.id) == (1, "KeyError: 'usage' (attempt 1, worker w1)")

    claimed = await _claim(pool, "w2", max_attempts=3)  # attempt 2 dies: its lease expires
    assert claimed is not None and claimed.attempts == 2
    await expire_lease(pool, run.id)
    claimed = await _claim(pool, "w3", max_attempts=3)  # attempt 3 fails with an error
    assert claimed is not None and claimed.attempts == 3
    assert (await _failed_attempts(pool, run.id))[0] == 2
    assert (await _failed_attempts(pool, run.id))[1] is not None  # the expired lease of w2, noted by the claim
    assert await runs.release_lease(pool, run.id, worker_id="w3", error="RuntimeError: boom (attempt 3, worker w3)")

    assert await _claim(pool, "w4", max_attempts=3) is None
    final = await runtime.store.get_run(run.id)
    assert final.status == "failed" and final.stop_reason == "too_many_attempts" and final.attempts == 3
    assert final.error is not None and "attempted 3 times in a row" in final.error
    assert "last error: RuntimeError: boom (attempt 3, worker w3)." in final.error, final.error


async def test_no_claim_starts_an_attempt_beyond_the_cap(runtime: Runtime) -> None:
    """The race the worker's two statements leave: `fail_exhausted` finds nothing to end, then the lease of a
    run on its last attempt expires, then the claim. The claim must not take it."""
    run = await runtime.submit("q?", model="offline")
    pool = runtime.pool
    for worker in ("w1", "w2"):
        claimed = await _claim(pool, worker, max_attempts=2)
        assert claimed is not None and claimed.id == run.id
        if worker == "w1":
            await expire_lease(pool, run.id)

    assert await runs.fail_exhausted(pool, max_attempts=2) == []  # w2 still holds a live lease
    await expire_lease(pool, run.id)  # ... which now runs out, before the claim
    assert await runs.claim_next(pool, worker_id="w3", lease_seconds=30, max_attempts=2) is None
    assert (await runtime.store.get_run(run.id)).attempts == 2  # no third attempt
    [ended] = await runs.fail_exhausted(pool, max_attempts=2)  # the next poll ends it
    assert ended.id == run.id and ended.stop_reason == "too_many_attempts" and ended.attempts == 2


async def test_concurrent_workers_end_exhausted_runs_and_never_exceed_the_cap(runtime: Runtime) -> None:
    """Twelve workers poll at once over runs on their last attempt (lease expired), runs with attempts left and
    queued runs that failed as often as the cap allows: each run is either ended or claimed once, never both,
    and no run gets an attempt beyond the cap."""
    pool = runtime.pool
    last_attempt = [await runtime.submit(f"last attempt {i}?", model="offline") for i in range(4)]
    handed_back = [await runtime.submit(f"handed back {i}?", model="offline") for i in range(3)]
    fresh = [await runtime.submit(f"fresh {i}?", model="offline") for i in range(3)]
    for run in last_attempt:  # attempt 1 lost its lease, attempt 2 is under way and now loses it too
        assert (await runs.claim(pool, run.id, worker_id="old", lease_seconds=30)) is not None
        await expire_lease(pool, run.id)
        assert (await runs.claim(pool, run.id, worker_id="old", lease_seconds=30)) is not None
        await expire_lease(pool, run.id)
    for run in handed_back:  # two executions failed with an error and were handed back
        for attempt in (1, 2):
            assert (await runs.claim(pool, run.id, worker_id="old", lease_seconds=30)) is not None
            assert await runs.release_lease(pool, run.id, worker_id="old", error=f"OSError: disk full ({attempt})")

    claims = await asyncio.gather(*(_claim(pool, f"w{i}", max_attempts=2) for i in range(12)))

    claimed = sorted(c.id for c in claims if c is not None)
    assert claimed == sorted(r.id for r in fresh)
    for run in last_attempt + handed_back:
        final = await runtime.store.get_run(run.id)
        assert final.status == "failed" and final.stop_reason == "too_many_attempts" and final.attempts == 2
        assert final.error is not None and "attempted 2 times in a row" in final.error
        cause = "OSError: disk full (2)" if run in handed_back else "the lease of worker old expired"
        assert f"last error: {cause}" in final.error, final.error


class Boom(RuntimeError):
    """A bug in the runner, outside the part that decides how a run stops."""


async def test_a_run_whose_execution_fails_unexpectedly_is_retried_at_once_then_ended_naming_the_error(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    async def broken(self: DurableRunner, run: RunRecord, *args: object, **kwargs: object) -> object:
        calls.append(run.attempts)
        raise Boom(f"the usage table is corrupt on attempt {run.attempts}")

    monkeypatch.setattr(DurableRunner, "_open_session", broken)
    model, _ = research_model()
    run = await runtime.submit("What changed in HTTP/3?", model=model)
    settings = runtime.settings.model_copy(update={"max_attempts": 3, "lease_seconds": 600.0})
    worker = Worker(
        Runtime(pool=runtime.pool, settings=settings),
        concurrency=1,
        exit_when_idle=True,
        models={model_label(model): model},
    )
    # A 10-minute lease: only the hand-back can have let the second and third attempts start at once.
    await asyncio.wait_for(worker.run(), timeout=60)

    assert calls == [1, 2, 3]  # retried promptly, and never beyond the cap
    final = await runtime.store.get_run(run.id)
    assert final.status == "failed" and final.stop_reason == "too_many_attempts" and final.attempts == 3
    assert final.error is not None and "attempted 3 times in a row" in final.error
    expected = f"last error: Boom: the usage table is corrupt on attempt 3 (attempt 3, worker {worker.worker_id})."
    assert expected in final.error, final.error
    assert [e.name for e in await runtime.store.events(run.id)].count("run.failed") == 1


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
    owners: list[str | None] = []
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
            owners.append((await runtime.store.get_run(run.id)).lease_owner)
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
    # The cause, as far as anyone can know it: the second worker (SIGKILLed) stopped holding its lease.
    assert owners[1] is not None and f"last error: the lease of worker {owners[1]} expired at" in final.error
    assert "none recorded" not in final.error
    calls = [json.loads(line) for line in script_log.read_text().splitlines() if line.strip()]
    assert sum(call["messages"] == 3 for call in calls) == 2  # the third worker never ran it again
