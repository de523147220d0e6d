"""Interrupting a run (Ctrl-C during `ask`): it ends `cancelled` / `interrupted`, a terminal state with its
committed turns intact and its lease released, and `resume` plus a worker finish it from the last commit.

Two ways in, both at the API: `Runtime.interrupt()` (what a SIGINT handler calls: `research` returns the
cancelled result) and cancelling the task awaiting `research` (asyncio.run's own Ctrl-C handling: the run is
finished before the `CancelledError` goes on). The last test sends SIGINT to a real `research-agent ask`
and resumes the run through the command line.
Nothing completed is repeated on resume: the scripted model counts its calls by history length (which
identifies the step) and the local HTTP server counts every request, as in tests/test_kill_switch.py.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO

import pytest
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime
from agent.durable.inline import CALLER_CANCELLED, INTERRUPTED
from agent.durable.store import RunRecord
from agent.durable.worker import Worker
from agent.events import ProgressEvent
from tests._cli import run_cli as cli
from tests._http_server import LocalHTTPServer
from tests._processes import ROOT, wait_for, worker_env
from tests._web import block_first_hit, install_web
from tests.scripted import ResearchScript

QUESTION = "What changed in HTTP/3 compared to HTTP/2?"
ALL_STEPS_ONCE = Counter({1: 1, 3: 1, 5: 1, 7: 1, 9: 1})
"""plan, search, fetch, fetch, answer: the model sees 1, 3, 5, 7 and 9 messages."""


class CountingModel:
    """The scripted research model, counting its calls by history length; the call at `hang_at` hangs once."""

    def __init__(self, *, hang_at: int | None = None) -> None:
        self.script = ResearchScript(max_fetches=2)
        self.calls: Counter[int] = Counter()
        self.hang_at = hang_at
        self.hanging = asyncio.Event()
        self.model = FunctionModel(self.respond, model_name="scripted-research")

    async def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls[len(messages)] += 1
        if len(messages) == self.hang_at and self.calls[self.hang_at] == 1:
            self.hanging.set()
            await asyncio.Event().wait()  # a condition never met: only the interrupt's cancellation ends it
        return self.script.decide(messages, info)


async def resume_with_a_worker(runtime: Runtime, run_id: str, model: FunctionModel) -> RunRecord:
    """`Runtime.resume` (what `runs resume` calls), then an in-process worker drains the queue."""
    queued = await runtime.resume(run_id)
    assert (queued.status, queued.stop_reason, queued.lease_owner) == ("queued", None, None)
    worker = Worker(runtime, concurrency=1, exit_when_idle=True, models={queued.config.model: model})
    [final] = await worker.run()
    assert final.id == queued.id
    return final


async def test_interrupt_mid_model_call_ends_the_run_cancelled_and_resume_finishes_it(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    scripted = CountingModel(hang_at=7)  # the 4th model call: after plan, search and one fetch
    events: list[ProgressEvent] = []
    task = asyncio.create_task(runtime.research(QUESTION, model=scripted.model, progress=events.append))
    await asyncio.wait_for(scripted.hanging.wait(), timeout=30)

    [run_id] = runtime.interrupt()  # what a SIGINT handler calls
    result = await asyncio.wait_for(task, timeout=30)
    assert (result.run_id, result.status, result.stop_reason) == (run_id, "cancelled", "interrupted")
    assert result.error == INTERRUPTED
    assert result.report is None and result.partial is not None
    assert result.partial.plan and result.partial.sources == [http_server.url("/pages/http3")]
    assert runtime.interrupt() == []  # nothing runs any more
    assert (events[-1].kind, events[-1].message) == ("status", "cancelled (interrupted)")

    # Terminal and released, with every completed turn committed: 3 model calls, 3 tool results.
    run = await runtime.store.get_run(run_id)
    assert (run.status, run.lease_owner) == ("cancelled", None) and run.finished_at is not None
    assert (run.usage.requests, run.usage.tool_calls) == (3, 3)
    messages = await runtime.store.load_messages(run_id)
    assert len(messages) == 7 and isinstance(messages[-1], ModelRequest)  # the unanswered request, nothing after
    steps = await runtime.store.get_steps(run_id)
    assert (steps[-1].kind, steps[-1].name, steps[-1].ok, steps[-1].summary) == (
        "event",
        "interrupted",
        False,
        INTERRUPTED,
    )

    final = await resume_with_a_worker(runtime, run_id, scripted.model)
    assert final.status == "completed", final.error
    assert final.report and len(final.report["citations"]) == 2
    assert (final.attempts, final.usage.requests, final.usage.tool_calls) == (2, 5, 4)
    # Only the call in flight at the interrupt ran again.
    assert scripted.calls == ALL_STEPS_ONCE + Counter({7: 1})
    assert http_server.hits["/search"] == 1
    assert http_server.hits["/pages/http3"] == 1 and http_server.hits["/pages/http2"] == 1


async def test_cancelling_the_caller_mid_tool_call_finishes_the_run_cancelled_before_propagating(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    release = threading.Event()
    block_first_hit(http_server, "/pages/http2", release)
    scripted = CountingModel()
    try:
        task = asyncio.create_task(runtime.research(QUESTION, model=scripted.model))
        # plan, search and the first fetch have completed; the second fetch hangs on the server.
        await asyncio.to_thread(
            wait_for, lambda: http_server.hits["/pages/http2"] == 1, timeout=30, what="the second fetch to start"
        )
        task.cancel()  # as asyncio.run does on Ctrl-C when no handler is installed
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not release.is_set()  # the fetch never finished: it was cancelled

        [run] = await runtime.list_runs()  # already finished when the CancelledError arrived
        assert (run.status, run.stop_reason, run.error, run.lease_owner) == (
            "cancelled",
            "interrupted",
            CALLER_CANCELLED,
            None,
        )
        assert (run.usage.requests, run.usage.tool_calls) == (4, 3)
        final = await resume_with_a_worker(runtime, run.id, scripted.model)
    finally:
        release.set()

    assert final.status == "completed", final.error
    assert final.usage.requests == 5
    assert scripted.calls == ALL_STEPS_ONCE  # no model call repeated
    assert http_server.hits["/search"] == 1
    # The cancelled fetch alone ran again.
    assert http_server.hits["/pages/http3"] == 1 and http_server.hits["/pages/http2"] == 2


async def test_an_interrupt_while_the_run_is_being_submitted_cancels_it_before_any_model_call(
    runtime: Runtime, http_server: LocalHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_web(http_server)
    scripted = CountingModel()
    claim_run = runtime.store.claim_run
    answers: list[list[str]] = []

    async def interrupt_then_claim(run_id: str, *, worker_id: str, lease_seconds: float) -> RunRecord | None:
        answers.append(runtime.interrupt())  # the run is submitted but not yet claimed by this call
        return await claim_run(run_id, worker_id=worker_id, lease_seconds=lease_seconds)

    monkeypatch.setattr(runtime.store, "claim_run", interrupt_then_claim)
    result = await asyncio.wait_for(runtime.research(QUESTION, model=scripted.model), timeout=30)
    assert answers == [[]]  # no run id yet, but the call is marked

    assert (result.status, result.stop_reason, result.error) == ("cancelled", "interrupted", INTERRUPTED)
    assert scripted.calls == Counter() and http_server.hits["/search"] == 0
    final = await resume_with_a_worker(runtime, result.run_id, scripted.model)
    assert final.status == "completed", final.error
    assert scripted.calls == ALL_STEPS_ONCE


async def test_only_stopped_runs_resume(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server)
    scripted = CountingModel()
    queued = await runtime.submit(QUESTION, model=scripted.model)
    with pytest.raises(Exception, match="is queued; only stopped runs can be resumed"):
        await runtime.resume(queued.id)


def start_ask(env: dict[str, str]) -> subprocess.Popen[str]:
    """`research-agent ask QUESTION` as a real process, with the scripted model of the crash tests."""
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "ask", QUESTION, "--model", "factory:tests.scripted:crash_model"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(stream: IO[str], text: str) -> str:
    """Lines of `stream` up to the first containing `text` (or its end), joined."""
    lines: list[str] = []
    for line in stream:
        lines.append(line)
        if text in line:
            break
    return "".join(lines)


async def test_sigint_to_a_real_ask_process_leaves_the_run_cancelled_and_resumable(
    runtime: Runtime, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    """Ctrl-C to a real `research-agent ask` mid model call: the run ends `cancelled`, the command prints its
    id and the command that resumes it and exits 130, without a traceback even when Ctrl-C is pressed again
    while it finishes; `research-agent runs resume` then queues it and a worker finishes it from its last
    committed turn. The time from the signal to the exit is printed (`pytest -s`), not asserted."""
    install_web(http_server)
    mark, calls = tmp_path / "hanging", tmp_path / "calls.jsonl"
    env = worker_env(runtime.settings, RA_SCRIPT_LOG=str(calls))
    ask = start_ask(dict(env, RA_SCRIPT_HANG_AT="7", RA_SCRIPT_HANG_MARK=str(mark)))
    assert ask.stdout is not None and ask.stderr is not None
    try:
        await asyncio.to_thread(wait_for, mark.exists, timeout=60, what="the model call to hang")
        ask.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        stderr = await asyncio.wait_for(asyncio.to_thread(read_until, ask.stderr, "interrupted:"), timeout=30)
        ask.send_signal(signal.SIGINT)  # again, while the run finishes (a no-op once the process has exited)
        stderr += await asyncio.wait_for(asyncio.to_thread(ask.stderr.read), timeout=30)
        stdout = await asyncio.wait_for(asyncio.to_thread(ask.stdout.read), timeout=30)
        await asyncio.to_thread(ask.wait, timeout=30)
        print(f"\nSIGINT -> exit: {time.monotonic() - signalled:.3f}s")
    finally:
        if ask.poll() is None:
            ask.kill()
    assert ask.returncode == 130, stderr  # the conventional exit status after SIGINT
    assert "Traceback" not in stderr, stderr

    [run] = await runtime.list_runs()
    assert (run.status, run.stop_reason, run.lease_owner) == ("cancelled", "interrupted", None), stderr
    assert (run.usage.requests, len(await runtime.store.load_messages(run.id))) == (3, 7)
    assert "interrupted: stopping the run" in stderr, stderr
    assert f"run {run.id} interrupted" in stderr and f"research-agent runs resume {run.id}\n" in stderr
    assert "No report: cancelled (interrupted)" in stdout and f"run {run.id} · cancelled" in stdout

    resumed = await asyncio.to_thread(cli, env, "runs", "resume", run.id)
    assert (resumed.returncode, resumed.stdout.strip()) == (0, f"queued {run.id}"), resumed.stderr
    worked = await asyncio.to_thread(cli, env, "worker", "--exit-when-idle")
    assert worked.returncode == 0, worked.stderr
    final = await runtime.store.get_run(run.id)
    assert (final.status, final.attempts, final.usage.requests) == ("completed", 2, 5), final.error
    assert f"finished  {run.id[:8]}" in worked.stderr and "completed  attempt 2" in worked.stderr
    # From the last committed turn: only the model call in flight at the interrupt ran again; no fetch did.
    assert [json.loads(line)["messages"] for line in calls.read_text().splitlines()] == [1, 3, 5, 7, 7, 9]
    assert http_server.hits["/search"] == 1
    assert http_server.hits["/pages/http3"] == 1 and http_server.hits["/pages/http2"] == 1
