"""Named run events (issue 15, point 6): each run's life as the events the operating guides name.

A mixed workload on one database, every run real: completed, stopped at a cap after a budget warning, halted
as a loop, a tool call the policy blocked, failed, cancelled mid-call, killed by the kill switch then requeued
and completed by a worker, abandoned by a worker whose lease ran out and resumed by another, and one left
queued. Then: every finished run has exactly one terminal event (after its last requeue), named after its
status, and unfinished runs none (`tests/_run_events.py`, which conftest.py also checks on every test database);
each run's events come in the order its life took; `cost.recorded` sums to the run's tokens and cost;
`runs show` prints them and `--json` carries them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime
from agent.durable.controls import KillSwitch
from agent.durable.store import RunEvent
from agent.durable.worker import Worker
from budgets import Budget
from tests._cli import run_cli
from tests._http_server import LocalHTTPServer
from tests._processes import expire_lease, worker_env
from tests._run_events import terminal_event_violations
from tests._web import install_web
from tests.scripted import research_model, scripted_calls
from tests.test_interrupt import CountingModel
from tools import ToolPolicyOverrides

QUESTION = "What changed in HTTP/3 compared to HTTP/2?"


def names(events: list[RunEvent]) -> list[str]:
    return [e.name for e in events]


def without_costs(events: list[RunEvent]) -> list[str]:
    return [e.name for e in events if e.name != "cost.recorded"]


async def test_every_finished_run_has_exactly_one_terminal_event_over_a_mixed_workload(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    store = runtime.store
    runs: dict[str, str] = {}

    completed = await runtime.research(QUESTION, model=research_model()[0])
    runs["completed"] = completed.run_id
    capped = await runtime.research(QUESTION, model=research_model()[0], budget=Budget(max_turns=4))
    runs["capped"] = capped.run_id
    assert (capped.status, capped.stop_reason) == ("budget_exceeded", "turns")

    def stuck(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("record_plan", {"sub_questions": ["http3?"]})])
        return ModelResponse(parts=[ToolCallPart("web_search", {"query": "HTTP/3"})])

    looped = await runtime.research(QUESTION, model=FunctionModel(stuck))
    runs["looped"] = looped.run_id
    assert looped.stop_reason == "loop"

    deny_search = runtime.settings.model_copy(update={"tool_policy": ToolPolicyOverrides(tools={"web_search": "deny"})})
    blocked = await Runtime(pool=runtime.pool, settings=deny_search).research(
        QUESTION, model=scripted_calls([("record_plan", {"sub_questions": ["QUIC?"]}), ("web_search", {"query": "x"})])
    )
    runs["blocked"] = blocked.run_id
    assert blocked.status == "completed"

    def broken(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise RuntimeError("the model server fell over")

    failed = await runtime.research(QUESTION, model=FunctionModel(broken))
    runs["failed"] = failed.run_id
    assert failed.status == "failed"

    interrupted = CountingModel(hang_at=5)
    task = asyncio.create_task(runtime.research(QUESTION, model=interrupted.model))
    await asyncio.wait_for(interrupted.hanging.wait(), timeout=30)
    runtime.interrupt()
    cancelled = await asyncio.wait_for(task, timeout=30)
    runs["cancelled"] = cancelled.run_id
    assert cancelled.status == "cancelled"

    # Killed mid-call by the kill switch; turning it off requeues the run and a worker completes it.
    killable = CountingModel(hang_at=5)
    task = asyncio.create_task(runtime.research(QUESTION, model=killable.model))
    await asyncio.wait_for(killable.hanging.wait(), timeout=30)
    switch = KillSwitch(runtime.pool)
    await switch.turn_on(reason="events drill")
    killed = await asyncio.wait_for(task, timeout=30)
    runs["killed_then_completed"] = killed.run_id
    assert (killed.status, killed.stop_reason) == ("killed", "kill_switch")
    assert (await switch.turn_off()).requeued == [killed.run_id]
    model_name = (await store.get_run(killed.run_id)).config.model
    [resumed] = await Worker(runtime, concurrency=1, exit_when_idle=True, models={model_name: killable.model}).run()
    assert resumed.status == "completed"

    # A worker that claims a run and dies: its lease runs out and another worker resumes the run.
    orphan = await runtime.submit(QUESTION, model=research_model()[0])
    claimed = await store.claim_next(worker_id="worker-that-died", lease_seconds=60)
    assert claimed is not None and claimed.id == orphan.id
    await expire_lease(runtime.pool, orphan.id)  # as if its 60 s had passed since the dead worker's last beat
    survivor = Worker(runtime, concurrency=1, exit_when_idle=True, models={orphan.config.model: research_model()[0]})
    [finished] = await survivor.run()
    runs["abandoned_then_completed"] = finished.id
    assert finished.status == "completed" and finished.attempts == 2

    queued = await runtime.submit(QUESTION, model=research_model()[0])
    runs["queued"] = queued.id

    # The invariant, over every run of the workload.
    assert await terminal_event_violations(runtime.pool) == []
    events = {label: await store.events(run_id) for label, run_id in runs.items()}

    assert without_costs(events["completed"]) == ["run.started", "run.completed"]
    assert without_costs(events["capped"])[-2:] == ["budget.warning", "run.limit_exceeded"]
    assert events["capped"][-2].attributes["cap"] == "turns"
    assert without_costs(events["looped"])[-2:] == ["loop.halted", "run.limit_exceeded"]
    [block] = [e for e in events["blocked"] if e.name == "tool.blocked"]
    assert block.attributes["tool"] == "web_search" and "denied" in str(block.attributes["reason"])
    assert without_costs(events["blocked"]) == ["run.started", "tool.blocked", "run.completed"]
    assert without_costs(events["failed"]) == ["run.started", "run.failed"]
    assert without_costs(events["cancelled"]) == ["run.started", "run.cancelled"]
    assert without_costs(events["killed_then_completed"]) == [
        "run.started",
        "run.killed",
        "run.requeued",
        "run.resumed",
        "run.completed",
    ]
    abandoned = events["abandoned_then_completed"]
    assert without_costs(abandoned) == ["run.started", "run.resumed", "run.completed"]
    claims = [e.attributes for e in abandoned if e.name in ("run.started", "run.resumed")]
    assert [(c["worker"], c["attempt"]) for c in claims] == [("worker-that-died", 1), (survivor.worker_id, 2)]
    assert events["queued"] == []

    # `cost.recorded`: one per committed model request, summing to what the run recorded.
    for label, run_id in runs.items():
        run = await store.get_run(run_id)
        model_steps = [s for s in await store.get_steps(run_id) if s.kind == "model"]
        costs = [e for e in events[label] if e.name == "cost.recorded"]
        assert len(costs) == len(model_steps), label
        assert sum(int(str(e.attributes["input_tokens"])) for e in costs) == run.usage.input_tokens, label
        assert sum(int(str(e.attributes["output_tokens"])) for e in costs) == run.usage.output_tokens, label
        assert sum(Decimal(str(e.attributes["cost_usd"] or 0)) for e in costs) == run.cost_usd, label

    env = worker_env(runtime.settings)
    shown = run_cli(env, "runs", "show", runs["looped"])
    assert shown.returncode == 0, shown.stderr
    assert "Events" in shown.stdout and "loop.halted" in shown.stdout and "run.limit_exceeded" in shown.stdout
    as_json = json.loads(run_cli(env, "runs", "show", runs["blocked"], "--json").stdout)
    assert [e["name"] for e in as_json["events"] if e["name"] != "cost.recorded"] == without_costs(events["blocked"])


async def test_a_hand_written_terminal_event_breaks_the_invariant(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    """The checker can fail: a second terminal event, or one on a queued run, is reported."""
    install_web(http_server)
    done = await runtime.research(QUESTION, model=research_model()[0])
    queued = await runtime.submit(QUESTION, model=research_model()[0])
    assert await terminal_event_violations(runtime.pool) == []
    await runtime.pool.execute(
        "INSERT INTO run_events (run_id, name) VALUES ($1, 'run.failed'), ($2, 'run.completed')",
        uuid.UUID(done.run_id),
        uuid.UUID(queued.id),
    )
    problems = await terminal_event_violations(runtime.pool)
    assert len(problems) == 2
    assert any(done.run_id in p and "['run.completed', 'run.failed']" in p for p in problems)
    assert any(queued.id in p and "queued" in p for p in problems)
    await runtime.pool.execute("DELETE FROM run_events WHERE name = 'run.failed' OR run_id = $1", uuid.UUID(queued.id))
