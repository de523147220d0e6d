"""Crash recovery with real processes: SIGKILL a worker mid-run; a new worker process finishes it.

Nothing that completed before the kill is repeated: the scripted model logs every call (keyed by
the history length, which identifies the step) and the local HTTP server counts every request.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections import Counter
from pathlib import Path

from agent.api import Runtime
from agent.settings import Settings
from tests._http_server import LocalHTTPServer
from tests._processes import expire_lease, start_worker, wait_for, worker_env
from tests._web import block_first_hit, install_web

CRASH_MODEL = "factory:tests.scripted:crash_model"
QUESTION = "What changed in HTTP/3 compared to HTTP/2?"


def _model_calls(log: Path) -> list[dict[str, int]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _finish_with_second_worker(settings: Settings, tmp_path: Path, script_log: Path) -> None:
    env = worker_env(settings, RA_SCRIPT_LOG=str(script_log))
    second = start_worker(env, "--max-runs", "1", log=tmp_path / "worker-b.log")
    try:
        second.wait(timeout=60)
    except subprocess.TimeoutExpired:
        second.kill()
        raise
    assert second.returncode == 0, (tmp_path / "worker-b.log").read_text()


async def test_sigkill_during_tool_call_resumes_without_repeating_work(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    release = threading.Event()
    block_first_hit(http_server, "/pages/http2", release)
    run = await runtime.submit(QUESTION, model=CRASH_MODEL)
    script_log = tmp_path / "model-calls.jsonl"

    first = start_worker(worker_env(settings, RA_SCRIPT_LOG=str(script_log)), log=tmp_path / "worker-a.log")
    try:
        # plan, search and the first fetch have completed; the second fetch is in flight.
        wait_for(lambda: http_server.hits["/pages/http2"] == 1, timeout=30, what="the second fetch to start")
        before = await runtime.store.get_run(run.id)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        release.set()
        if first.poll() is None:
            first.kill()
    assert before.usage.requests == 4 and before.usage.tool_calls == 3

    # No shortcut here: the second worker claims the run only once the dead worker's lease has expired.
    _finish_with_second_worker(settings, tmp_path, script_log)

    final = await runtime.store.get_run(run.id)
    assert final.status == "completed", final.error
    assert final.report and len(final.report["citations"]) == 2
    assert final.attempts == 2
    calls = _model_calls(script_log)
    steps = Counter(call["messages"] for call in calls)
    assert all(count == 1 for count in steps.values()), f"a model call was repeated: {calls}"
    assert len({call["pid"] for call in calls}) == 2
    assert http_server.hits["/search"] == 1
    assert http_server.hits["/pages/http3"] == 1  # completed before the kill: not fetched again
    assert http_server.hits["/pages/http2"] == 2  # in flight at the kill: fetched again
    # usage carried over: 4 requests before the kill + 1 after
    assert final.usage.requests == 5
    assert final.usage.input_tokens > before.usage.input_tokens
    assert final.elapsed_seconds >= before.elapsed_seconds


async def test_sigkill_during_model_call_resumes_without_repeating_work(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    run = await runtime.submit(QUESTION, model=CRASH_MODEL)
    script_log = tmp_path / "model-calls.jsonl"
    mark = tmp_path / "hanging"

    # The 4th model call (history of 7 messages: after plan, search and one completed fetch) hangs.
    env = worker_env(settings, RA_SCRIPT_LOG=str(script_log), RA_SCRIPT_HANG_AT="7", RA_SCRIPT_HANG_MARK=str(mark))
    first = start_worker(env, log=tmp_path / "worker-a.log")
    try:
        wait_for(mark.exists, timeout=30, what="the model call to hang")
        before = await runtime.store.get_run(run.id)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert before.usage.requests == 3 and before.usage.tool_calls == 3

    await expire_lease(runtime.pool, run.id)  # the tool-call test above waits for a real expiry
    _finish_with_second_worker(settings, tmp_path, script_log)

    final = await runtime.store.get_run(run.id)
    assert final.status == "completed", final.error
    calls = _model_calls(script_log)
    by_step = Counter(call["messages"] for call in calls)
    # Completed calls ran once; only the interrupted one (history of 7) ran again.
    assert by_step == Counter({1: 1, 3: 1, 5: 1, 7: 2, 9: 1}), calls
    assert http_server.hits["/search"] == 1
    assert http_server.hits["/pages/http3"] == 1
    assert http_server.hits["/pages/http2"] == 1
    assert final.usage.requests == 5
    messages = await runtime.store.load_messages(run.id)
    assert len(messages) == final.message_count == 11  # 5 responses, 6 requests (last: final_result return)
