"""Poison inputs end, and never starve the event loop (issue 14, point 3: the tool-argument part).

A model that calls a tool with a 5 MB argument gets a structured refusal at once, before the arguments
are validated or scanned; the audit says why, the history keeps a stand-in rather than 5 MB, and the run
ends normally. The final answer (the output tool) is held to the same limit: a 5 MB answer is refused the
same way (the model is asked again, with the structured error), and one sent again and again stops the run.
CPU-heavy work on hostile input (a 5 MB argument, a 5 MB page to extract and redact) runs off the event loop
or in short slices, so a concurrent ticker (standing in for the lease heartbeat) keeps ticking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime
from tests._http_server import LocalHTTPServer
from tests._web import install_web
from tests.scripted import MISSING, NOT_ANSWERED, read_history, scripted_calls
from tools import FetchLimits, SearchHit, fetch_url

FIVE_MB = 5_000_000
MAX_STALL_SECONDS = 1.0
"""The longest the event loop may be kept from ticking by this process's own work (CPU time). The failure this
guards against held it for ~17 s and starved the lease heartbeat (renewed every third of a 15 s lease); 0.2 s
was tighter than a 2-core machine running two test workers and Postgres allows (one run measured 0.32 s)."""
MAX_WALL_GAP_SECONDS = 3.0
"""A loose wall-clock bound: it also counts time the whole process waited for a CPU on a busy machine."""
SECRET = "sk-live-4f9Qx2Lm8Zr1Tb7Wc3Vn6Yp0"


@dataclass
class Ticker:
    """Ticks every `interval` on the event loop and records, for each gap between ticks, the wall time and the
    CPU time this process spent meanwhile (in any thread). A thread holding the GIL, or a garbage collection,
    shows as CPU time; the process merely waiting for a CPU (other test runs on the machine) does not."""

    interval: float = 0.01
    gaps: list[float] = field(default_factory=list)
    stalls: list[float] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):  # a tick: the stop event, or `interval` passed
                await asyncio.wait_for(self.stop.wait(), timeout=self.interval)
            now_wall, now_cpu = time.perf_counter(), time.process_time()
            self.gaps.append(now_wall - wall)
            self.stalls.append(min(now_cpu - cpu, now_wall - wall))  # (two threads can add CPU time at once)
            wall, cpu = now_wall, now_cpu

    def check(self) -> None:
        worst_stall, worst_gap = max(self.stalls, default=0.0), max(self.gaps, default=0.0)
        assert len(self.gaps) >= 3, "the ticker hardly ran"
        assert worst_stall < MAX_STALL_SECONDS, f"the event loop was kept busy for {worst_stall:.3f}s"
        assert worst_gap < MAX_WALL_GAP_SECONDS, f"the event loop did not tick for {worst_gap:.3f}s"


@dataclass
class RecordingBackend:
    """A search backend in memory, which records every query it is sent (no HTTP client to build per run:
    creating one loads the CA bundle on the event loop, ~0.1 s, which would blur what the ticker measures)."""

    name: str = "recording"
    queries: list[str] = field(default_factory=list)

    async def search(self, query: str, *, max_results: int) -> list[SearchHit]:
        self.queries.append(query)
        return []


@asynccontextmanager
async def ticking() -> AsyncIterator[Ticker]:
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    try:
        yield ticker
    finally:
        ticker.stop.set()
        await task


async def test_a_5_mb_argument_is_refused_unread_and_the_run_ends_normally(runtime: Runtime) -> None:
    backend = RecordingBackend()
    model = scripted_calls(
        [
            ("record_plan", {"sub_questions": ["What is QUIC?"]}),
            ("web_search", {"query": "x" * FIVE_MB}),  # one token: the scripted model's usage estimate stays small
        ]
    )
    # A first, ordinary run warms the process up (imports, first-use compilation), so the ticker below measures
    # the 5 MB call and not one-time costs.
    warm_up = scripted_calls([("record_plan", {"sub_questions": ["What is QUIC?"]})])
    assert (await runtime.research("What is QUIC?", model=warm_up, search_backend=backend)).status == "completed"
    started = time.perf_counter()
    async with ticking() as ticker:
        result = await runtime.research("What is QUIC?", model=model, search_backend=backend)
    seconds = time.perf_counter() - started

    assert result.status == "completed", result.error
    assert seconds < 10, f"the run took {seconds:.1f}s"
    ticker.check()

    # The model got a structured refusal; nothing was sent.
    steps = (await runtime.get_run(result.run_id)).steps
    (search,) = [s for s in steps if s.name == "web_search"]
    assert not search.ok and "arguments_too_large" in search.summary
    assert backend.queries == []

    # The audit says why, with a stand-in for the arguments, never the 5 MB.
    rows = await runtime.store.audit_rows(result.run_id)
    (refusal,) = [r for r in rows if r.tool == "web_search"]
    assert refusal.decision == "deny"
    assert "5,000,012 bytes, over the 65,536-byte limit" in refusal.reason and "not read" in refusal.reason
    assert len(str(refusal.args)) < 200

    # The history (and so every later request, step and span) keeps the stand-in, not the argument.
    async with runtime.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT sum(octet_length(message::text)) FROM run_messages WHERE run_id = $1::uuid", result.run_id
        )
    assert stored < 100_000, f"run_messages holds {stored} bytes"


async def test_the_limit_is_a_setting(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server)
    settings = runtime.settings.model_copy(update={"max_tool_args_bytes": 2_048})
    rt = Runtime(pool=runtime.pool, settings=settings)
    model = scripted_calls(
        [("record_plan", {"sub_questions": ["What is QUIC?"]}), ("web_search", {"query": "quic " * 500})]
    )
    result = await rt.research("What is QUIC?", model=model)

    assert result.status == "completed"
    (refusal,) = [r for r in await rt.store.audit_rows(result.run_id) if r.tool == "web_search"]
    assert refusal.decision == "deny" and "over the 2,048-byte limit" in refusal.reason
    assert http_server.hits["/search"] == 0


async def test_the_event_loop_keeps_ticking_while_a_5_mb_page_is_extracted_and_redacted(
    http_server: LocalHTTPServer,
) -> None:
    paragraph = "<p>Note {}: HTTP/3 runs over QUIC instead of TCP, so a lost packet only stalls its own stream.</p>\n"
    body = "".join(paragraph.format(i) for i in range(FIVE_MB // len(paragraph)))
    html = (
        f"<html><head><title>Big page {SECRET}</title><script>{'var x = 1;' * 50_000}</script></head><body>"
        f"<article><h1>Big page</h1><p>The deploy key is {SECRET} and {' '.join(SECRET)}.</p>{body}</article>"
        "</body></html>"
    )
    http_server.html("/big", html)

    async with ticking() as ticker:
        result, page = await fetch_url(
            http_server.url("/big"),
            limits=FetchLimits(max_bytes=8_000_000, timeout_seconds=120),
            allow_hosts=frozenset({http_server.host}),
            max_chars=12_000,
            cache=None,
            cache_ttl=timedelta(0),
        )

    ticker.check()
    assert page is not None and result.ok, result
    # Extraction was bounded (scripts dropped, the first 1,000,000 characters of HTML read, and it says so) ...
    assert 500_000 < len(page.text) < 1_000_000 and "var x" not in page.text
    assert page.text.endswith("characters of this page's HTML were read ...]")
    # ... and the text and title were redacted before anything else saw them.
    assert SECRET not in page.text + page.title and "4f9Qx2Lm8Zr1Tb7Wc3Vn6Yp0" not in page.text.replace(" ", "")
    assert page.text.count("[REDACTED:openai_key]") == 2 and page.title == "Big page [REDACTED:openai_key]"


def huge_answer_model(huge_answers: int, seen: list[str]) -> FunctionModel:
    """Plans, then sends a 5 MB final answer `huge_answers` times (a secret in it), then a short honest one;
    records in `seen` every retry prompt it is sent."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        state = read_history(messages)
        seen[:] = state.retry_prompts
        output = info.output_tools[0].name
        if not state.planned:
            return ModelResponse(parts=[ToolCallPart("record_plan", {"sub_questions": ["What is QUIC?"]})])
        if len(state.retry_prompts) < huge_answers:
            answer = f"QUIC {SECRET} " + "x" * FIVE_MB
            return ModelResponse(parts=[ToolCallPart(output, {"answer": answer, "citations": []})])
        report = {"answered": False, "answer": NOT_ANSWERED, "citations": [], "unresolved": [MISSING]}
        return ModelResponse(parts=[ToolCallPart(output, report)])

    return FunctionModel(respond)


