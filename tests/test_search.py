"""web_search backends against a real local HTTP server (Tavily, Brave, SearXNG) and a fake DDGS.

Nothing here may leave 127.0.0.0/8: an autouse fixture refuses any other connect or DNS lookup.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import pytest
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException
from pydantic import ValidationError

from tests._http_server import LocalHTTPServer, Request, Response
from tools import _search
from tools._search import (
    BraveBackend,
    DuckDuckGoBackend,
    SearchBackendError,
    SearchNotConfiguredError,
    SearxngBackend,
    TavilyBackend,
    build_search_backend,
    clean_hits,
)
from tools._search_tool import WebSearchArgs, web_search
from tools._types import SearchHit, SearchResponse, ToolFailure

# --- fixtures --------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly instead of touching the internet, whatever a backend's defaults say."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: object) -> None:
        if isinstance(address, tuple) and not _is_loopback(str(address[0])):
            raise ConnectionRefusedError(f"test tried to reach {address!r} outside 127.0.0.0/8")

    def connect(self: socket.socket, address: object) -> None:
        check(address)
        real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        check(address)
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host is not None and not _is_loopback(host.decode() if isinstance(host, bytes) else str(host)):
            raise socket.gaierror(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalHTTPServer]:
    srv = LocalHTTPServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def srv(server: LocalHTTPServer) -> LocalHTTPServer:
    """The shared server with this test's routes and request log only."""
    server.routes.clear()
    server.requests.clear()
    server.hits.clear()
    return server


def json_response(payload: object, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status=status,
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def serve(srv: LocalHTTPServer, path: str, response: Response) -> None:
    srv.route(path, lambda _req: response)


def only_request(srv: LocalHTTPServer) -> Request:
    assert len(srv.requests) == 1, [r.path for r in srv.requests]
    return srv.requests[0]


def query_params(request: Request) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(request.query).items()}


def sleeping(seconds: float) -> Callable[[Request], Response]:
    def handler(_req: Request) -> Response:
        threading.Event().wait(seconds)
        return json_response({"results": []})

    return handler


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def failure(result: SearchResponse | ToolFailure) -> ToolFailure:
    assert isinstance(result, ToolFailure), result
    return result


def success(result: SearchResponse | ToolFailure) -> SearchResponse:
    assert isinstance(result, SearchResponse), result
    return result


# --- realistic provider payloads -------------------------------------------------------------------

TAVILY_OK = {
    "query": "python asyncio task groups",
    "follow_up_questions": None,
    "answer": None,
    "images": [],
    "results": [
        {
            "title": "  asyncio — Task Groups \n ",
            "url": "https://docs.python.org/3/library/asyncio-task.html#task-groups",
            "content": "Task groups combine a task creation API\n with a convenient way to wait.",
            "score": 0.91,
            "raw_content": None,
        },
        {
            "title": "Duplicate of the first (same URL, other fragment)",
            "url": "https://docs.python.org/3/library/asyncio-task.html#creating-tasks",
            "content": "dup",
            "score": 0.80,
            "raw_content": None,
        },
        {"title": "not a web page", "url": "ftp://example.org/file.txt", "content": "x", "score": 0.7},
        {"title": "script", "url": "javascript:alert(1)", "content": "x", "score": 0.6},
        {"title": "relative", "url": "/relative/path", "content": "x", "score": 0.5},
        {"title": None, "url": "https://peps.python.org/pep-0654/", "content": None, "score": 0.4},
        {"title": "broken item", "url": 12345, "content": "x", "score": 0.3},
        {
            "title": "Real Python",
            "url": "https://realpython.com/async-io-python/",
            "content": "ok",
            "score": 0.2,
        },
    ],
    "response_time": 1.21,
    "request_id": "123e4567-e89b-12d3-a456-426614174111",
}

BRAVE_OK = {
    "type": "search",
    "query": {"original": "python asyncio", "more_results_available": True},
    "mixed": {"type": "mixed", "main": [{"type": "web", "index": 0, "all": False}]},
    "web": {
        "type": "search",
        "family_friendly": True,
        "results": [
            {
                "type": "search_result",
                "subtype": "generic",
                "title": "asyncio &mdash; Asynchronous I/O",
                "url": "https://docs.python.org/3/library/asyncio.html",
                "description": "<strong>asyncio</strong> is a library to write concurrent code using "
                "the async/await syntax &amp; more.",
                "is_source_local": False,
                "language": "en",
                "family_friendly": True,
                "meta_url": {"scheme": "https", "netloc": "docs.python.org", "hostname": "docs.python.org"},
                "age": "2 days ago",
            },
            {
                "type": "search_result",
                "title": "Python&#x27;s asyncio: A Hands-On Walkthrough",
                "url": "https://realpython.com/async-io-python/",
                "description": "A <strong>hands-on</strong> walkthrough.",
            },
        ],
    },
}

