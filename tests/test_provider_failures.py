"""Provider failures through the real model path: resolve_model → OpenAIProvider → retrying transport.

A fake OpenAI-compatible server (tests/_fake_openai.py) answers `/v1/chat/completions` on the local
HTTP server and scripts a whole research conversation (plan → search → fetch → cited answer), with
429s, 5xx and hangs injected at chosen steps. Runs are started with the model as a *name*
(`openai:fake-model`), so nothing in the production path is replaced.

Conversation steps are keyed by the number of messages in the request: 2 (→ record_plan),
4 (→ web_search), 6 (→ fetch_url), 8 (→ final_result).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from pydantic_ai.messages import ModelRequest, ToolReturnPart

from agent.api import ResearchResult, Runtime
from agent.durable.worker import Worker
from agent.settings import Settings
from tests._fake_openai import FakeOpenAI, Fault
from tests._http_server import LocalHTTPServer
from tests._web import ARTICLES, install_web

QUESTION = "What changed in HTTP/3 compared to HTTP/2?"
PAGE_TITLE = ARTICLES["/pages/http3"][0]
QUOTE = "HTTP/3 runs over QUIC instead of TCP."
PLAN, SEARCH, FETCH, ANSWER = 2, 4, 6, 8
ALL_STEPS = Counter({PLAN: 1, SEARCH: 1, FETCH: 1, ANSWER: 1})


@pytest.fixture
def fake(http_server: LocalHTTPServer) -> Iterator[FakeOpenAI]:
    urls = install_web(http_server)
    server = FakeOpenAI(http_server, page_url=urls[0], quote=QUOTE, title=PAGE_TITLE)
    try:
        yield server
    finally:
        server.release.set()  # end any request still hanging


def provider_runtime(runtime: Runtime, base: Settings, fake: FakeOpenAI, **overrides: Any) -> Runtime:
    """The test's database and fixture web, with the model served by the fake OpenAI server."""
    settings = Settings(
        database_url=base.database_url,
        data_dir=base.data_dir,
        search_backend="searxng",
        searxng_url=base.searxng_url,
        fetch_allow_hosts=base.fetch_allow_hosts,
        lease_seconds=base.lease_seconds,
        worker_poll_seconds=base.worker_poll_seconds,
        model_prices=base.model_prices,
        critic_model=base.critic_model,
        model="openai:fake-model",
        openai_base_url=fake.base_url,
        openai_api_key="test-key",
        **{"provider_max_retries": 3, "provider_max_wait_seconds": 2.0, **overrides},
    )
    return Runtime(pool=runtime.pool, settings=settings)


def assert_cited_report(result: ResearchResult, fake: FakeOpenAI) -> None:
    assert result.status == "completed", result.error
    assert result.stop_reason == "completed"
    assert result.report is not None
    assert [(c.url, c.quote) for c in result.report.citations] == [(fake.page_url, QUOTE)]


async def test_429_retry_after_is_honoured_then_the_run_completes(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI, http_server: LocalHTTPServer
) -> None:
    rate_limited = Fault(429, "Rate limit reached for fake-model", headers={"Retry-After": "1"})
    fake.inject(rate_limited, rate_limited, step=SEARCH)
    rt = provider_runtime(runtime, settings, fake, provider_max_retries=3, provider_max_wait_seconds=5.0)

    result = await rt.research(QUESTION)

    assert_cited_report(result, fake)
    attempts = fake.attempts(step=SEARCH)
    assert [a.status for a in attempts] == [429, 429, 200]  # one layer of retries: no SDK re-sends
    gaps = [later.at - earlier.at for earlier, later in pairwise(attempts)]
    assert all(gap >= 0.9 for gap in gaps), f"Retry-After: 1 not honoured, gaps {gaps}"
    assert http_server.hits["/v1/chat/completions"] == 4 + 2
    assert fake.successes_by_step() == ALL_STEPS
    assert result.usage.requests == 4


async def test_retry_after_longer_than_the_cap_is_cut_to_provider_max_wait(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI
) -> None:
    fake.inject(Fault(429, "slow down", headers={"Retry-After": "120"}), step=PLAN)
    rt = provider_runtime(runtime, settings, fake, provider_max_retries=2, provider_max_wait_seconds=0.5)

    result = await rt.research(QUESTION)

    assert_cited_report(result, fake)
    first, second = fake.attempts(step=PLAN)
    assert (first.status, second.status) == (429, 200)
    assert 0.4 <= second.at - first.at < 5


async def test_transient_5xx_are_retried_with_backoff_then_the_run_completes(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI
) -> None:
    fake.inject(Fault(503, "overloaded"), Fault(500, "internal error"), step=FETCH)
    rt = provider_runtime(runtime, settings, fake, provider_max_retries=3)

    result = await rt.research(QUESTION)

    assert_cited_report(result, fake)
    attempts = fake.attempts(step=FETCH)
    assert [a.status for a in attempts] == [503, 500, 200]
    gaps = [later.at - earlier.at for earlier, later in pairwise(attempts)]
    assert all(gap >= 0.4 for gap in gaps), f"no backoff between attempts: {gaps}"  # exponential from 0.5 s
    assert fake.successes_by_step() == ALL_STEPS
    assert result.usage.requests == 4


