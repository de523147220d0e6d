"""Every run, step, model request and tool call is a span carrying the run id."""

from __future__ import annotations

from collections.abc import Iterator

import logfire
import pytest
from logfire.testing import CaptureLogfire

from agent.api import Runtime
from tests._http_server import LocalHTTPServer
from tests._web import install_web
from tests.scripted import research_model


@pytest.fixture
def instrumented(capfire: CaptureLogfire) -> Iterator[CaptureLogfire]:
    logfire.instrument_pydantic_ai()
    yield capfire


async def test_spans_carry_the_run_id(
    runtime: Runtime, http_server: LocalHTTPServer, instrumented: CaptureLogfire
) -> None:
    install_web(http_server)
    model, _ = research_model(max_fetches=1)
    result = await runtime.research("What is HTTP/3?", model=model)
    assert result.status == "completed"

    spans = instrumented.exporter.exported_spans_as_dict()
    by_name: dict[str, list[dict[str, object]]] = {}
    for span in spans:
        by_name.setdefault(str(span["name"]).split(" ")[0], []).append(span["attributes"])

    # Every span of the run, ours and pydantic-ai's, carries the run id (OpenTelemetry baggage).
    assert {attrs.get("run_id") for attrs in (s["attributes"] for s in spans)} == {result.run_id}
    (run_span,) = by_name["research"]
    assert run_span["status"] == "completed" and run_span["prompt_version"]
    plan = by_name["plan"][0]
    assert "HTTP/3" in str(plan["sub_questions"])

    # Spans join the store rows: one chat span per model step, one tool span per tool step.
    steps = (await runtime.get_run(result.run_id)).steps
    model_steps = [s for s in steps if s.kind == "model"]
    tool_names = sorted(s.name for s in steps if s.kind in ("tool", "plan") and s.name != "final_result")
    assert len(by_name["chat"]) == len(model_steps) == result.usage.requests == 4
    assert sorted(str(a["gen_ai.tool.name"]) for a in by_name["execute_tool"]) == tool_names
    assert len(by_name["commit"]) >= len(model_steps)


async def test_stop_reason_spend_and_caps_are_span_attributes(
    runtime: Runtime, http_server: LocalHTTPServer, instrumented: CaptureLogfire
) -> None:
    from budgets import Budget

    install_web(http_server)
    model, _ = research_model(max_fetches=2)
    result = await runtime.research("What is HTTP/3?", model=model, budget=Budget(max_turns=2))
    assert result.stop_reason == "turns"

    spans = instrumented.exporter.exported_spans_as_dict()
    (run_span,) = [s["attributes"] for s in spans if str(s["name"]).startswith("research run")]
    assert run_span["status"] == "budget_exceeded" and run_span["stop_reason"] == "turns"
    assert run_span["budget.max_turns"] == 2 and run_span["requests"] == 2
    assert run_span["cost_usd"] == float(result.cost_usd) > 0
    warnings = [s for s in spans if "budget warning" in str(s["attributes"].get("logfire.msg", ""))]
    assert warnings and warnings[0]["attributes"]["cap"] == "turns"
