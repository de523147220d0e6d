"""The provider circuit breaker and shared rate limits (agent/durable/providers.py), through the real model path.

Runs name their model (`openai:fake-model`), resolved by `agent.models` against the fake OpenAI-compatible
server (tests/_fake_openai.py), which scripts 500s and 429s; worker processes (tests/_processes.py) share
the breaker and the rate ledger through the test's database. Periods are short (settings), and tests wait
on conditions (the table, the fake's log), not on sleeps.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.retries import wait_retry_after
from tenacity import RetryCallState

from agent.api import ResearchResult, Runtime
from agent.durable.providers import CircuitOpenError, is_provider_fault, provider_health
from agent.models import jittered
from agent.settings import Settings
from tests._fake_openai import FakeOpenAI, Fault
from tests._http_server import LocalHTTPServer
from tests._processes import start_worker, until, wait_for, worker_env
from tests._web import ARTICLES, install_web

QUESTION = "What changed in HTTP/3 compared to HTTP/2?"
QUOTE = "HTTP/3 runs over QUIC instead of TCP."
PRIMARY, FALLBACK = "fake-model", "fallback-model"
KEY = f"openai:{PRIMARY}"
PLAN, SEARCH, FETCH, ANSWER = 2, 4, 6, 8
ALL_STEPS = Counter({PLAN: 1, SEARCH: 1, FETCH: 1, ANSWER: 1})
DOWN = Fault(500, "primary is down")


@pytest.fixture
def fake(http_server: LocalHTTPServer) -> Iterator[FakeOpenAI]:
    urls = install_web(http_server)
    server = FakeOpenAI(http_server, page_url=urls[0], quote=QUOTE, title=ARTICLES["/pages/http3"][0])
    try:
        yield server
    finally:
        server.release.set()


def breaker_settings(base: Settings, fake: FakeOpenAI, **overrides: Any) -> Settings:
    """The test's database and fixture web; the model served by the fake; short breaker periods."""
    values: dict[str, Any] = {
        "database_url": base.database_url,
        "data_dir": base.data_dir,
        "search_backend": "searxng",
        "searxng_url": base.searxng_url,
        "fetch_allow_hosts": base.fetch_allow_hosts,
        "lease_seconds": base.lease_seconds,
        "worker_poll_seconds": base.worker_poll_seconds,
        "model_prices": base.model_prices,
        "critic_model": base.critic_model,
        "model": KEY,
        "openai_base_url": fake.base_url,
        "openai_api_key": "test-key",
        "provider_max_retries": 1,
        "provider_max_wait_seconds": 0.2,
        "breaker_open_seconds": 1.5,
        "breaker_max_wait_seconds": 0.0,
    }
    return Settings(**{**values, **overrides})


def recording(arrivals: list[float]) -> Any:
    """A fake `rule` that faults nothing and notes each request's wall-clock arrival (the database's clock)."""

    def rule(model: str, step: int) -> Fault | None:
        arrivals.append(time.time())
        return None

    return rule


def in_window(at: float, window: float, *, grace: float) -> int | None:
    """The window (by the wall clock, aligned as the database aligns them) `at` falls in, None in its first `grace`
    seconds: a request reserved at the very end of a window may arrive a few milliseconds into the next."""
    return math.floor(at / window) if (at / window) % 1 * window >= grace else None


def rate_limited(arrivals: list[float], *, rpm: int, window: float, grace: float = 0.1) -> Any:
    """A fake `rule` that behaves as a provider limited to `rpm` requests per window: over it, a 429."""

    def rule(model: str, step: int) -> Fault | None:
        arrivals.append(now := time.time())
        current = in_window(now, window, grace=grace)
        if current is not None and sum(in_window(t, window, grace=grace) == current for t in arrivals) > rpm:
            return Fault(429, "Rate limit reached", headers={"Retry-After": "1"})
        return None

    return rule


def runtime_with(runtime: Runtime, settings: Settings) -> Runtime:
    return Runtime(pool=runtime.pool, settings=settings)


async def breaker_row(runtime: Runtime) -> dict[str, Any] | None:
    row = await runtime.pool.fetchrow("SELECT * FROM provider_health WHERE key = $1", KEY)
    return dict(row) if row else None


def assert_completed(result: ResearchResult) -> None:
    assert result.status == "completed", result.error
    assert result.report is not None and result.report.citations


