"""Every cap fires at its exact boundary, and no request can push a run past a cap."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from agent.api import Runtime
from budgets import DEFAULT_OUTPUT_ALLOWANCE, MIN_OUTPUT_ALLOWANCE, Budget, BudgetEvent, BudgetGuard, ModelPrice
from tests._http_server import LocalHTTPServer, Response
from tests._web import install_web


def _turn(messages: list[ModelMessage]) -> int:
    return sum(isinstance(m, ModelResponse) for m in messages)


def endless_planner(calls: list[dict[str, object]], *, words: int = 5) -> FunctionModel:
    """Never answers: records a new plan every turn, emitting as many words as the request allows."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        settings = dict(info.model_settings or {})
        calls.append(settings)
        allowance = int(settings.get("max_tokens") or 1_000)
        filler = " ".join(["word"] * max(0, min(words, allowance - 40)))  # honour max_tokens like a provider
        return ModelResponse(
            parts=[
                TextPart(filler),
                ToolCallPart("record_plan", {"sub_questions": [f"sub-question number {_turn(messages)}"]}),
            ]
        )

    return FunctionModel(respond, model_name="endless")


async def test_turn_cap_makes_exactly_n_requests_and_keeps_partial_findings(runtime: Runtime) -> None:
    calls: list[dict[str, object]] = []
    result = await runtime.research("q?", model=endless_planner(calls), budget=Budget(max_turns=3))

    assert len(calls) == 3  # never N+1
    assert result.status == "budget_exceeded" and result.stop_reason == "turns"
    assert result.usage.requests == 3
    assert result.partial is not None and result.partial.plan == ["sub-question number 2"]


@pytest.mark.parametrize("cap", ["0.03", "0.061", "0.1"])
async def test_cost_cap_is_never_overshot_even_by_the_crossing_request(runtime: Runtime, cap: str) -> None:
    calls: list[dict[str, object]] = []
    greedy = endless_planner(calls, words=600)  # would spend far past the cap if allowed
    budget = Budget(max_turns=50, max_cost_usd=Decimal(cap), max_tokens=10_000_000)
    result = await runtime.research("q?", model=greedy, budget=budget)

    assert result.status == "budget_exceeded" and result.stop_reason == "cost"
    assert result.cost_usd <= Decimal(cap)
    assert len(calls) >= 3 and result.cost_usd > Decimal(cap) / 4  # it spent a good part of the budget first
    assert min(int(str(c["max_tokens"])) for c in calls) >= MIN_OUTPUT_ALLOWANCE
    steps = (await runtime.get_run(result.run_id)).steps
    assert sum(s.cost_usd or 0 for s in steps if s.kind == "model") == result.cost_usd


async def test_output_allowance_is_trimmed_to_what_the_budget_can_pay(runtime: Runtime) -> None:
    calls: list[dict[str, object]] = []
    greedy = endless_planner(calls, words=5_000)
    result = await runtime.research("q?", model=greedy, budget=Budget(max_cost_usd=Decimal("0.007")))

    first_allowance = int(str(calls[0]["max_tokens"]))
    assert MIN_OUTPUT_ALLOWANCE <= first_allowance < DEFAULT_OUTPUT_ALLOWANCE
    assert result.cost_usd <= Decimal("0.007")
    trimmed = [s for s in (await runtime.get_run(result.run_id)).steps if s.name == "budget_trimmed"]
    assert trimmed and f"to {first_allowance} tokens" in trimmed[0].summary


async def test_token_cap_is_never_overshot(runtime: Runtime) -> None:
    calls: list[dict[str, object]] = []
    budget = Budget(max_turns=50, max_tokens=40_000, max_cost_usd=None)
    result = await runtime.research("q?", model=endless_planner(calls, words=800), budget=budget)

    assert result.status == "budget_exceeded" and result.stop_reason == "tokens"
    assert result.usage.input_tokens + result.usage.output_tokens <= 40_000
    assert len(calls) >= 2


