"""The poison run of issue 14: a model that calls a tool with a 5 MB argument, with two worker processes.

Before, scrubbing the argument blocked the event loop for ~17 s, the heartbeat starved, the lease expired,
and the run changed hands every 15 s forever. Now the argument is refused by its size before anything reads
it, and the run ends with a clear status long before 60 s, executed once.
"""

from __future__ import annotations

import time
from pathlib import Path

from agent.api import Runtime
from agent.settings import Settings
from tests._http_server import LocalHTTPServer
from tests._processes import start_worker, wait_for, worker_env
from tests._web import install_web

HUGE_ARGS_MODEL = "factory:tests.scripted:huge_args_model"


async def test_a_5_mb_argument_with_two_workers_ends_clearly_within_a_minute(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    run = await runtime.submit("What changed in HTTP/3 compared to HTTP/2?", model=HUGE_ARGS_MODEL)
    workers = [start_worker(worker_env(settings), log=tmp_path / f"worker-{name}.log") for name in "ab"]
    started = time.monotonic()
    try:
        finished: list[str] = []

        def ended() -> bool:
            finished[:] = [
                line
                for p in tmp_path.glob("worker-*.log")
                for line in p.read_text().splitlines()
                if line.startswith("finished") and run.id[:8] in line
            ]
            return bool(finished)

        wait_for(ended, timeout=60, what="the poison run to end")
        took = time.monotonic() - started
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)

    final = await runtime.store.get_run(run.id)
    assert final.status == "completed" and final.report is not None and final.report["answered"] is False
    assert final.attempts == 1 and len(finished) == 1  # executed once: it never changed hands
    assert took < 60
    audit = await runtime.store.audit_rows(run.id)
    refused = [row for row in audit if row.tool == "web_search"]
    assert len(refused) == 1 and refused[0].decision == "deny" and "over the 65,536-byte limit" in refused[0].reason
    assert http_server.hits["/search"] == 0  # the 5 MB query never left
    size = await runtime.pool.fetchval(
        "SELECT sum(length(message::text)) FROM run_messages WHERE run_id = $1::uuid", run.id
    )
    assert size < 200_000  # the history keeps a stand-in, not 5 MB
