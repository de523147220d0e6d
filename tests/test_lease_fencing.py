"""A worker that lost its lease writes nothing (issue 14): SIGSTOP it in the middle of a fetch, let a
second worker take the run and finish it, SIGCONT the first. Its page text is stale; it must not reach
the store: not the run's sources, and not the shared page cache other runs read either.

The first worker runs with a long lease, so after SIGCONT its heartbeat is not due before the stalled
fetch returns: the write it then attempts is refused by the fence in the statement itself, not by a
heartbeat that happened to notice first.
"""

from __future__ import annotations

import signal
import threading
import uuid
from pathlib import Path

import pytest

from agent.api import Runtime
from agent.settings import Settings
from tests._http_server import LocalHTTPServer, Request, Response
from tests._processes import expire_lease, start_worker, wait_for, worker_env
from tests._web import ARTICLES, article_html, install_web

CRASH_MODEL = "factory:tests.scripted:crash_model"
PAGE = "/pages/http2"
STALE = "STALE: this text was fetched by the worker that lost its lease and must never be stored."
FRESH = "FRESH: this text was fetched by the worker that holds the lease now."


def _serve_stale_then_fresh(server: LocalHTTPServer, release: threading.Event) -> None:
    """The first request hangs until `release`, then answers STALE; every later one answers FRESH at once."""
    title, body = ARTICLES[PAGE]

    def handler(_request: Request) -> Response:
        first = server.hits[PAGE] == 1
        if first:
            release.wait(timeout=60)
        text = STALE if first else FRESH
        return Response(body=article_html(title, f"{text} {body}").encode(), headers={"Content-Type": "text/html"})

    server.route(PAGE, handler)


async def _cached_text(runtime: Runtime, url: str) -> str:
    """The page cache's text for `url` (every row, so a second row could not hide)."""
    rows = await runtime.pool.fetch("SELECT text FROM page_cache WHERE url = $1", url)
    assert len(rows) == 1, rows
    return str(rows[0]["text"])


@pytest.mark.parametrize("attempt", [1, 2])
async def test_a_paused_worker_that_lost_its_lease_writes_nothing(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path, attempt: int
) -> None:
    install_web(http_server)
    http_server.hits[PAGE] = 0
    release = threading.Event()
    _serve_stale_then_fresh(http_server, release)
    run = await runtime.submit(f"What changed in HTTP/3 compared to HTTP/2? ({attempt})", model=CRASH_MODEL)

    log_a = tmp_path / "worker-a.log"
    first = start_worker(worker_env(settings, RESEARCH_AGENT_LEASE_SECONDS="60"), log=log_a)
    try:
        wait_for(lambda: http_server.hits[PAGE] == 1, timeout=30, what="the first worker's fetch to start")
        first.send_signal(signal.SIGSTOP)
        await expire_lease(runtime.pool, run.id)  # its lease runs out while it is paused
        second = start_worker(worker_env(settings), "--max-runs", "1", log=tmp_path / "worker-b.log")
        assert second.wait(timeout=60) == 0, (tmp_path / "worker-b.log").read_text()
        done = await runtime.store.get_run(run.id)
        assert done.status == "completed", done.error
        sources_before = await runtime.store.load_sources(run.id)
        cached_before = await _cached_text(runtime, http_server.url(PAGE))
        assert FRESH in cached_before  # the second worker cached what it fetched
        effects_before = await runtime.store.load_tool_effects(run.id)
        audit_before = await runtime.store.audit_rows(run.id)

        release.set()  # the paused worker's fetch now has its (stale) answer waiting
        first.send_signal(signal.SIGCONT)
        short = run.id[:8]
        wait_for(
            lambda: sum(short in line for line in log_a.read_text().splitlines()) >= 2,
            timeout=30,
            what="the first worker to give the run up",
        )
    finally:
        release.set()
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.terminate()
            first.wait(timeout=30)

    after = await runtime.store.get_run(run.id)
    sources = await runtime.store.load_sources(run.id)
    page = next(p for url, p in sources.items() if url.endswith(PAGE))
    assert FRESH in page.text and STALE not in page.text  # the stale text never overwrote the fresh one
    assert sources == sources_before
    cached = await _cached_text(runtime, http_server.url(PAGE))
    assert STALE not in cached and cached == cached_before  # nor did it overwrite the shared page cache
    assert await runtime.store.load_tool_effects(run.id) == effects_before
    assert await runtime.store.audit_rows(run.id) == audit_before
    assert after.status == "completed" and after.report == done.report and after.message_count == done.message_count
    assert uuid.UUID(after.id) == uuid.UUID(run.id)