async def test_a_provider_that_ignores_max_tokens_is_counted_and_the_run_stops(runtime: Runtime) -> None:
    calls: list[dict[str, object]] = []

    def ignores_max_tokens(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(dict(info.model_settings or {}))
        # Like a provider that disregards max_tokens: 30,000 output tokens whatever the request allowed.
        return ModelResponse(
            parts=[ToolCallPart("record_plan", {"sub_questions": [f"sub-question {_turn(messages)}"]})],
            usage=RequestUsage(input_tokens=1_000, output_tokens=30_000),
        )

    budget = Budget(max_turns=50, max_tokens=40_000, max_cost_usd=None)
    result = await runtime.research("q?", model=FunctionModel(ignores_max_tokens), budget=budget)

    # The first response (31,000 tokens) fits; the second was allowed far fewer output tokens than it sent.
    assert result.status == "budget_exceeded" and result.stop_reason == "tokens"
    assert len(calls) == 2  # no third request
    assert int(str(calls[1]["max_tokens"])) < 30_000  # it was asked for less
    assert result.usage.input_tokens + result.usage.output_tokens == 62_000  # the crossing response is counted
    assert result.error is not None and "crossed by the provider" in result.error
    assert result.partial is not None and result.partial.plan == ["sub-question 0"]  # its tool call never ran
    record = await runtime.store.get_run(result.run_id)
    assert record.usage.input_tokens + record.usage.output_tokens == 62_000  # and so is the stored run


async def test_wall_time_cap_cancels_an_in_flight_model_call_within_a_second(runtime: Runtime) -> None:
    cancelled = asyncio.Event()

    async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    started = time.monotonic()
    result = await runtime.research("q?", model=FunctionModel(slow), budget=Budget(max_wall_seconds=1.0))
    took = time.monotonic() - started

    assert result.status == "budget_exceeded" and result.stop_reason == "wall_time"
    assert cancelled.is_set()
    assert took < 1.0 + 1.0
    record = await runtime.store.get_run(result.run_id)
    assert 1.0 <= record.elapsed_seconds < 2.0


async def test_wall_time_cap_cancels_an_in_flight_tool_call(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server)
    http_server.route("/pages/slow", lambda _r: Response(chunks=[b"<p>x</p>"] * 50, chunk_delay=0.2))
    url = http_server.url("/pages/slow")

    def fetcher(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if _turn(messages) == 0:
            return ModelResponse(parts=[ToolCallPart("record_plan", {"sub_questions": ["slow?"]})])
        return ModelResponse(parts=[ToolCallPart("fetch_url", {"url": url})])

    started = time.monotonic()
    result = await runtime.research("q?", model=FunctionModel(fetcher), budget=Budget(max_wall_seconds=1.5))
    assert result.stop_reason == "wall_time"
    assert time.monotonic() - started < 1.5 + 1.0


async def test_tool_call_caps_stop_at_their_boundary(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    urls = install_web(http_server)

    def fetch_everything(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = _turn(messages)
        if turn == 0:
            return ModelResponse(parts=[ToolCallPart("record_plan", {"sub_questions": ["pages?"]})])
        return ModelResponse(parts=[ToolCallPart("fetch_url", {"url": urls[(turn - 1) % len(urls)] + f"?n={turn}"})])

    per_tool = await runtime.research(
        "q?", model=FunctionModel(fetch_everything), budget=Budget(per_tool={"fetch_url": 2})
    )
    assert per_tool.status == "budget_exceeded" and per_tool.stop_reason == "tool_calls"
    assert sum(http_server.hits.values()) == 2

    total = await runtime.research("q?", model=FunctionModel(fetch_everything), budget=Budget(max_tool_calls=2))
    assert total.stop_reason == "tool_calls"
    assert total.usage.tool_calls <= 2


async def test_repeating_a_call_gets_the_earlier_result_then_stops_as_a_loop(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)

    def stuck(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if _turn(messages) == 0:
            return ModelResponse(parts=[ToolCallPart("record_plan", {"sub_questions": ["http3?"]})])
        return ModelResponse(parts=[ToolCallPart("web_search", {"query": "HTTP/3"})])

    result = await runtime.research("q?", model=FunctionModel(stuck))
    assert result.status == "budget_exceeded" and result.stop_reason == "loop"
    assert http_server.hits["/search"] == 1  # the repeat was answered from the earlier result
    searches = [s for s in (await runtime.get_run(result.run_id)).steps if s.name == "web_search"]
    assert len(searches) == 2 and "duplicate_call" in searches[1].summary


async def test_searches_without_new_urls_count_as_repetitions(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server)

    def rephrasing(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = _turn(messages)
        if turn == 0:
            return ModelResponse(parts=[ToolCallPart("record_plan", {"sub_questions": ["http3?"]})])
        return ModelResponse(parts=[ToolCallPart("web_search", {"query": f"HTTP/3 phrasing {turn}"})])

    result = await runtime.research("q?", model=FunctionModel(rephrasing))
    assert result.stop_reason == "loop"
    assert http_server.hits["/search"] == 3  # new URLs, then none (warned), then none again (stopped)


async def test_soft_warning_at_80_percent_is_a_step_event(runtime: Runtime) -> None:
    calls: list[dict[str, object]] = []
    result = await runtime.research("q?", model=endless_planner(calls), budget=Budget(max_turns=5))
    warnings = [s for s in (await runtime.get_run(result.run_id)).steps if s.name == "budget_warning"]
    assert [w.args["cap"] for w in warnings] == ["turns"]
    assert "4 of 5" in warnings[0].summary


async def test_unknown_price_under_a_cost_cap_is_a_clear_error(runtime: Runtime) -> None:
    unpriced = FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("x")]), model_name="unpriced")
    runtime.settings = runtime.settings.model_copy(update={"model_prices": {}})
    refused = await runtime.research("q?", model=unpriced)
    assert refused.status == "failed" and refused.error is not None
    assert "RESEARCH_AGENT_MODEL_PRICES" in refused.error and "function:unpriced" in refused.error
    # The fix, for a Python caller and for the CLI alike.
    assert 'Settings(model_prices={"function:unpriced": budgets.ModelPrice(' in refused.error
    assert "budget=Budget(max_cost_usd=None)" in refused.error and "--max-cost none" in refused.error
    allowed = await runtime.research("q?", model=unpriced, budget=Budget(max_cost_usd=None, max_turns=1))
    assert allowed.stop_reason == "turns"


async def test_unknown_critic_price_names_the_settings_that_fix_it(runtime: Runtime) -> None:
    research_model = FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("x")]), model_name="priced")
    critic = FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("x")]), model_name="unpriced-critic")
    price = runtime.settings.model_prices["function:*"]
    runtime.settings = runtime.settings.model_copy(update={"model_prices": {"function:priced": price}})
    refused = await runtime.research("q?", model=research_model, critic=critic)
    assert refused.status == "failed" and refused.error is not None
    assert "critic model 'function:unpriced-critic'" in refused.error
    assert 'Settings(model_prices={"function:unpriced-critic": budgets.ModelPrice(' in refused.error
    assert 'Settings(critic_model="off")' in refused.error and "RESEARCH_AGENT_CRITIC_MODEL=off" in refused.error
    assert refused.usage.requests == 0  # refused before any spend


