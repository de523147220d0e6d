"""A worker's log: one `WorkerEvent` when it claims a run and one when it is done with it (id, question,
status, duration, cost), from a real `Worker` executing real runs in this process."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime
from agent.durable.worker import Worker
from agent.events import WorkerEvent
from budgets import Budget
from tests._http_server import LocalHTTPServer
from tests._web import install_web
from tests.scripted import research_model

QUESTION = "What changed in HTTP/3 compared to HTTP/2?"
CAPPED = "What is QUIC, in one turn?"


async def test_worker_reports_each_run_claimed_and_finished(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server)
    model, _ = research_model(max_fetches=2)
    completed = await runtime.submit(QUESTION, model=model)
    capped = await runtime.submit(CAPPED, model=model, budget=Budget(max_turns=1))
    events: list[WorkerEvent] = []
    worker = Worker(
        runtime, concurrency=1, exit_when_idle=True, models={completed.config.model: model}, on_event=events.append
    )
    finished = {run.id: run for run in await worker.run()}

    # One run at a time, oldest first: claimed, finished, claimed, finished.
    assert [(e.kind, e.run_id) for e in events] == [
        ("claimed", completed.id),
        ("finished", completed.id),
        ("claimed", capped.id),
        ("finished", capped.id),
    ]
    for claimed, done in (events[0:2], events[2:4]):
        final = finished[done.run_id]
        assert claimed.question == done.question == final.question
        assert (claimed.status, claimed.attempt, claimed.duration_seconds, claimed.cost_usd) == (
            "running",
            1,
            0.0,
            Decimal(0),
        )
        assert (done.status, done.stop_reason, done.attempt) == (final.status, final.stop_reason, 1)
        assert done.cost_usd == final.cost_usd > 0
        assert done.duration_seconds > 0
        assert claimed.worker_id == done.worker_id == worker.worker_id
    assert (events[1].status, events[1].error) == ("completed", None)
    assert (events[3].status, events[3].stop_reason) == ("budget_exceeded", "turns")
    assert events[3].error == finished[capped.id].error and events[3].error

    line = events[1].line()  # what the CLI prints
    assert line.startswith("finished") and completed.id[:8] in line and QUESTION in line
    assert "completed" in line and f"${finished[completed.id].cost_usd:.4f}" in line
    assert "budget_exceeded (turns)" in events[3].line()
    assert f'"{CAPPED}"  running  attempt 1' in events[2].line()


async def test_a_worker_stopped_mid_run_reports_the_run_released_to_the_queue(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    hanging = asyncio.Event()
    calls: Counter[int] = Counter()

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls[len(messages)] += 1
        hanging.set()
        await asyncio.Event().wait()  # a condition never met: only the worker's shutdown (a cancellation) ends it
        raise AssertionError("unreachable")

    model = FunctionModel(respond, model_name="scripted-research")
    run = await runtime.submit(QUESTION, model=model)
    events: list[WorkerEvent] = []
    worker = Worker(runtime, concurrency=1, models={run.config.model: model}, on_event=events.append)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(hanging.wait(), timeout=30)
    worker.stop()
    assert await asyncio.wait_for(running, timeout=30) == []

    assert [(e.kind, e.run_id, e.status) for e in events] == [
        ("claimed", run.id, "running"),
        ("released", run.id, "queued"),
    ]
    assert events[1].duration_seconds > 0 and events[1].line().startswith("released")
    assert (await runtime.store.get_run(run.id)).status == "queued"
    assert calls == Counter({1: 1})


async def test_a_failing_event_callback_does_not_stop_the_worker(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    model, _ = research_model(max_fetches=1)
    run = await runtime.submit(QUESTION, model=model)
    seen: list[str] = []

    def broken(event: WorkerEvent) -> None:
        seen.append(event.kind)
        raise RuntimeError("the terminal went away")

    worker = Worker(runtime, concurrency=1, exit_when_idle=True, models={run.config.model: model}, on_event=broken)
    [final] = await worker.run()
    assert final.status == "completed", final.error
    assert seen == ["claimed", "finished"]
