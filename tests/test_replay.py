"""Recorded runs replay through the real agent: the same tools run in the same order with the same arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.api import Runtime
from agent.replay import RunTrace, export_run, load_trace, replay
from budgets import ToolCallGuard
from tests.scripted import research_model

REPLAYS = sorted((Path(__file__).parent / "replays").glob("*.json"))


@pytest.fixture
def database_url(docs_database_url: str) -> str:
    """The recorded runs are offline runs over the Python reference: it is already indexed here (tests/conftest.py)."""
    return docs_database_url


def test_there_are_recorded_traces() -> None:
    assert len(REPLAYS) >= 3
    for path in REPLAYS:
        trace = load_trace(path)
        assert trace.tool_calls and trace.tool_calls[0].tool_name == "record_plan"


@pytest.mark.parametrize("path", REPLAYS, ids=[p.stem for p in REPLAYS])
async def test_recorded_trace_replays_identically(runtime: Runtime, path: Path) -> None:
    trace = load_trace(path)
    result = await replay(runtime, trace)
    assert result.differences() == []
    assert result.view.run.report == trace.report


async def test_a_change_that_alters_the_tool_calls_fails_the_replay(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = load_trace(REPLAYS[0])

    class FetchOnce(ToolCallGuard):
        """A 'code change': a tool policy that allows one fetch per run."""

        def __init__(self, *, per_tool: dict[str, int]) -> None:
            super().__init__(per_tool={**per_tool, "fetch_url": 1})

    monkeypatch.setattr("agent.durable.session.ToolCallGuard", FetchOnce)
    result = await replay(runtime, trace)
    problems = result.differences()
    assert problems and any("tool calls" in p or "status" in p for p in problems)


async def test_export_round_trips_a_run(runtime: Runtime, http_server: object) -> None:
    from tests._http_server import LocalHTTPServer
    from tests._web import install_web

    assert isinstance(http_server, LocalHTTPServer)
    install_web(http_server)
    model, _ = research_model(max_fetches=2)
    result = await runtime.research("What changed in HTTP/3?", model=model)
    trace = await export_run(runtime, result.run_id)

    again = RunTrace.model_validate_json(trace.model_dump_json())
    assert [c.tool_name for c in again.tool_calls] == ["record_plan", "web_search", "fetch_url", "fetch_url"]
    assert len(again.responses()) == result.usage.requests == 5
    assert again.report == (await runtime.get_run(result.run_id)).run.report