SEARXNG_RESULTS = [
    {
        "url": f"https://example.org/page-{i}",
        "title": f"Result {i}",
        "content": f"Snippet number {i}",
        "engine": "duckduckgo",
        "engines": ["duckduckgo", "brave"],
        "parsed_url": ["https", "example.org", f"/page-{i}", "", "", ""],
        "template": "default.html",
        "positions": [i + 1],
        "score": 10.0 - i,
        "category": "general",
    }
    for i in range(15)
]
SEARXNG_OK = {
    "query": "python asyncio",
    "number_of_results": 0,
    "results": SEARXNG_RESULTS,
    "answers": [],
    "corrections": [],
    "infoboxes": [],
    "suggestions": ["python asyncio tutorial"],
    "unresponsive_engines": [["google", "timeout"]],
}

# --- Tavily ----------------------------------------------------------------------------------------


async def test_tavily_request_shape_and_result_cleanup(srv: LocalHTTPServer) -> None:
    serve(srv, "/tavily/search", json_response(TAVILY_OK))
    backend = TavilyBackend(api_key=" tvly-test-key ", base_url=srv.url("/tavily"), timeout=5)

    response = success(await web_search("  python asyncio task groups ", 5, backend=backend))

    request = only_request(srv)
    assert request.method == "POST"
    assert request.path == "/tavily/search"
    assert request.headers["authorization"] == "Bearer tvly-test-key"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert body["query"] == "python asyncio task groups"
    assert body["max_results"] == 5
    assert body["include_raw_content"] is False
    assert "api_key" not in body  # the key travels in the header only

    assert response.backend == "tavily"
    assert response.query == "python asyncio task groups"
    assert response.results == [
        SearchHit(
            title="asyncio — Task Groups",
            url="https://docs.python.org/3/library/asyncio-task.html",
            snippet="Task groups combine a task creation API with a convenient way to wait.",
        ),
        SearchHit(title="https://peps.python.org/pep-0654/", url="https://peps.python.org/pep-0654/"),
        SearchHit(title="Real Python", url="https://realpython.com/async-io-python/", snippet="ok"),
    ]


async def test_tavily_caps_results(srv: LocalHTTPServer) -> None:
    serve(srv, "/search", json_response(TAVILY_OK))
    backend = TavilyBackend(api_key="k", base_url=srv.url(""), timeout=5)

    hits = await backend.search("q", max_results=2)

    assert json.loads(only_request(srv).body)["max_results"] == 2
    assert [h.url for h in hits] == [
        "https://docs.python.org/3/library/asyncio-task.html",
        "https://peps.python.org/pep-0654/",
    ]


@pytest.mark.parametrize(
    ("status", "body", "retryable", "expected"),
    [
        (
            401,
            {"detail": {"error": "Unauthorized: missing or invalid API key."}},
            False,
            ["Tavily returned 401", "RESEARCH_AGENT_TAVILY_API_KEY", "missing or invalid API key"],
        ),
        (429, {"detail": {"error": "Rate limit exceeded"}}, True, ["Tavily returned 429", "rate limited"]),
        (432, {"detail": {"error": "Plan limit exceeded"}}, False, ["Tavily returned 432", "credit limit"]),
        (500, {"detail": {"error": "Internal error"}}, True, ["Tavily returned 500", "retry later"]),
    ],
)
async def test_tavily_http_errors_become_failures(
    srv: LocalHTTPServer, status: int, body: object, retryable: bool, expected: list[str]
) -> None:
    serve(srv, "/search", json_response(body, status=status, headers={"Retry-After": "30"}))
    backend = TavilyBackend(api_key="tvly-secret-value", base_url=srv.url(""), timeout=5)

    result = failure(await web_search("q", 3, backend=backend))

    assert result.error == "backend_error"
    assert result.retryable is retryable
    for text in expected:
        assert text in result.message
    assert "tvly-secret-value" not in result.message