async def test_per_tool_cap_counts_parallel_calls_in_one_response(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    urls = install_web(http_server)

    def parallel(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if _turn(messages) == 0:
            return ModelResponse(parts=[ToolCallPart("record_plan", {"sub_questions": ["pages?"]})])
        calls = [ToolCallPart("fetch_url", {"url": f"{urls[i % 2]}?copy={i}"}) for i in range(3)]
        return ModelResponse(parts=calls)

    result = await runtime.research("q?", model=FunctionModel(parallel), budget=Budget(per_tool={"fetch_url": 2}))
    assert result.status == "budget_exceeded" and result.stop_reason == "tool_calls"
    assert sum(http_server.hits.values()) <= 2


async def test_a_provider_that_ignores_max_tokens_cannot_spend_on_unnoticed(runtime: Runtime) -> None:
    def ignores_max_tokens(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(
            parts=[ToolCallPart("record_plan", {"sub_questions": [f"sub-question {_turn(messages)}"]})],
            usage=RequestUsage(input_tokens=1_000, output_tokens=20_000),
        )

    model = FunctionModel(ignores_max_tokens, model_name="ignores-max-tokens")
    budget = Budget(max_turns=50, max_tokens=10_000_000, max_cost_usd=Decimal("0.05"))
    runtime = Runtime(
        pool=runtime.pool,
        settings=runtime.settings.model_copy(
            update={"model_prices": {"function:ignores-max-tokens": ModelPrice(input_per_mtok=1, output_per_mtok=2)}}
        ),
    )
    result = await runtime.research("q?", model=model, budget=budget)

    # $0.041 a response: the first fits under $0.05, the second crosses it and is the last.
    assert result.status == "budget_exceeded" and result.stop_reason == "cost"
    assert result.usage.requests == 2
    assert result.cost_usd == Decimal("0.082")  # counted in full
    assert result.error is not None and "cost cap crossed by the provider" in result.error
    assert result.partial is not None and result.partial.plan == ["sub-question 0"]


def test_a_cap_is_warned_about_once_per_run_even_when_the_critic_warned_too() -> None:
    """The critic's guard spends on the run's behalf and warns on its own; merged into the run's guard, a cap
    already warned about is not warned about again (a run showed two `budget.warning`s for `turns`)."""
    guard = BudgetGuard(budget=Budget(), pricer=None)

    def warning(cap: str, used: float) -> BudgetEvent:
        return BudgetEvent(kind="warning", cap=cap, message=f"{cap} {used}", used=used, limit=10)

    guard.merge_events([warning("turns", 8)])
    guard.merge_events([warning("turns", 9), warning("tokens", 9)])
    trimmed = BudgetEvent(kind="trimmed", cap="tokens", message="trimmed", used=1, limit=2)
    guard.merge_events([trimmed, warning("tokens", 9.5)])
    assert [(e.kind, e.cap, e.used) for e in guard.events] == [
        ("warning", "turns", 8),
        ("warning", "tokens", 9),
        ("trimmed", "tokens", 1),
    ]
