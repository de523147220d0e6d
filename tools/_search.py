"""Web search backends: one small class per provider, all returning cleaned `SearchHit`s.

Tavily, Brave and SearXNG are called with plain httpx (injectable client and base URL, so tests run
against a local server); DuckDuckGo goes through the `ddgs` library, which is synchronous and runs in a
worker thread. Every failure is raised as a `SearchBackendError` whose `code` maps onto a
`ToolErrorCode`, so the tool layer can hand the model a structured error instead of crashing the run.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from math import ceil
from typing import ClassVar, Literal, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread
import httpx
from ddgs import DDGS
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from tools._types import SearchHit
from tools.errors import ResearchAgentError

__all__ = [
    "BraveBackend",
    "DDGSClient",
    "DuckDuckGoBackend",
    "SearchBackend",
    "SearchBackendError",
    "SearchErrorCode",
    "SearchNetworkError",
    "SearchNotConfiguredError",
    "SearchTimeoutError",
    "SearxngBackend",
    "TavilyBackend",
    "build_search_backend",
    "clean_hits",
]

MAX_TITLE_CHARS = 300
MAX_SNIPPET_CHARS = 1000
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Search APIs answer with a few kB; a bigger body is a misbehaving (possibly self-hosted) upstream."""
DEFAULT_TIMEOUT = 15.0

TAVILY_KEY_ENV = "RESEARCH_AGENT_TAVILY_API_KEY"
BRAVE_KEY_ENV = "RESEARCH_AGENT_BRAVE_API_KEY"
SEARXNG_URL_ENV = "RESEARCH_AGENT_SEARXNG_URL"

BackendName = Literal["duckduckgo", "tavily", "brave", "searxng"]
SearchErrorCode = Literal["backend_error", "timeout", "network_error", "not_configured"]
"""The subset of `ToolErrorCode` a search backend can produce."""


# --- errors ----------------------------------------------------------------------------------------


class SearchBackendError(ResearchAgentError):
    """A search backend failed; `code` is the `ToolErrorCode` the model sees, `message` says what to do."""

    code: ClassVar[SearchErrorCode] = "backend_error"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class SearchNotConfiguredError(SearchBackendError):
    """The backend cannot run as configured (missing key or URL); raised at construction time."""

    code: ClassVar[SearchErrorCode] = "not_configured"


class SearchTimeoutError(SearchBackendError):
    """The provider did not answer in time."""

    code: ClassVar[SearchErrorCode] = "timeout"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)


class SearchNetworkError(SearchBackendError):
    """The provider could not be reached (DNS, connection refused, TLS, broken connection)."""

    code: ClassVar[SearchErrorCode] = "network_error"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)


# --- protocol --------------------------------------------------------------------------------------


class SearchBackend(Protocol):
    """Anything that turns a query into cleaned, de-duplicated hits (at most `max_results`)."""

    name: str

    async def search(self, query: str, *, max_results: int) -> list[SearchHit]:
        """Search for `query`; raise `SearchBackendError` on failure."""
        ...


# --- result cleanup --------------------------------------------------------------------------------

_T = TypeVar("_T")

_WHITESPACE = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]{0,200}>")