# --- Brave -----------------------------------------------------------------------------------------


async def test_brave_request_shape_and_markup_stripping(srv: LocalHTTPServer) -> None:
    serve(srv, "/res/v1/web/search", json_response(BRAVE_OK))
    backend = BraveBackend(api_key="BSA-test", base_url=srv.url("") + "/", timeout=5)

    response = success(await web_search("python asyncio", 4, backend=backend))

    request = only_request(srv)
    assert request.method == "GET"
    assert request.path == "/res/v1/web/search"
    assert request.headers["x-subscription-token"] == "BSA-test"
    assert request.headers["accept"] == "application/json"
    assert "authorization" not in request.headers
    params = query_params(request)
    assert params["q"] == "python asyncio"
    assert params["count"] == "4"
    assert response.backend == "brave"
    assert response.results == [
        SearchHit(
            title="asyncio — Asynchronous I/O",
            url="https://docs.python.org/3/library/asyncio.html",
            snippet="asyncio is a library to write concurrent code using the async/await syntax & more.",
        ),
        SearchHit(
            title="Python's asyncio: A Hands-On Walkthrough",
            url="https://realpython.com/async-io-python/",
            snippet="A hands-on walkthrough.",
        ),
    ]


async def test_brave_without_web_section_is_empty(srv: LocalHTTPServer) -> None:
    serve(srv, "/res/v1/web/search", json_response({"type": "search", "query": {"original": "zzqx"}}))
    backend = BraveBackend(api_key="k", base_url=srv.url(""), timeout=5)

    response = success(await web_search("zzqx", 5, backend=backend))

    assert response.results == []
    assert srv.hits["/res/v1/web/search"] == 1


@pytest.mark.parametrize(
    ("status", "retryable", "expected"),
    [
        (401, False, ["Brave returned 401", "RESEARCH_AGENT_BRAVE_API_KEY", "token is invalid"]),
        (429, True, ["Brave returned 429", "Retry-After: 1", "wait before searching again"]),
        (503, True, ["Brave returned 503", "retry later"]),
    ],
)
async def test_brave_http_errors_become_failures(
    srv: LocalHTTPServer, status: int, retryable: bool, expected: list[str]
) -> None:
    error = {
        "type": "ErrorResponse",
        "error": {
            "id": "0b8f4d1e",
            "status": status,
            "code": "SUBSCRIPTION_TOKEN_INVALID",
            "detail": "The provided subscription token is invalid.",
            "meta": {"component": "authentication"},
        },
        "time": 1_700_000_000,
    }
    serve(srv, "/res/v1/web/search", json_response(error, status=status, headers={"Retry-After": "1"}))
    backend = BraveBackend(api_key="k", base_url=srv.url(""), timeout=5)

    result = failure(await web_search("q", 5, backend=backend))

    assert result.error == "backend_error"
    assert result.retryable is retryable
    for text in expected:
        assert text in result.message


# --- SearXNG ---------------------------------------------------------------------------------------


async def test_searxng_request_shape_and_cap(srv: LocalHTTPServer) -> None:
    serve(srv, "/searx/search", json_response(SEARXNG_OK))
    backend = SearxngBackend(base_url=srv.url("/searx/"), timeout=5)

    response = success(await web_search("python asyncio", 3, backend=backend))

    request = only_request(srv)
    assert request.method == "GET"
    assert request.path == "/searx/search"
    params = query_params(request)
    assert params["q"] == "python asyncio"
    assert params["format"] == "json"
    assert response.backend == "searxng"
    assert response.results == [
        SearchHit(title=f"Result {i}", url=f"https://example.org/page-{i}", snippet=f"Snippet number {i}")
        for i in range(3)
    ]


async def test_searxng_json_format_disabled_explains_fix(srv: LocalHTTPServer) -> None:
    serve(srv, "/search", Response(status=403, body=b"<html><body>Forbidden</body></html>"))
    backend = SearxngBackend(base_url=srv.url(""), timeout=5)

    result = failure(await web_search("q", 5, backend=backend))

    assert result.error == "backend_error"
    assert "SearXNG returned 403" in result.message
    assert "search.formats" in result.message
    assert "(Forbidden)" in result.message


# --- malformed responses, timeouts, network errors (shared plumbing) -------------------------------