# --- (a) one process: open, fail over, wait or fail, probe, close -------------------------------------


async def test_five_failures_open_the_breaker_fallback_answers_without_calling_the_broken_model(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI
) -> None:
    fake.rule = lambda model, step: DOWN if model == PRIMARY else None
    alone = runtime_with(runtime, breaker_settings(settings, fake, breaker_open_seconds=30))

    # Five runs fail on the primary at once: each fails once, after its transport retry (2 HTTP attempts).
    failed = await asyncio.gather(*(alone.research(QUESTION) for _ in range(5)))

    assert {(r.status, r.stop_reason) for r in failed} == {("failed", "provider_error")}
    assert len(fake.attempts(model=PRIMARY)) == 10
    row = await breaker_row(runtime)
    assert row is not None and row["state"] == "open" and row["consecutive_failures"] == 5
    assert "500" in row["last_error"] and "primary is down" in row["last_error"]
    [health] = await provider_health(runtime.pool, settings=alone.settings)
    assert (health.key, health.state, health.consecutive_failures) == (KEY, "open", 5)
    assert health.open_seconds_left is not None and 25 < health.open_seconds_left <= 30

    # While open: a run with a fallback is answered by it, and the primary is never called.
    before = len(fake.attempts(model=PRIMARY))
    with_fallback = runtime_with(
        runtime, breaker_settings(settings, fake, breaker_open_seconds=30, fallback_models=[f"openai:{FALLBACK}"])
    )
    answered = await with_fallback.research(QUESTION)
    assert_completed(answered)
    assert len(fake.attempts(model=PRIMARY)) == before
    assert fake.successes_by_step(model=FALLBACK) == ALL_STEPS
    view = await with_fallback.get_run(answered.run_id)
    assert [s.name for s in view.steps if s.kind == "model"] == [FALLBACK] * 4

    # A run with no fallback and no patience (breaker_max_wait_seconds=0) fails at once, saying why.
    refused = await alone.research(QUESTION)
    assert (refused.status, refused.stop_reason) == ("failed", "provider_error")
    assert refused.error is not None and CircuitOpenError.__name__ in refused.error
    assert f"circuit breaker open for {KEY}" in refused.error
    assert len(fake.attempts(model=PRIMARY)) == before


async def test_a_run_without_fallback_waits_then_probes_and_two_successes_close_the_breaker(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI
) -> None:
    fake.rule = lambda model, step: DOWN if model == PRIMARY else None
    failing = runtime_with(runtime, breaker_settings(settings, fake))
    await asyncio.gather(*(failing.research(QUESTION) for _ in range(5)))
    row = await breaker_row(runtime)
    assert row is not None and row["state"] == "open"
    opened_at = time.time()  # within milliseconds of row["opened_at"]: same machine, same clock

    # The provider recovers; a patient run waits for the open period, then its requests are the probes.
    patient = runtime_with(runtime, breaker_settings(settings, fake, breaker_max_wait_seconds=30.0))
    calls_before = len(fake.calls)
    walls: list[float] = []
    fake.rule = recording(walls)

    result = await patient.research(QUESTION)

    assert_completed(result)
    new_calls = fake.calls[calls_before:]
    assert [c.status for c in new_calls] == [200] * 4 and all(c.model == PRIMARY for c in new_calls)
    assert walls[0] >= row["opened_at"].timestamp() + 1.5 - 0.05, "the provider was called while the breaker was open"
    assert walls[0] - opened_at < 5
    row = await breaker_row(runtime)
    assert row is not None
    assert (row["state"], row["consecutive_failures"], row["half_open_successes"]) == ("closed", 0, 2)