async def test_a_request_that_hangs_past_the_timeout_is_retried(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI
) -> None:
    fake.inject(Fault(hang_seconds=10), step=PLAN)
    rt = provider_runtime(runtime, settings, fake, provider_max_retries=2, model_request_timeout_seconds=1.0)

    result = await rt.research(QUESTION)

    assert_cited_report(result, fake)
    hung, retried = fake.attempts(step=PLAN)
    assert (hung.status, retried.status) == ("hang", 200)
    assert 0.9 <= retried.at - hung.at < 8  # gave up at the 1 s timeout, not when the server answered
    assert fake.successes_by_step() == ALL_STEPS


async def test_fallback_model_answers_when_the_primary_keeps_failing(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI
) -> None:
    fake.rule = lambda model, step: Fault(500, "primary is down") if model == "fake-model" else None
    rt = provider_runtime(runtime, settings, fake, provider_max_retries=1, fallback_models=["openai:fallback-model"])

    result = await rt.research(QUESTION)

    assert_cited_report(result, fake)
    # Each step: the primary is tried and retried (1 + 1 attempts), then the fallback answers once.
    assert Counter(a.step for a in fake.attempts(model="fake-model")) == Counter({s: 2 for s in ALL_STEPS})
    assert all(a.status == 500 for a in fake.attempts(model="fake-model"))
    assert fake.successes_by_step(model="fallback-model") == ALL_STEPS
    view = await rt.get_run(result.run_id)
    assert view.run.config.fallback_models == ["openai:fallback-model"]
    model_steps = [s.name for s in view.steps if s.kind == "model"]
    assert model_steps == ["fallback-model"] * 4
    assert result.usage.requests == 4


async def test_a_non_retryable_error_is_not_retried(runtime: Runtime, settings: Settings, fake: FakeOpenAI) -> None:
    fake.inject(Fault(400, "Invalid schema for function 'record_plan'"), step=PLAN)
    rt = provider_runtime(runtime, settings, fake, provider_max_retries=3)

    result = await rt.research(QUESTION)

    assert result.status == "failed"
    assert result.stop_reason == "provider_error"
    assert result.error and "400" in result.error and "Invalid schema for function" in result.error
    assert [a.status for a in fake.attempts()] == [400]


async def test_when_every_model_fails_the_run_fails_and_resumes_from_its_last_committed_turn(
    runtime: Runtime, settings: Settings, fake: FakeOpenAI, http_server: LocalHTTPServer
) -> None:
    outage = True
    fake.rule = lambda model, step: Fault(500, "upstream is on fire") if outage and step >= FETCH else None
    rt = provider_runtime(runtime, settings, fake, provider_max_retries=1, fallback_models=["openai:fallback-model"])

    failed = await rt.research(QUESTION)

    assert failed.status == "failed"
    assert failed.stop_reason == "provider_error"
    assert failed.error is not None
    assert "500" in failed.error and "upstream is on fire" in failed.error
    assert "fake-model" in failed.error and "fallback-model" in failed.error
    assert failed.report is None and failed.partial is not None and failed.partial.plan
    # Plan and search were answered; the fetch step failed on both models, each tried 1 + 1 times.
    assert fake.successes_by_step() == Counter({PLAN: 1, SEARCH: 1})
    fetch_attempts = Counter(a.model for a in fake.attempts(step=FETCH))
    assert fetch_attempts == Counter({"fake-model": 2, "fallback-model": 2})
    stopped = await rt.store.get_run(failed.run_id)
    assert stopped.usage.requests == 2
    committed = await rt.store.load_messages(failed.run_id)
    # plan and search turns, plus the request carrying the search result that the fetch step never answered
    assert len(committed) == 5 and isinstance(committed[-1], ModelRequest)
    assert [p.tool_name for p in committed[-1].parts if isinstance(p, ToolReturnPart)] == ["web_search"]
    assert http_server.hits["/search"] == 1

    outage = False
    await rt.resume(failed.run_id)
    finished = await Worker(rt, exit_when_idle=True, concurrency=1).run()

    assert [r.id for r in finished] == [failed.run_id]
    final = finished[0]
    assert final.status == "completed", final.error
    assert final.stop_reason == "completed" and final.error is None
    assert final.report is not None and final.report["citations"]
    assert final.attempts == 2
    # Completed model calls were not repeated: each step succeeded exactly once across both attempts.
    assert fake.successes_by_step() == ALL_STEPS
    assert fake.successes_by_step(model="fake-model") == ALL_STEPS  # the primary is back
    assert http_server.hits["/search"] == 1  # the search tool did not run again either
    # Usage carried over from the failed attempt: one request per successful step, no more.
    assert final.usage.requests == 4
    assert final.usage.input_tokens == sum(100 + 10 * step for step in ALL_STEPS)
    view = await rt.get_run(final.id)
    assert [s.name for s in view.steps if s.kind == "model"] == ["fake-model"] * 4