@pytest.mark.parametrize(
    "body",
    [b"<html>this is not json</html>", b'{"results": "not a list"}', b"[]", b'{"results": [1, 2'],
)
async def test_malformed_json_becomes_failure(srv: LocalHTTPServer, body: bytes) -> None:
    serve(srv, "/search", Response(body=body, headers={"Content-Type": "application/json"}))
    backend = SearxngBackend(base_url=srv.url(""), timeout=5)

    result = failure(await web_search("q", 5, backend=backend))

    assert result.error == "backend_error"
    assert "SearXNG returned a malformed response" in result.message


async def test_slow_upstream_times_out(srv: LocalHTTPServer) -> None:
    srv.route("/search", sleeping(2.0))
    backend = TavilyBackend(api_key="k", base_url=srv.url(""), timeout=0.2)

    started = time.monotonic()
    result = failure(await web_search("q", 5, backend=backend))

    assert time.monotonic() - started < 1.5
    assert result.error == "timeout"
    assert result.retryable is True
    assert "Tavily did not answer within 0.2s" in result.message


async def test_slow_drip_body_hits_total_timeout(srv: LocalHTTPServer) -> None:
    # Each chunk arrives well within httpx's per-read timeout; only a total deadline stops this.
    chunks = [b'{"results": ['] + [b" " * 10] * 10 + [b"]}"]
    serve(srv, "/search", Response(chunks=chunks, chunk_delay=0.1, headers={"Content-Type": "application/json"}))
    backend = SearxngBackend(base_url=srv.url(""), timeout=0.4)

    started = time.monotonic()
    result = failure(await web_search("q", 5, backend=backend))

    assert time.monotonic() - started < 1.0
    assert result.error == "timeout"


async def test_unreachable_upstream_is_network_error() -> None:
    backend = BraveBackend(api_key="k", base_url=f"http://127.0.0.1:{closed_port()}", timeout=2)

    result = failure(await web_search("q", 5, backend=backend))

    assert result.error == "network_error"
    assert result.retryable is True
    assert "could not reach Brave at http://127.0.0.1:" in result.message


async def test_oversized_body_is_refused(srv: LocalHTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_search, "MAX_RESPONSE_BYTES", 1024)
    serve(srv, "/search", json_response({"results": [], "padding": "x" * 5000}))
    backend = SearxngBackend(base_url=srv.url(""), timeout=5)

    result = failure(await web_search("q", 5, backend=backend))

    assert result.error == "backend_error"
    assert "not a search API response" in result.message


async def test_injected_client_is_used(srv: LocalHTTPServer) -> None:
    serve(srv, "/search", json_response(SEARXNG_OK))
    async with httpx.AsyncClient(headers={"User-Agent": "research-agent-test/1"}) as client:
        backend = build_search_backend(
            backend="searxng", tavily_api_key=None, brave_api_key=None, searxng_url=srv.url(""), client=client
        )
        hits = await backend.search("q", max_results=1)

    assert len(hits) == 1
    assert only_request(srv).headers["user-agent"] == "research-agent-test/1"


async def test_loopback_guard_refuses_outside_addresses() -> None:
    # A reserved `.invalid` name: even if the guard failed, the lookup could never resolve.
    backend = SearxngBackend(base_url="http://searx.example.invalid:9", timeout=1)

    result = failure(await web_search("q", 5, backend=backend))

    assert result.error == "network_error"
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("api.tavily.com", 443)


# --- DuckDuckGo via an injected fake DDGS ----------------------------------------------------------


@dataclass
class FakeDDGS:
    results: list[dict[str, str]] = field(default_factory=list)
    error: Exception | None = None
    delay: float = 0.0
    calls: list[dict[str, object]] = field(default_factory=list)

    def text(
        self, query: str, *, region: str, safesearch: str, max_results: int | None, backend: str
    ) -> list[dict[str, str]]:
        self.calls.append(
            {
                "query": query,
                "region": region,
                "safesearch": safesearch,
                "max_results": max_results,
                "backend": backend,
            }
        )
        if self.delay:
            threading.Event().wait(self.delay)
        if self.error is not None:
            raise self.error
        return self.results