async def test_a_failed_probe_opens_the_breaker_again_for_a_full_period(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI
) -> None:
    fake.rule = lambda model, step: DOWN if model == PRIMARY else None
    period = 3.0  # long enough that the impatient run below is refused before it ends, even on a busy machine
    rt = runtime_with(runtime, breaker_settings(settings, fake, breaker_open_seconds=period))
    await asyncio.gather(*(rt.research(QUESTION) for _ in range(5)))
    first = await breaker_row(runtime)
    assert first is not None and first["state"] == "open"

    impatient = breaker_settings(settings, fake, breaker_open_seconds=period, breaker_max_wait_seconds=0.5)
    patient = runtime_with(runtime, impatient)
    before = len(fake.attempts(model=PRIMARY))
    probed = await patient.research(QUESTION)  # waits, but not the whole period: refused
    assert probed.status == "failed" and probed.error and "circuit breaker" in probed.error
    assert len(fake.attempts(model=PRIMARY)) == before

    wait_seconds = max(0.0, first["opened_at"].timestamp() + period - time.time())
    waiting = breaker_settings(settings, fake, breaker_open_seconds=period, breaker_max_wait_seconds=wait_seconds + 5)
    patient = runtime_with(runtime, waiting)
    probed = await patient.research(QUESTION)  # the probe: still down
    assert (probed.status, probed.stop_reason) == ("failed", "provider_error")
    assert len(fake.attempts(model=PRIMARY)) == before + 2  # one probe, retried once by the transport
    again = await breaker_row(runtime)
    assert again is not None and again["state"] == "open" and again["opened_at"] > first["opened_at"]
    assert again["consecutive_failures"] == 6 and again["probe_until"] is None


def test_only_provider_faults_count() -> None:
    assert is_provider_fault(ModelHTTPError(500, "m"))
    assert is_provider_fault(ModelHTTPError(429, "m"))
    assert is_provider_fault(ModelHTTPError(503, "m"))
    assert not is_provider_fault(ModelHTTPError(400, "m", body="Invalid schema"))
    assert not is_provider_fault(ModelHTTPError(401, "m"))
    assert not is_provider_fault(CircuitOpenError(KEY, "m", state="open", retry_in=1.0))
    assert not is_provider_fault(ValueError("ours"))
    assert not is_provider_fault(asyncio.CancelledError())


# --- (b) two worker processes share the breaker ------------------------------------------------------


