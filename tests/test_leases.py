"""Leases: two workers never run the same run at once, and a worker that lost its lease cannot write."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import pytest
from pydantic_ai.usage import RunUsage

from agent.api import Runtime
from agent.durable.store import TurnCommit
from agent.errors import LeaseLostError
from agent.settings import Settings
from tests._http_server import LocalHTTPServer
from tests._processes import start_worker, worker_env
from tests._web import install_web

CRASH_MODEL = "factory:tests.scripted:crash_model"


async def test_claim_is_exclusive_until_the_lease_expires(runtime: Runtime) -> None:
    store = runtime.store
    run = await runtime.submit("Is the lease exclusive?")

    first = await store.claim_next(worker_id="w1", lease_seconds=0.5)
    assert first is not None and first.id == run.id and first.attempts == 1
    assert await store.claim_next(worker_id="w2", lease_seconds=0.5) is None
    assert await store.renew_lease(run.id, worker_id="w1", lease_seconds=0.5)
    assert not await store.renew_lease(run.id, worker_id="w2", lease_seconds=0.5)

    await asyncio.sleep(0.7)  # w1 stops heartbeating: its lease expires
    second = await store.claim_next(worker_id="w2", lease_seconds=30)
    assert second is not None and second.id == run.id and second.attempts == 2

    # w1 wakes up and tries to write: fenced off, nothing is written.
    with pytest.raises(LeaseLostError):
        await store.commit_turn(
            run.id,
            worker_id="w1",
            turn=TurnCommit(messages=[], first_seq=0, steps=[], usage=RunUsage(requests=1), elapsed_seconds=1.0),
        )
    assert not await store.renew_lease(run.id, worker_id="w1", lease_seconds=30)
    assert (await store.get_run(run.id)).usage.requests == 0


async def test_concurrent_claims_never_hand_out_a_run_twice(runtime: Runtime) -> None:
    runs = [await runtime.submit(f"question number {i}") for i in range(5)]
    claims = await asyncio.gather(*(runtime.store.claim_next(worker_id=f"w{i}", lease_seconds=30) for i in range(12)))
    claimed = [c.id for c in claims if c is not None]
    assert sorted(claimed) == sorted(r.id for r in runs)


async def test_two_worker_processes_share_the_queue_without_overlap(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    questions = [f"How does HTTP/3 differ, variant {i}?" for i in range(6)]
    runs = [await runtime.submit(q, model=CRASH_MODEL) for q in questions]
    script_log = tmp_path / "calls.jsonl"
    env = worker_env(settings, RA_SCRIPT_LOG=str(script_log), RA_SCRIPT_MAX_FETCHES="1")

    workers = [
        start_worker(env, "--concurrency", "2", "--exit-when-idle", log=tmp_path / f"worker-{i}.log") for i in range(2)
    ]
    for process in workers:
        assert await asyncio.to_thread(process.wait, 60) == 0

    finals = [await runtime.store.get_run(r.id) for r in runs]
    assert [f.status for f in finals] == ["completed"] * len(runs)
    assert all(f.attempts == 1 for f in finals)

    pids_by_question: dict[str, set[int]] = defaultdict(set)
    steps_by_question: dict[str, list[int]] = defaultdict(list)
    for line in script_log.read_text().splitlines():
        call = json.loads(line)
        pids_by_question[call["question"]].add(call["pid"])
        steps_by_question[call["question"]].append(call["messages"])
    assert set(pids_by_question) == set(questions)
    assert all(len(pids) == 1 for pids in pids_by_question.values()), pids_by_question
    assert all(len(steps) == len(set(steps)) == 4 for steps in steps_by_question.values()), steps_by_question