async def test_duckduckgo_maps_ddgs_results() -> None:
    fake = FakeDDGS(
        results=[
            {"title": " Python\tdocs ", "href": "https://docs.python.org/3/", "body": "The  official docs."},
            {"title": "again", "href": "https://docs.python.org/3/", "body": "duplicate"},
            {"title": "no url", "body": "dropped"},
            {"title": "Mail", "href": "mailto:someone@example.org", "body": "dropped"},
            {"title": "PyPI", "href": "https://pypi.org/", "body": ""},
        ]
    )
    backend = DuckDuckGoBackend(region="uk-en", safesearch="off", timeout=5, ddgs_factory=lambda: fake)

    response = success(await web_search("python", 4, backend=backend))

    assert fake.calls == [
        {"query": "python", "region": "uk-en", "safesearch": "off", "max_results": 4, "backend": "auto"}
    ]
    assert response.backend == "duckduckgo"
    assert response.results == [
        SearchHit(title="Python docs", url="https://docs.python.org/3/", snippet="The official docs."),
        SearchHit(title="PyPI", url="https://pypi.org/"),
    ]


@pytest.mark.parametrize(
    ("error", "code", "retryable", "expected"),
    [
        (
            DDGSException("https://html.duckduckgo.com/html 202 Ratelimit"),
            "backend_error",
            True,
            "search failed",
        ),
        (RatelimitException("202 Ratelimit"), "backend_error", True, "RESEARCH_AGENT_TAVILY_API_KEY"),
        (TimeoutException("request timed out"), "timeout", True, "DuckDuckGo timed out"),
    ],
)
async def test_duckduckgo_errors_become_failures(error: Exception, code: str, retryable: bool, expected: str) -> None:
    backend = DuckDuckGoBackend(timeout=5, ddgs_factory=lambda: FakeDDGS(error=error))

    result = failure(await web_search("python", 5, backend=backend))

    assert result.error == code
    assert result.retryable is retryable
    assert expected in result.message


async def test_duckduckgo_no_results_is_empty_not_error() -> None:
    backend = DuckDuckGoBackend(timeout=5, ddgs_factory=lambda: FakeDDGS(error=DDGSException("No results found.")))

    response = success(await web_search("zzqx", 5, backend=backend))

    assert response.results == []


async def test_duckduckgo_stuck_thread_times_out() -> None:
    backend = DuckDuckGoBackend(timeout=0.2, ddgs_factory=lambda: FakeDDGS(delay=1.5))

    started = time.monotonic()
    result = failure(await web_search("python", 5, backend=backend))

    assert time.monotonic() - started < 1.0
    assert result.error == "timeout"


# --- build_search_backend --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "env_var"),
    [
        ("tavily", "RESEARCH_AGENT_TAVILY_API_KEY"),
        ("brave", "RESEARCH_AGENT_BRAVE_API_KEY"),
        ("searxng", "RESEARCH_AGENT_SEARXNG_URL"),
    ],
)
def test_build_search_backend_names_missing_setting(backend: _search.BackendName, env_var: str) -> None:
    with pytest.raises(SearchNotConfiguredError) as info:
        build_search_backend(backend=backend, tavily_api_key=None, brave_api_key="  ", searxng_url="")

    assert info.value.code == "not_configured"
    assert env_var in info.value.message


def test_build_search_backend_rejects_non_http_searxng_url() -> None:
    with pytest.raises(SearchNotConfiguredError, match="RESEARCH_AGENT_SEARXNG_URL"):
        build_search_backend(backend="searxng", tavily_api_key=None, brave_api_key=None, searxng_url="localhost:8888")


def test_build_search_backend_builds_each_backend() -> None:
    built = {
        name: build_search_backend(
            backend=name, tavily_api_key="t", brave_api_key="b", searxng_url="http://127.0.0.1:8888"
        )
        for name in ("duckduckgo", "tavily", "brave", "searxng")
    }

    assert {name: type(b) for name, b in built.items()} == {
        "duckduckgo": DuckDuckGoBackend,
        "tavily": TavilyBackend,
        "brave": BraveBackend,
        "searxng": SearxngBackend,
    }
    assert all(b.name == name for name, b in built.items())


# --- WebSearchArgs and the web_search wrapper ------------------------------------------------------


def test_web_search_args_strip_and_default() -> None:
    args = WebSearchArgs(query="  asyncio  ")

    assert args.query == "asyncio"
    assert args.max_results == 5