def fake_worker_env(settings: Settings, fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return worker_env(
        settings,
        RESEARCH_AGENT_OPENAI_BASE_URL=fake.base_url,
        RESEARCH_AGENT_OPENAI_API_KEY="test-key",
        RESEARCH_AGENT_PROVIDER_MAX_RETRIES="0",
        RESEARCH_AGENT_PROVIDER_MAX_WAIT_SECONDS="0.2",
        **extra,
    )


def finish(worker: subprocess.Popen[bytes], log: Path, *, timeout: float = 30) -> None:
    try:
        worker.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise
    assert worker.returncode == 0, log.read_text()


async def until_finished(runtime: Runtime, run_ids: list[str]) -> None:
    async def statuses() -> set[str]:
        return {(await runtime.store.get_run(run_id)).status for run_id in run_ids}

    await until(statuses, lambda found: not found & {"queued", "running"}, what=f"runs {run_ids} to finish")


async def test_failures_seen_by_one_worker_open_the_breaker_for_another(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI, tmp_path: Path
) -> None:
    fake.rule = lambda model, step: DOWN if model == PRIMARY else None
    plain = runtime_with(runtime, breaker_settings(settings, fake))
    with_fallback = runtime_with(runtime, breaker_settings(settings, fake, fallback_models=[f"openai:{FALLBACK}"]))
    env = fake_worker_env(
        settings, fake, RESEARCH_AGENT_BREAKER_OPEN_SECONDS="60", RESEARCH_AGENT_BREAKER_MAX_WAIT_SECONDS="0"
    )
    logs = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
    # Both processes start at once; B is paused while A claims the failing runs, so B sees none of them.
    a = start_worker(env, "--max-runs", "5", "--concurrency", "5", log=logs[0])
    b = start_worker(env, "--concurrency", "3", log=logs[1])
    try:
        wait_for(lambda: all("started" in log.read_text() for log in logs), timeout=30, what="both workers")
        b.send_signal(signal.SIGSTOP)
        failing = [(await plain.submit(QUESTION)).id for _ in range(5)]
        await until_finished(runtime, failing)  # worker A: five provider failures
        finish(a, logs[0])
        assert all(run_id[:8] in logs[0].read_text() for run_id in failing)
        row = await breaker_row(runtime)
        assert row is not None and (row["state"], row["consecutive_failures"]) == ("open", 5)
        seen_by_a = len(fake.attempts(model=PRIMARY))
        assert seen_by_a == 5
        assert {(await runtime.store.get_run(i)).stop_reason for i in failing} == {"provider_error"}

        # Worker B, which never saw a failure, finds the breaker open in Postgres.
        b.send_signal(signal.SIGCONT)
        rescued = [(await with_fallback.submit(QUESTION)).id for _ in range(2)]
        refused = (await plain.submit(QUESTION)).id
        await until_finished(runtime, [*rescued, refused])
        b.send_signal(signal.SIGTERM)
        finish(b, logs[1])
    finally:
        for worker in (a, b):
            if worker.poll() is None:
                worker.send_signal(signal.SIGCONT)
                worker.kill()

    for run_id in rescued:
        done = await runtime.store.get_run(run_id)
        assert done.status == "completed", done.error
    stopped = await runtime.store.get_run(refused)
    assert (stopped.status, stopped.stop_reason) == ("failed", "provider_error")
    assert stopped.error and f"circuit breaker open for {KEY}" in stopped.error
    assert len(fake.attempts(model=PRIMARY)) == seen_by_a, "worker B called the broken model"
    assert fake.successes_by_step(model=FALLBACK) == Counter({step: 2 for step in ALL_STEPS})
    worker_b = logs[1].read_text()
    assert all(run_id[:8] in worker_b for run_id in [*rescued, refused]), worker_b
    assert not any(run_id[:8] in worker_b for run_id in failing), worker_b


# --- (c) a rate limit shared by two workers ------------------------------------------------------------

RPM, WINDOW, RUNS = 4, 1.0, 4
REQUESTS = 4 * RUNS


async def test_a_rate_limit_is_shared_by_two_workers_and_no_429_is_needed(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI, tmp_path: Path
) -> None:
    arrivals: list[float] = []  # wall-clock arrival times (the database's clock aligns the windows)
    fake.rule = rate_limited(arrivals, rpm=RPM, window=WINDOW)  # a 429 for any request over the limit
    rt = runtime_with(runtime, breaker_settings(settings, fake))
    env = fake_worker_env(
        settings,
        fake,
        RESEARCH_AGENT_RATE_LIMITS=json.dumps({KEY: {"rpm": RPM}}),
        RESEARCH_AGENT_RATE_LIMIT_WINDOW_SECONDS=str(WINDOW),
    )
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers = [start_worker(env, "--concurrency", str(RUNS // 2), log=log) for log in logs]
    try:
        wait_for(lambda: all("started" in log.read_text() for log in logs), timeout=30, what="both workers")
        runs = [(await rt.submit(QUESTION)).id for _ in range(RUNS)]  # half each: a worker runs at most half
        await until_finished(runtime, runs)
        for worker, log in zip(workers, logs, strict=True):
            worker.send_signal(signal.SIGTERM)
            finish(worker, log)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()

    finals = [await runtime.store.get_run(run_id) for run_id in runs]
    assert [r.status for r in finals] == ["completed"] * RUNS, [r.error for r in finals]
    assert all(any(run_id[:8] in log.read_text() for run_id in runs) for log in logs), "both workers ran runs"
    assert {c.status for c in fake.calls} == {200}, "a 429 was needed"
    assert len(arrivals) == REQUESTS
    # The shared ledger: no window got more than RPM requests, and every request was reserved.
    ledger = await runtime.pool.fetch("SELECT window_start, requests FROM provider_rate_usage WHERE key = $1", KEY)
    assert max(r["requests"] for r in ledger) <= RPM and sum(r["requests"] for r in ledger) == REQUESTS
    # As the fake saw it: requests reserved in window k arrive in it (after a reservation, within ~ms), so
    # past the first 0.1 s of a window (where a late request of the previous one may land) at most RPM arrive.
    windows = Counter(in_window(t, WINDOW, grace=0.1) for t in arrivals)
    windows.pop(None, None)
    assert max(windows.values()) <= RPM, sorted(windows.items())
    windows_needed = math.ceil(REQUESTS / RPM)
    assert len(ledger) >= windows_needed and max(arrivals) - min(arrivals) > (windows_needed - 2) * WINDOW


async def test_a_token_limit_counts_the_tokens_used_and_paces_requests(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI
) -> None:
    roomy = runtime_with(runtime, breaker_settings(settings, fake, rate_limits={KEY: {"tpm": 10_000_000}}))
    assert_completed(await roomy.research(QUESTION))
    ledger = await runtime.pool.fetch("SELECT requests, tokens FROM provider_rate_usage WHERE key = $1", KEY)
    # Each reservation (input bound + output allowance) settled to what the fake reported: 100 + 10 * step
    # input and 20 output tokens per request.
    assert sum(r["requests"] for r in ledger) == 4
    assert sum(r["tokens"] for r in ledger) == sum(120 + 10 * step for step in ALL_STEPS)
    await runtime.pool.execute("DELETE FROM provider_rate_usage")

    # A token limit below one request's bound: each request takes a window of its own, across runs.
    arrivals: list[float] = []
    fake.rule = recording(arrivals)
    window = 0.5
    tight = runtime_with(
        runtime, breaker_settings(settings, fake, rate_limits={KEY: {"tpm": 100}}, rate_limit_window_seconds=window)
    )
    results = await asyncio.gather(*(tight.research(QUESTION) for _ in range(2)))
    for result in results:
        assert_completed(result)
    assert len(arrivals) == 8 and {c.status for c in fake.calls} == {200}
    windows = Counter(in_window(t, window, grace=0.05) for t in arrivals)
    windows.pop(None, None)  # arrivals in a window's first `grace` seconds may belong to the one before
    # No window (as the provider saw them) had two requests; when every request arrived just as its window
    # opened (each waited for it), none is left to compare, and the ledger below is the whole check.
    assert max(windows.values(), default=0) <= 1, sorted(windows.items())
    rows = await runtime.pool.fetch("SELECT requests FROM provider_rate_usage WHERE key = $1", KEY)
    assert [r["requests"] for r in rows] == [1] * 8


# --- (d) retries: Retry-After honoured, with jitter -----------------------------------------------------


def _state_after(status: int, headers: dict[str, str], attempt: int = 1) -> RetryCallState:
    request = httpx2.Request("POST", "http://fake/v1/chat/completions")
    response = httpx2.Response(status, headers=headers, request=request)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception(
        (httpx2.HTTPStatusError, httpx2.HTTPStatusError("429", request=request, response=response), None)
    )
    return state


def test_jitter_lengthens_every_wait_never_shortens_it() -> None:
    random.seed(15)
    wait = jittered(wait_retry_after(max_wait=60), 0.25)
    after = _state_after(429, {"Retry-After": "2"})
    waits = [wait(after) for _ in range(200)]
    assert all(2.0 <= w <= 2.5 for w in waits)
    assert len(set(waits)) == 200, "every client waits a different time"
    assert max(waits) - min(waits) > 0.3
    assert {jittered(wait_retry_after(max_wait=60), 0.0)(after) for _ in range(5)} == {2.0}
    capped = jittered(wait_retry_after(max_wait=0.5), 0.25)(_state_after(429, {"Retry-After": "120"}))
    assert 0.5 <= capped <= 0.625


async def test_retry_after_is_honoured_with_jitter_by_concurrent_runs(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI
) -> None:
    limited = Fault(429, "Rate limit reached", headers={"Retry-After": "1"})
    other = "fake-model-2"
    fake.inject(limited, limited, step=SEARCH, model=PRIMARY)
    fake.inject(limited, limited, step=SEARCH, model=other)
    overrides: dict[str, Any] = {"provider_max_retries": 3, "provider_max_wait_seconds": 5.0}
    first = runtime_with(runtime, breaker_settings(settings, fake, **overrides))
    second = runtime_with(runtime, breaker_settings(settings, fake, model=f"openai:{other}", **overrides))

    results = await asyncio.gather(first.research(QUESTION), second.research(QUESTION))

    for result in results:
        assert_completed(result)
    waits = []
    for model in (PRIMARY, other):
        attempts = fake.attempts(step=SEARCH, model=model)
        assert [a.status for a in attempts] == [429, 429, 200]
        gaps = [later.at - earlier.at for earlier, later in pairwise(attempts)]
        assert all(1.0 <= gap < 1.25 + 0.3 for gap in gaps), gaps  # Retry-After, plus at most 25 % jitter
        waits += gaps
    # Jitter drew each wait on its own: not four equal waits. (Their distribution is checked exactly, seeded,
    # in test_jitter_lengthens_every_wait_never_shortens_it; four draws on [1, 1.25] all within 5 ms of each
    # other has odds below 1e-4, while comparing them at ms resolution collided once in ~40 runs.)
    assert max(waits) - min(waits) > 0.005, waits
    assert await breaker_row(runtime) is None, "a 429 retried to success is no breaker failure"