async def _stored_bytes(runtime: Runtime, run_id: str) -> int:
    async with runtime.pool.acquire() as conn:
        total: int = await conn.fetchval(
            "SELECT coalesce(sum(octet_length(message::text)), 0) FROM run_messages WHERE run_id = $1::uuid", run_id
        )
    return total


async def test_a_5_mb_final_answer_is_refused_with_a_structured_error_and_asked_again(runtime: Runtime) -> None:
    backend = RecordingBackend()
    warm_up = scripted_calls([("record_plan", {"sub_questions": ["What is QUIC?"]})])
    assert (await runtime.research("What is QUIC?", model=warm_up, search_backend=backend)).status == "completed"
    seen: list[str] = []
    started = time.perf_counter()
    async with ticking() as ticker:
        result = await runtime.research("What is QUIC?", model=huge_answer_model(1, seen), search_backend=backend)
    seconds = time.perf_counter() - started

    assert result.status == "completed", result.error
    assert result.report is not None and result.report.answer == NOT_ANSWERED  # the second, short answer
    assert seconds < 10, f"the run took {seconds:.1f}s"
    ticker.check()

    # The model was told, in a structured error, why its answer was refused and what to do.
    (prompt,) = seen
    error = json.loads(prompt)["error"]
    assert error.startswith("arguments_too_large: Refused by the tool policy: the arguments are 5,000,0"), error
    assert "over the 65,536-byte limit; they were not read" in error and "again, under 65,536 bytes" in error

    # Audited like any refused call, with the stand-in; and the 5 MB was never kept (nor scrubbed and kept).
    rows = await runtime.store.audit_rows(result.run_id)
    (refusal,) = [r for r in rows if r.decision == "deny"]
    assert refusal.tool.startswith("final_result") and "final answer refused" in refusal.reason
    assert "5,000,0" in refusal.reason and "over the 65,536-byte limit" in refusal.reason
    assert len(str(refusal.args)) < 200
    assert await _stored_bytes(runtime, result.run_id) < 100_000
    names = [e.name for e in await runtime.store.events(result.run_id)]
    assert names.count("tool.blocked") == 1


async def test_a_model_that_keeps_sending_a_5_mb_final_answer_is_stopped(runtime: Runtime) -> None:
    seen: list[str] = []
    result = await runtime.research(
        "What is QUIC?", model=huge_answer_model(10, seen), search_backend=RecordingBackend()
    )

    assert result.status == "budget_exceeded" and result.stop_reason == "loop", (result.status, result.error)
    assert result.error is not None and "refused 3 times" in result.error
    assert len(seen) == 2  # two structured refusals, then the third identical answer stopped the run
    assert await _stored_bytes(runtime, result.run_id) < 100_000
    refusals = [r for r in await runtime.store.audit_rows(result.run_id) if r.tool.startswith("final_result")]
    assert [r.decision for r in refusals] == ["deny"] * 3