@pytest.mark.parametrize(
    ("query", "max_results", "field_name"),
    [
        ("   ", 5, "query"),
        ("", 5, "query"),
        ("x" * 401, 5, "query"),
        ("ok", 0, "max_results"),
        ("ok", 11, "max_results"),
    ],
)
def test_web_search_args_reject_out_of_bounds(query: str, max_results: int, field_name: str) -> None:
    with pytest.raises(ValidationError) as info:
        WebSearchArgs(query=query, max_results=max_results)

    assert [e["loc"] for e in info.value.errors()] == [(field_name,)]


@dataclass
class RecordingBackend:
    name: str = "recording"
    hits: list[SearchHit] = field(default_factory=list)
    error: Exception | None = None
    calls: list[tuple[str, int]] = field(default_factory=list)

    async def search(self, query: str, *, max_results: int) -> list[SearchHit]:
        self.calls.append((query, max_results))
        if self.error is not None:
            raise self.error
        return self.hits


@pytest.mark.parametrize(("query", "max_results"), [("   ", 5), ("ok", 0), ("ok", 11)])
async def test_web_search_invalid_arguments_never_reach_backend(query: str, max_results: int) -> None:
    backend = RecordingBackend()

    result = failure(await web_search(query, max_results, backend=backend))

    assert result.error == "invalid_argument"
    assert result.message.startswith("invalid web_search arguments: ")
    assert ("query:" in result.message) is (query == "   ")
    assert ("max_results:" in result.message) is (query != "   ")
    assert backend.calls == []


async def test_web_search_unexpected_exception_is_logged_failure(caplog: pytest.LogCaptureFixture) -> None:
    backend = RecordingBackend(error=KeyError("boom"))

    with caplog.at_level(logging.ERROR, logger="tools._search_tool"):
        result = failure(await web_search("q", 5, backend=backend))

    assert result.error == "backend_error"
    assert "recording search backend failed unexpectedly (KeyError)" in result.message
    assert any(record.exc_info for record in caplog.records)


async def test_web_search_passes_typed_errors_through() -> None:
    backend = RecordingBackend(error=SearchNotConfiguredError("set RESEARCH_AGENT_X"))

    result = failure(await web_search("q", 5, backend=backend))

    assert result == ToolFailure(error="not_configured", message="set RESEARCH_AGENT_X", retryable=False)


async def test_web_search_recleans_third_party_backend_hits() -> None:
    hits = [SearchHit(title=f"t{i % 3}", url=f"https://example.org/{i % 3}", snippet="s") for i in range(9)]
    backend = RecordingBackend(hits=[*hits, SearchHit(title="bad", url="file:///etc/passwd")])

    response = success(await web_search("q", 10, backend=backend))

    assert [h.url for h in response.results] == [f"https://example.org/{i}" for i in range(3)]
    assert backend.calls == [("q", 10)]


async def test_web_search_keeps_python_docs_corpus_urls_intact() -> None:
    urls = [
        "corpus://python-docs/topics/nonlocal",
        "corpus://python-docs/modules/xml.etree.ElementTree",
        "corpus://python-docs/modules/functools#lru_cache",  # a documented name: the fragment is its identity
        "corpus://python-docs/modules/functools#partial",
        "corpus://python-docs/modules/collections#OrderedDict.copy",
        "corpus://python-docs/modules/builtins#str.join",
    ]
    backend = RecordingBackend(hits=[SearchHit(title=u, url=u, snippet="s") for u in urls])

    response = success(await web_search("q", 10, backend=backend))

    assert [h.url for h in response.results] == urls


def test_clean_hits_bounds_text() -> None:
    hits = clean_hits([("T" * 500, "https://example.org/", "word " * 400)], max_results=5)

    assert len(hits) == 1
    assert len(hits[0].title) == 300
    assert hits[0].title.endswith("…")
    assert len(hits[0].snippet) <= 1000
    assert hits[0].snippet.endswith("…")


def test_search_backend_error_codes_are_tool_error_codes() -> None:
    errors: list[SearchBackendError] = [
        SearchBackendError("x"),
        SearchNotConfiguredError("x"),
        _search.SearchTimeoutError("x"),
        _search.SearchNetworkError("x"),
    ]

    failures = [ToolFailure(error=e.code, message=e.message, retryable=e.retryable) for e in errors]

    assert [f.error for f in failures] == ["backend_error", "not_configured", "timeout", "network_error"]
    assert [f.retryable for f in failures] == [False, False, True, True]
