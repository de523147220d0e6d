"""The kill switch: a flag in Postgres (plus `RESEARCH_AGENT_DISABLED=1`) that refuses new runs and stops
every running run, in every process, within 2 s; turning it off resumes them with nothing lost.

End to end with real processes: a worker is mid model call (or mid tool call), another process flips
the switch, the run ends `killed`, and after `kill-switch off` it resumes to `completed` without
repeating a model or tool call that had completed (counted as in tests/test_crash_recovery.py).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime
from agent.durable.controls import KillSwitch
from agent.durable.store import RunRecord
from agent.durable.worker import Worker
from agent.errors import RunRefusedError
from agent.settings import Settings
from budgets import DailySpend
from tests._cli import run_cli as cli
from tests._cli import run_cli_process
from tests._http_server import LocalHTTPServer
from tests._processes import start_worker, wait_for, worker_env
from tests._web import block_first_hit, install_web
from tests.scripted import ResearchScript

CRASH_MODEL = "factory:tests.scripted:crash_model"
QUESTION = "What changed in HTTP/3 compared to HTTP/2?"
KILL_DEADLINE = 2.0


def model_calls(log: Path, question: str = QUESTION) -> Counter[int]:
    """How many times each step (identified by its history length) of `question` called the model."""
    calls = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return Counter(c["messages"] for c in calls if c["question"] == question)


async def wait_status(runtime: Runtime, run_id: str, status: str, *, within: float) -> tuple[RunRecord, float]:
    """Poll until the run has `status`; returns it and how long that took."""
    started = time.monotonic()
    while True:
        run = await runtime.store.get_run(run_id)
        waited = time.monotonic() - started
        if run.status == status:
            return run, waited
        if waited > within:
            raise AssertionError(f"run {run_id} is {run.status} ({run.stop_reason}) after {waited:.1f}s, not {status}")
        await asyncio.sleep(0.02)


async def kill_latency(runtime: Runtime, run: RunRecord) -> float:
    """Flip to stop, both on the database clock: the switch's commit to the run's finishing transaction."""
    flipped_at = await runtime.pool.fetchval("SELECT updated_at FROM control_flags WHERE name = 'kill_switch'")
    assert run.finished_at is not None
    return float((run.finished_at - flipped_at).total_seconds())


async def test_env_override_refuses_new_runs_and_workers_claim_nothing(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    disabled = Runtime(pool=runtime.pool, settings=settings.model_copy(update={"disabled": True}))
    with pytest.raises(RunRefusedError, match="RESEARCH_AGENT_DISABLED=1"):
        await disabled.submit("Refused here?", model=CRASH_MODEL)
    with pytest.raises(RunRefusedError):
        await disabled.research("Refused in process?", model=CRASH_MODEL)
    assert await runtime.list_runs() == []

    env = worker_env(settings, RESEARCH_AGENT_DISABLED="1")
    queued = await runtime.submit("Claimed by a disabled worker?", model=CRASH_MODEL)  # this process is enabled
    worker = start_worker(env, "--exit-when-idle", log=tmp_path / "worker.log")
    asked, status = await asyncio.gather(
        asyncio.to_thread(cli, env, "ask", "Refused from the command line?", "--model", CRASH_MODEL),
        asyncio.to_thread(cli, env, "kill-switch", "status", "--json"),
    )
    assert asked.returncode == 5, asked.stderr
    assert "refused" in asked.stderr and "RESEARCH_AGENT_DISABLED=1" in asked.stderr
    assert status.returncode == 5
    assert json.loads(status.stdout) | {"updated_at": None} == {
        "on": True,
        "flag": False,
        "env_override": True,
        "reason": None,
        "updated_at": None,
    }
    assert not (await KillSwitch(runtime.pool).state()).on  # the shared flag is untouched

    assert await asyncio.to_thread(worker.wait, 30) == 0, (tmp_path / "worker.log").read_text()
    after = await runtime.store.get_run(queued.id)
    assert (after.status, after.attempts) == ("queued", 0)
    assert [r.id for r in await runtime.list_runs()] == [queued.id]


async def test_cli_turns_the_switch_on_and_off_and_reports_it(runtime: Runtime, settings: Settings) -> None:
    env = worker_env(settings)
    status = cli(env, "kill-switch", "status")
    assert status.returncode == 0 and "off" in status.stdout

    on = cli(env, "kill-switch", "on", "--reason", "provider incident")
    assert on.returncode == 0, on.stderr
    assert "ON" in on.stdout and "new runs are refused" in on.stdout
    status, submitted = await asyncio.gather(
        asyncio.to_thread(cli, env, "kill-switch", "status"),
        asyncio.to_thread(cli, env, "submit", "Queued while killed?", "--model", CRASH_MODEL),
    )
    assert status.returncode == 5 and "provider incident" in status.stdout
    state = await KillSwitch(runtime.pool).state()
    assert (state.on, state.flag, state.reason) == (True, True, "provider incident")

    assert submitted.returncode == 5
    assert "kill switch is on (provider incident)" in submitted.stderr
    with pytest.raises(RunRefusedError, match="provider incident"):
        await runtime.submit("Refused in process?")
    assert await runtime.list_runs() == []

    off = cli(env, "kill-switch", "off")
    assert off.returncode == 0, off.stderr
    assert "off" in off.stdout
    assert not (await KillSwitch(runtime.pool).state()).on
    assert (await runtime.submit("Accepted again?")).status == "queued"


async def test_flip_from_another_process_kills_a_worker_mid_model_call_and_off_resumes_it(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    run = await runtime.submit(QUESTION, model=CRASH_MODEL)
    script_log = tmp_path / "model-calls.jsonl"
    mark = tmp_path / "hanging"
    env = worker_env(settings, RESEARCH_AGENT_DAILY_CAP_USD="5")

    # The 4th model call (history of 7 messages: after plan, search and one fetch) hangs until cancelled.
    hanging = dict(env, RA_SCRIPT_LOG=str(script_log), RA_SCRIPT_HANG_AT="7", RA_SCRIPT_HANG_MARK=str(mark))
    first = start_worker(hanging, "--max-runs", "1", log=tmp_path / "worker-a.log")
    try:
        await asyncio.to_thread(wait_for, mark.exists, timeout=30, what="the model call to hang")
        before = await runtime.store.get_run(run.id)
        assert (before.status, before.usage.requests, before.usage.tool_calls) == ("running", 3, 3)

        flipped = await asyncio.to_thread(run_cli_process, env, "kill-switch", "on", "--reason", "e2e drill")
        assert flipped.returncode == 0, flipped.stderr
        assert "1 running run(s)" in flipped.stdout
        killed, observed = await wait_status(runtime, run.id, "killed", within=KILL_DEADLINE)
        latency = await kill_latency(runtime, killed)
        print(f"kill latency (model call): {latency:.3f}s flip→killed on the db clock; {observed:.3f}s observed")
        assert latency < KILL_DEADLINE
        # The worker is alive and well: its run ended, so it leaves (--max-runs 1) without being killed itself.
        assert await asyncio.to_thread(first.wait, 10) == 0, (tmp_path / "worker-a.log").read_text()
    finally:
        if first.poll() is None:
            first.kill()

    assert (killed.stop_reason, killed.lease_owner) == ("kill_switch", None)
    assert killed.error and "e2e drill" in killed.error
    assert killed.partial and killed.partial["plan"] and killed.partial["sources"] == [http_server.url("/pages/http3")]
    steps = await runtime.store.get_steps(run.id)
    assert (steps[-1].kind, steps[-1].name, steps[-1].ok) == ("event", "kill_switch", False)
    spend = await DailySpend(runtime.pool, cap_usd=None).today()
    assert spend.reserved_usd == 0  # the cancelled request's reservation was released, not left held
    assert spend.spent_usd == killed.cost_usd > 0
    messages = await runtime.store.load_messages(run.id)
    assert isinstance(messages[-1], ModelRequest)  # the unanswered request is committed; nothing after it

    off = await asyncio.to_thread(run_cli_process, env, "kill-switch", "off")
    assert off.returncode == 0, off.stderr
    assert run.id in off.stdout and "resumes" in off.stdout
    assert (await runtime.store.get_run(run.id)).status == "queued"

    second = start_worker(dict(env, RA_SCRIPT_LOG=str(script_log)), "--max-runs", "1", log=tmp_path / "worker-b.log")
    try:
        assert await asyncio.to_thread(second.wait, 60) == 0, (tmp_path / "worker-b.log").read_text()
    finally:
        if second.poll() is None:
            second.kill()
    final = await runtime.store.get_run(run.id)
    assert final.status == "completed", final.error
    assert final.report and len(final.report["citations"]) == 2
    assert final.attempts == 2 and final.usage.requests == 5
    # Completed calls ran once; only the one in flight at the flip (history of 7) ran again.
    assert model_calls(script_log) == Counter({1: 1, 3: 1, 5: 1, 7: 2, 9: 1})
    assert http_server.hits["/search"] == 1
    assert http_server.hits["/pages/http3"] == 1 and http_server.hits["/pages/http2"] == 1
    assert (await DailySpend(runtime.pool, cap_usd=None).today()).spent_usd == final.cost_usd


async def test_flip_cancels_an_in_flight_tool_call_and_the_same_worker_resumes_after_off(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    release = threading.Event()
    block_first_hit(http_server, "/pages/http2", release)
    run = await runtime.submit(QUESTION, model=CRASH_MODEL)
    waiting = await runtime.submit("What is QUIC?", model=CRASH_MODEL)
    script_log = tmp_path / "model-calls.jsonl"
    worker = start_worker(
        worker_env(settings, RA_SCRIPT_LOG=str(script_log)), "--concurrency", "1", log=tmp_path / "worker.log"
    )
    try:
        # plan, search and the first fetch have completed; the second fetch hangs on the server.
        await asyncio.to_thread(
            wait_for, lambda: http_server.hits["/pages/http2"] == 1, timeout=30, what="the second fetch to start"
        )
        change = await KillSwitch(runtime.pool).turn_on(reason="tool drill")
        assert change.running == 1
        killed, observed = await wait_status(runtime, run.id, "killed", within=KILL_DEADLINE)
        latency = await kill_latency(runtime, killed)
        print(f"kill latency (tool call): {latency:.3f}s flip→killed on the db clock; {observed:.3f}s observed")
        assert latency < KILL_DEADLINE
        assert not release.is_set()  # the fetch did not finish: it was cancelled

        await asyncio.sleep(1.5)  # while the switch is on, the worker claims nothing
        assert (await runtime.store.get_run(waiting.id)).status == "queued"
        assert (await runtime.store.get_run(run.id)).status == "killed"

        change = await KillSwitch(runtime.pool).turn_off()
        assert change.requeued == [run.id]
        final, _ = await wait_status(runtime, run.id, "completed", within=30)
        other, _ = await wait_status(runtime, waiting.id, "completed", within=30)
    finally:
        release.set()
        worker.terminate()
        await asyncio.to_thread(worker.wait, 10)

    assert final.report and len(final.report["citations"]) == 2
    assert final.attempts == 2 and final.usage.requests == 5 and final.usage.tool_calls == 4
    assert model_calls(script_log) == Counter({1: 1, 3: 1, 5: 1, 7: 1, 9: 1})  # no model call repeated
    assert other.attempts == 1
    # Each run searched once; the cancelled fetch alone was fetched again (the other run read the page cache).
    assert http_server.hits["/search"] == 2
    assert http_server.hits["/pages/http3"] == 1 and http_server.hits["/pages/http2"] == 2


async def test_in_process_run_is_killed_by_the_poll_when_no_notification_comes(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    capped = Runtime(pool=runtime.pool, settings=settings.model_copy(update={"daily_cap_usd": Decimal(5)}))
    script = ResearchScript(max_fetches=2)
    hanging = asyncio.Event()
    calls: Counter[int] = Counter()

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls[len(messages)] += 1
        if len(messages) == 5 and calls[5] == 1:  # the third model call hangs, the first time only
            hanging.set()
            await asyncio.Event().wait()  # never set: only the kill switch's cancellation ends it
        return script.decide(messages, info)

    model = FunctionModel(respond, model_name="scripted-research")
    task = asyncio.create_task(capped.research(QUESTION, model=model))
    await asyncio.wait_for(hanging.wait(), timeout=30)
    started = time.monotonic()
    # A bare UPDATE sends no NOTIFY: only the once-a-second poll can notice it.
    await runtime.pool.execute("UPDATE control_flags SET enabled = true, reason = 'silent' WHERE name = 'kill_switch'")
    result = await asyncio.wait_for(task, timeout=10)
    elapsed = time.monotonic() - started
    print(f"kill latency (poll only, in process): {elapsed:.3f}s")
    assert elapsed < KILL_DEADLINE
    assert (result.status, result.stop_reason) == ("killed", "kill_switch")
    assert result.partial and result.partial.plan
    spend = await DailySpend(runtime.pool, cap_usd=None).today()
    assert spend.reserved_usd == 0 and spend.spent_usd == result.cost_usd

    change = await KillSwitch(runtime.pool).turn_off()
    assert change.requeued == [result.run_id]
    run = await runtime.store.get_run(result.run_id)
    worker = Worker(capped, concurrency=1, exit_when_idle=True, models={run.config.model: model})
    [final] = await worker.run()
    assert final.status == "completed", final.error
    assert calls == Counter({1: 1, 3: 1, 5: 2, 7: 1, 9: 1})  # only the cancelled call ran again
    assert http_server.hits["/search"] == 1