def _squash(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _bound(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _strip_markup(text: str) -> str:
    """Brave highlights matches with `<strong>` and escapes entities; the model wants plain text."""
    return html.unescape(_TAG.sub("", text))


WEB_SCHEMES = frozenset({"http", "https"})


def _normalize_url(raw: str, *, schemes: frozenset[str], keep_fragment: bool) -> str | None:
    """The URL if it is absolute with an allowed scheme and a host, else None."""
    url = raw.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in schemes or not parts.hostname:
        return None
    return urlunsplit(parts if keep_fragment else parts._replace(fragment=""))


def clean_hits(
    raw: Iterable[tuple[str, str, str]],
    *,
    max_results: int,
    schemes: frozenset[str] = WEB_SCHEMES,
    keep_fragments: bool = False,
) -> list[SearchHit]:
    """Turn `(title, url, snippet)` triples into bounded hits: allowed schemes only, unique URLs, capped.

    Web backends drop fragments (the same page under two anchors is one source); the corpus keeps them
    because its documents are sections of one page (`simple_stmts.html#nonlocal`).
    """
    hits: list[SearchHit] = []
    seen: set[str] = set()
    for title, url, snippet in raw:
        if len(hits) >= max_results:
            break
        clean_url = _normalize_url(url, schemes=schemes, keep_fragment=keep_fragments)
        if clean_url is None or clean_url in seen:
            continue
        seen.add(clean_url)
        clean_title = _squash(title) or clean_url
        hits.append(
            SearchHit(
                title=_bound(clean_title, MAX_TITLE_CHARS),
                url=clean_url,
                snippet=_bound(_squash(snippet), MAX_SNIPPET_CHARS),
            )
        )
    return hits


def _text(value: str | None) -> str:
    return value if isinstance(value, str) else ""


# --- HTTP plumbing shared by Tavily, Brave and SearXNG ---------------------------------------------


def _error_detail(body: bytes) -> str:
    """A short human-readable reason from an error body (Tavily `detail.error`, Brave `error.detail`)."""
    try:
        data: object = TypeAdapter(object).validate_json(body)
    except ValidationError:  # a proxy's HTML error page, or plain text
        return _bound(_squash(_strip_markup(body.decode("utf-8", "replace"))), 200)
    for _ in range(3):
        if isinstance(data, str):
            return _bound(_squash(data), 200)
        if not isinstance(data, dict):
            break
        for key in ("detail", "error", "message"):
            if key in data:
                data = data[key]
                break
        else:
            break
    return ""


async def _read_limited(response: httpx.Response, *, provider: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise SearchBackendError(
                f"{provider} sent more than {MAX_RESPONSE_BYTES // 1024 // 1024} MB; this is not a search API response"
            )
        chunks.append(chunk)
    return b"".join(chunks)


JSONBody = dict[str, str | int | bool]
QueryParams = dict[str, str | int]


async def _send(
    client: httpx.AsyncClient | None,
    method: Literal["GET", "POST"],
    url: str,
    *,
    provider: str,
    request_timeout: float,
    headers: Mapping[str, str],
    params: QueryParams | None = None,
    json: JSONBody | None = None,
) -> tuple[int, httpx.Headers, bytes]:
    """Send one request (on a short-lived client when none was injected) and map transport errors.

    The timeout is set here, not taken from the client, so an injected client cannot make a search hang.
    """

    async def exchange(http: httpx.AsyncClient) -> tuple[int, httpx.Headers, bytes]:
        request = http.build_request(method, url, params=params, json=json, headers=headers, timeout=request_timeout)
        response = await http.send(request, stream=True, follow_redirects=False)
        try:
            body = await _read_limited(response, provider=provider)
        finally:
            await response.aclose()
        return response.status_code, response.headers, body

    try:
        # httpx timeouts are per phase; fail_after bounds the whole exchange, slow-drip bodies included.
        with anyio.fail_after(request_timeout):
            if client is None:
                async with httpx.AsyncClient(timeout=request_timeout) as owned:
                    return await exchange(owned)
            return await exchange(client)
    except (httpx.TimeoutException, TimeoutError) as exc:
        raise SearchTimeoutError(
            f"{provider} did not answer within {request_timeout:g}s; retry, or use fewer/simpler queries"
        ) from exc
    except httpx.TransportError as exc:
        where = urlsplit(url)
        raise SearchNetworkError(
            f"could not reach {provider} at {where.scheme}://{where.netloc}: {type(exc).__name__}; "
            "check the network and the configured URL"
        ) from exc


def _status_error(
    provider: str,
    status: int,
    headers: httpx.Headers,
    body: bytes,
    *,
    hints: Mapping[int, str],
) -> SearchBackendError:
    """An actionable error for a non-2xx answer; `hints` carries provider-specific advice per status."""
    detail = _error_detail(body)
    hint = hints.get(status)
    retryable = False
    if hint is None:
        if status == 429:
            retry_after = headers.get("retry-after")
            wait = f" (Retry-After: {retry_after})" if retry_after else ""
            hint = f"rate limited{wait}; wait before searching again"
            retryable = True
        elif status >= 500:
            hint = "the service is failing; retry later"
            retryable = True
        elif 300 <= status < 400:
            hint = "unexpected redirect; check the configured base URL"
        else:
            hint = "the request was rejected"
    elif status == 429 or status >= 500:
        retryable = True
    suffix = f" ({detail})" if detail else ""
    return SearchBackendError(f"{provider} returned {status}: {hint}{suffix}", retryable=retryable)


def _check_base_url(base_url: str, *, provider: str, env: str | None) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        where = f"; set {env} to e.g. https://search.example.org" if env else ""
        raise SearchNotConfiguredError(f"{provider} base URL {base_url!r} is not an http(s) URL{where}")
    return base_url.strip().rstrip("/")


def _parse(adapter: TypeAdapter[_T], body: bytes, *, provider: str) -> _T:
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]["msg"] if exc.errors() else "invalid JSON"
        raise SearchBackendError(
            f"{provider} returned a malformed response ({first}); the API may have changed",
            retryable=True,
        ) from exc


def _items(adapter: TypeAdapter[_T], items: Iterable[object]) -> Iterator[_T]:
    """Validate list items one by one so one odd result does not discard the whole page."""
    for item in items:
        try:
            yield adapter.validate_python(item)
        except ValidationError:
            continue


# --- Tavily ----------------------------------------------------------------------------------------


class _TavilyResult(TypedDict, total=False):
    title: str | None
    url: str | None
    content: str | None
    score: float | None


class _TavilyResponse(TypedDict):
    results: list[object]


_tavily_response = TypeAdapter(_TavilyResponse)
_tavily_result = TypeAdapter(_TavilyResult)


class TavilyBackend:
    """Tavily's search API (https://docs.tavily.com/documentation/api-reference/endpoint/search)."""

    name = "tavily"
    _hints: ClassVar[Mapping[int, str]] = {
        400: "the request was rejected as invalid",
        401: f"the API key was refused; check {TAVILY_KEY_ENV}",
        403: f"the API key is not allowed to search; check {TAVILY_KEY_ENV}",
        432: "the plan's monthly credit limit is exhausted; upgrade the plan or switch search backend",
        433: "the pay-as-you-go spending limit is reached; raise it or switch search backend",
    }

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str = "https://api.tavily.com",
        search_depth: Literal["basic", "advanced"] = "basic",
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise SearchNotConfiguredError(f"Tavily needs an API key; set {TAVILY_KEY_ENV}")
        self._api_key = api_key.strip()
        self._base_url = _check_base_url(base_url, provider="Tavily", env=None)
        self._search_depth = search_depth
        self._timeout = timeout
        self._client = client

    async def search(self, query: str, *, max_results: int) -> list[SearchHit]:
        count = max(1, min(max_results, 20))
        status, headers, body = await _send(
            self._client,
            "POST",
            f"{self._base_url}/search",
            provider="Tavily",
            request_timeout=self._timeout,
            json={
                "query": query,
                "max_results": count,
                "search_depth": self._search_depth,
                "topic": "general",
                "include_answer": False,
                "include_raw_content": False,
                "include_images": False,
            },
            headers={"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"},
        )
        if not 200 <= status < 300:
            raise _status_error("Tavily", status, headers, body, hints=self._hints)
        data = _parse(_tavily_response, body, provider="Tavily")
        return clean_hits(
            (
                (_text(r.get("title")), _text(r.get("url")), _text(r.get("content")))
                for r in _items(_tavily_result, data["results"])
            ),
            max_results=max_results,
        )


# --- Brave -----------------------------------------------------------------------------------------


class _BraveResult(TypedDict, total=False):
    title: str | None
    url: str | None
    description: str | None


class _BraveWeb(TypedDict, total=False):
    results: list[object]


class _BraveResponse(TypedDict, total=False):
    type: str
    web: _BraveWeb


_brave_response = TypeAdapter(_BraveResponse)
_brave_result = TypeAdapter(_BraveResult)


class BraveBackend:
    """Brave Search's web endpoint (https://api-dashboard.search.brave.com/app/documentation/web-search)."""

    name = "brave"
    _hints: ClassVar[Mapping[int, str]] = {
        401: f"the subscription token was refused; check {BRAVE_KEY_ENV}",
        403: f"the subscription token is not allowed to use web search; check {BRAVE_KEY_ENV} and the plan",
        422: f"the request or subscription token was rejected; check {BRAVE_KEY_ENV}",
    }

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str = "https://api.search.brave.com",
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise SearchNotConfiguredError(f"Brave Search needs an API key; set {BRAVE_KEY_ENV}")
        self._api_key = api_key.strip()
        self._base_url = _check_base_url(base_url, provider="Brave", env=None)
        self._timeout = timeout
        self._client = client

    async def search(self, query: str, *, max_results: int) -> list[SearchHit]:
        count = max(1, min(max_results, 20))
        status, headers, body = await _send(
            self._client,
            "GET",
            f"{self._base_url}/res/v1/web/search",
            provider="Brave",
            request_timeout=self._timeout,
            params={"q": query, "count": count, "text_decorations": "false", "result_filter": "web"},
            headers={"X-Subscription-Token": self._api_key, "Accept": "application/json"},
        )
        if not 200 <= status < 300:
            raise _status_error("Brave", status, headers, body, hints=self._hints)
        data = _parse(_brave_response, body, provider="Brave")
        results = data.get("web", {}).get("results", [])
        return clean_hits(
            (
                (
                    _strip_markup(_text(r.get("title"))),
                    _text(r.get("url")),
                    _strip_markup(_text(r.get("description"))),
                )
                for r in _items(_brave_result, results)
            ),
            max_results=max_results,
        )


# --- SearXNG ---------------------------------------------------------------------------------------


class _SearxngResult(TypedDict, total=False):
    title: str | None
    url: str | None
    content: str | None


class _SearxngResponse(TypedDict):
    results: list[object]


_searxng_response = TypeAdapter(_SearxngResponse)
_searxng_result = TypeAdapter(_SearxngResult)


class SearxngBackend:
    """A self-hosted SearXNG instance's JSON API (https://docs.searxng.org/dev/search_api.html)."""

    name = "searxng"
    _hints: ClassVar[Mapping[int, str]] = {
        403: "the JSON format is disabled; add `json` to `search.formats` in the instance's settings.yml",
        404: f"no SearXNG search endpoint at this URL; check {SEARXNG_URL_ENV}",
        429: "the instance's bot limiter blocked this client; allow-list it or set `server.limiter: false`",
    }

    def __init__(
        self,
        *,
        base_url: str | None,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url or not base_url.strip():
            raise SearchNotConfiguredError(f"SearXNG needs the instance URL; set {SEARXNG_URL_ENV}")
        self._base_url = _check_base_url(base_url, provider="SearXNG", env=SEARXNG_URL_ENV)
        self._timeout = timeout
        self._client = client

    async def search(self, query: str, *, max_results: int) -> list[SearchHit]:
        status, headers, body = await _send(
            self._client,
            "GET",
            f"{self._base_url}/search",
            provider="SearXNG",
            request_timeout=self._timeout,
            params={"q": query, "format": "json", "pageno": 1},
            headers={"Accept": "application/json"},
        )
        if not 200 <= status < 300:
            raise _status_error("SearXNG", status, headers, body, hints=self._hints)
        data = _parse(_searxng_response, body, provider="SearXNG")
        return clean_hits(
            (
                (_text(r.get("title")), _text(r.get("url")), _text(r.get("content")))
                for r in _items(_searxng_result, data["results"])
            ),
            max_results=max_results,
        )


# --- DuckDuckGo (ddgs) -----------------------------------------------------------------------------


class _DDGSResult(TypedDict, total=False):
    title: str | None
    href: str | None
    body: str | None


_ddgs_result = TypeAdapter(_DDGSResult)


class DDGSClient(Protocol):
    """The slice of `ddgs.DDGS` used here; tests inject a fake with the same `text` method."""

    def text(
        self, query: str, *, region: str, safesearch: str, max_results: int | None, backend: str
    ) -> list[dict[str, str]]: ...


def _default_ddgs_factory(timeout: float) -> Callable[[], DDGSClient]:
    def make() -> DDGSClient:
        client: DDGSClient = DDGS(timeout=max(1, ceil(timeout)))
        return client

    return make


class DuckDuckGoBackend:
    """Key-less search through the `ddgs` metasearch library (sync, so it runs in a worker thread)."""

    name = "duckduckgo"

    def __init__(
        self,
        *,
        region: str = "wt-wt",
        safesearch: Literal["on", "moderate", "off"] = "moderate",
        engines: str = "auto",
        timeout: float = DEFAULT_TIMEOUT,
        ddgs_factory: Callable[[], DDGSClient] | None = None,
    ) -> None:
        self._region = region
        self._safesearch = safesearch
        self._engines = engines
        self._timeout = timeout
        self._factory = ddgs_factory or _default_ddgs_factory(timeout)

    def _search_sync(self, query: str, max_results: int) -> list[dict[str, str]]:
        return self._factory().text(
            query,
            region=self._region,
            safesearch=self._safesearch,
            max_results=max_results,
            backend=self._engines,
        )

    async def search(self, query: str, *, max_results: int) -> list[SearchHit]:
        try:
            with anyio.fail_after(self._timeout):
                # abandon_on_cancel: a stuck ddgs call cannot be interrupted, but it must not hold the run.
                raw = await anyio.to_thread.run_sync(
                    self._search_sync, query, max(1, max_results), abandon_on_cancel=True
                )
        except TimeoutError as exc:
            raise SearchTimeoutError(
                f"DuckDuckGo did not answer within {self._timeout:g}s; retry or rephrase the query"
            ) from exc
        except TimeoutException as exc:
            raise SearchTimeoutError(f"DuckDuckGo timed out ({exc}); retry later") from exc
        except RatelimitException as exc:
            raise SearchBackendError(
                "DuckDuckGo rate-limited this client; wait before searching again, or configure "
                f"a keyed backend ({TAVILY_KEY_ENV} / {BRAVE_KEY_ENV})",
                retryable=True,
            ) from exc
        except DDGSException as exc:
            # ddgs signals an empty result set with this exact message rather than an empty list.
            if str(exc) == "No results found.":
                return []
            raise SearchBackendError(f"DuckDuckGo search failed: {_bound(str(exc), 200)}", retryable=True) from exc
        return clean_hits(
            ((_text(r.get("title")), _text(r.get("href")), _text(r.get("body"))) for r in _items(_ddgs_result, raw)),
            max_results=max_results,
        )


# --- factory ---------------------------------------------------------------------------------------


def build_search_backend(
    *,
    backend: BackendName,
    tavily_api_key: str | None,
    brave_api_key: str | None,
    searxng_url: str | None,
    client: httpx.AsyncClient | None = None,
) -> SearchBackend:
    """The configured backend; raises `SearchNotConfiguredError` naming the env var to set."""
    match backend:
        case "duckduckgo":
            return DuckDuckGoBackend()
        case "tavily":
            return TavilyBackend(api_key=tavily_api_key, client=client)
        case "brave":
            return BraveBackend(api_key=brave_api_key, client=client)
        case "searxng":
            return SearxngBackend(base_url=searxng_url, client=client)
        case _:
            raise SearchNotConfiguredError(
                f"unknown search backend {backend!r}; choose duckduckgo, tavily, brave or searxng"
            )
