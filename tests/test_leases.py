"""Leases: two workers never run the same run at once, and a worker that lost its lease cannot write."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic_ai.messages import ModelRequest, UserPromptPart
from pydantic_ai.usage import RunUsage

from agent.api import Runtime
from agent.durable.approvals import ApprovalRequest, ApprovalStore
from agent.durable.store import RunStore, StepRecord, TurnCommit
from agent.errors import LeaseLostError
from agent.settings import Settings
from tests._http_server import LocalHTTPServer
from tests._processes import expire_lease, start_worker, worker_env
from tests._web import install_web
from tools import FetchedPage

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


# ---------------------------------------------------------------------------------------------------------------
# Every write made on a run's behalf is fenced by the lease, in the writing statement or its transaction

PAGE_URL = "https://docs.example.org/http3"


def _page(text: str) -> FetchedPage:
    return FetchedPage(
        url=PAGE_URL,
        final_url=PAGE_URL,
        status_code=200,
        content_type="text/html",
        title="HTTP/3",
        text=text,
        fetched_at=datetime.now(UTC),
    )


def _step(worker: str) -> StepRecord:
    return StepRecord(seq=0, kind="event", name="note", summary=f"written by {worker}")


Write = Callable[[RunStore, str, str], Awaitable[Any]]
"""A write a worker makes on a run's behalf: (the store, the run, the worker)."""

FENCED_WRITES: dict[str, Write] = {
    "put_tool_effect": lambda store, run, worker: store.leased(worker, run_id=run).put_tool_effect(
        run,
        tool_call_id=f"call-{worker}",
        tool_name="fetch_url",
        args={"url": PAGE_URL},
        result={"ok": True, "by": worker},
        latency_ms=1.0,
        origin="network",
    ),
    "audit": lambda store, run, worker: store.leased(worker, run_id=run).audit(
        run, tool="fetch_url", args={"url": PAGE_URL}, decision="deny", reason=f"refused while {worker} ran"
    ),
    "record_source": lambda store, run, worker: store.leased(worker, run_id=run).record_source(
        run, _page(f"the page as {worker} fetched it")
    ),
    "put_page": lambda store, run, worker: store.leased(worker, run_id=run).put_page(
        _page(f"the page as {worker} fetched it"), ttl=timedelta(hours=1)
    ),
    "ApprovalStore.park (approvals, steps)": lambda store, run, worker: ApprovalStore(store.pool).park(
        run,
        worker_id=worker,
        requests=[ApprovalRequest(tool_call_id=f"call-{worker}", tool="fetch_url", args={}, reason="policy")],
        timeout_seconds=60,
        steps=[_step(worker)],
    ),
    "commit_turn (messages, steps, usage)": lambda store, run, worker: store.commit_turn(
        run,
        worker_id=worker,
        turn=TurnCommit(
            messages=[ModelRequest(parts=[UserPromptPart(f"asked by {worker}")])],
            first_seq=0,
            steps=[_step(worker)],
            usage=RunUsage(requests=1, input_tokens=10),
            elapsed_seconds=1.0,
        ),
    ),
    "finish_run (status, steps)": lambda store, run, worker: store.finish_run(
        run, worker_id=worker, status="failed", stop_reason="error", report=None, error=worker, steps=[_step(worker)]
    ),
}

_PER_RUN_TABLES = ("run_messages", "run_steps", "run_sources", "tool_effects", "tool_audit", "approvals", "run_events")


async def _everything(pool: asyncpg.Pool, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row a write on the run's behalf could touch: its own rows, the run, and the shared page cache."""
    rows = {
        table: await pool.fetch(f"SELECT * FROM {table} WHERE run_id = $1::uuid ORDER BY 1", run_id)
        for table in _PER_RUN_TABLES
    }
    rows["runs"] = await pool.fetch("SELECT * FROM runs WHERE id = $1::uuid", run_id)
    rows["page_cache"] = await pool.fetch("SELECT * FROM page_cache ORDER BY url")
    return {table: [dict(row) for row in found] for table, found in rows.items()}


@pytest.mark.parametrize("write", list(FENCED_WRITES.values()), ids=list(FENCED_WRITES))
async def test_a_worker_whose_lease_was_taken_writes_nothing(runtime: Runtime, write: Write) -> None:
    store = runtime.store
    run = await runtime.submit("Who may write for this run?")
    first = await store.claim_next(worker_id="w1", lease_seconds=30)
    assert first is not None and first.id == run.id
    await expire_lease(runtime.pool, run.id)  # w1 stalls past its lease ...
    second = await store.claim_next(worker_id="w2", lease_seconds=30)
    assert second is not None and second.id == run.id  # ... and w2 takes the run over

    before = await _everything(runtime.pool, run.id)
    with pytest.raises(LeaseLostError):
        await write(store, run.id, "w1")
    assert await _everything(runtime.pool, run.id) == before

    await write(store, run.id, "w2")  # the control: the same write by the lease holder is written
    written = await _everything(runtime.pool, run.id)
    assert written != before

    with pytest.raises(LeaseLostError):  # and w1, waking up later, cannot overwrite it either
        await write(store, run.id, "w1")
    assert await _everything(runtime.pool, run.id) == written


async def test_writes_nobody_leases_are_not_fenced(runtime: Runtime) -> None:
    """A store that is no worker's (the CLI, a person, another run's cache fill) writes the page cache freely, and
    a leased store cannot be made without the run it holds."""
    await runtime.store.put_page(_page("cached outside any run"), ttl=timedelta(hours=1))
    assert await runtime.pool.fetchval("SELECT text FROM page_cache WHERE url = $1", PAGE_URL) == (
        "cached outside any run"
    )
    with pytest.raises(ValueError, match="both the worker and the run"):
        RunStore(runtime.pool, worker_id="w1")
