"""End to end, in process: a scripted model researches the fixture web through the real tools."""

from __future__ import annotations

from agent.api import Runtime
from tests._http_server import LocalHTTPServer
from tests._web import install_web
from tests.scripted import research_model


async def test_research_completes_with_verified_citations(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    urls = install_web(http_server)
    model, script = research_model(max_fetches=2)

    result = await runtime.research("What changed in HTTP/3 compared to HTTP/2?", model=model)

    assert result.status == "completed", result.error
    assert result.report is not None
    assert {c.url for c in result.report.citations} == set(urls)
    assert result.usage.requests == len(script.calls) == 5  # plan, search, fetch, fetch, answer
    view = await runtime.get_run(result.run_id)
    kinds = [(s.kind, s.name) for s in view.steps]
    assert kinds[:2] == [("model", "scripted-research"), ("plan", "record_plan")]
    assert ("tool", "web_search") in kinds and kinds.count(("tool", "fetch_url")) == 2
    assert view.run.plan and "HTTP/3" in view.run.plan[0]
    assert http_server.hits["/search"] == 1
    assert all(http_server.hits[p] == 1 for p in ("/pages/http3", "/pages/http2"))
