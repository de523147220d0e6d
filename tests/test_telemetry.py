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
