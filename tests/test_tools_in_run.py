"""Tools inside a real run: plan-first, structured failures, and a crashing backend never crash a run."""

from __future__ import annotations

from agent.api import Runtime
from tests._http_server import LocalHTTPServer
from tests._web import install_web
from tests.scripted import scripted_calls
from tools import SearchHit


class ExplodingBackend:
    name = "exploding"

    async def search(self, query: str, *, max_results: int) -> list[SearchHit]:
        raise RuntimeError("backend bug")


async def test_searching_before_planning_is_refused_with_a_structured_error(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    model = scripted_calls([("web_search", {"query": "QUIC"}), ("record_plan", {"sub_questions": ["QUIC?"]})])
    result = await runtime.research("What is QUIC?", model=model)

    assert result.status == "completed"
    steps = (await runtime.get_run(result.run_id)).steps
    search = next(s for s in steps if s.name == "web_search")
    assert not search.ok and "record_plan" in search.summary
    assert http_server.hits["/search"] == 0


async def test_a_crashing_search_backend_becomes_a_tool_error_not_a_crashed_run(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    model = scripted_calls([("record_plan", {"sub_questions": ["QUIC?"]}), ("web_search", {"query": "QUIC"})])
    result = await runtime.research("What is QUIC?", model=model, search_backend=ExplodingBackend())

    assert result.status == "completed"
    search = next(s for s in (await runtime.get_run(result.run_id)).steps if s.name == "web_search")
    assert not search.ok and "backend_error" in search.summary


async def test_private_addresses_and_bad_arguments_are_refused_and_the_run_goes_on(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    not_allowed = f"http://127.0.0.2:{http_server.port}/pages/http3"  # loopback, but not on the allow-list
    model = scripted_calls(
        [
            ("record_plan", {"sub_questions": ["QUIC?"]}),
            ("fetch_url", {"url": not_allowed}),
            ("fetch_url", {"url": "file:///etc/passwd"}),
            ("web_search", {"query": "QUIC", "max_results": "many"}),
        ]
    )
    result = await runtime.research("What is QUIC?", model=model)

    assert result.status == "completed"
    steps = (await runtime.get_run(result.run_id)).steps
    fetches = [s for s in steps if s.name == "fetch_url"]
    assert [s.ok for s in fetches] == [False, False]
    assert "blocked_url" in fetches[0].summary
    bad_args = next(s for s in steps if s.name == "web_search")
    assert not bad_args.ok and "retried" in bad_args.summary  # pydantic validation went back to the model
    assert sum(http_server.hits.values()) == 0
