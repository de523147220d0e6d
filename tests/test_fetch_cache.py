"""The page cache never widens a run's allow-list, and a cache hit costs no network request."""

from __future__ import annotations

from datetime import timedelta

from tests._http_server import LocalHTTPServer
from tests._web import install_web
from tools import FetchedPage, FetchLimits, FetchUrlResult, ToolFailure, fetch_url


class MemoryCache:
    def __init__(self) -> None:
        self.pages: dict[str, FetchedPage] = {}

    async def get_page(self, url: str) -> FetchedPage | None:
        return self.pages.get(url)

    async def put_page(self, page: FetchedPage, *, ttl: timedelta) -> None:
        self.pages[page.url] = page


async def test_cached_private_page_is_refused_to_a_run_without_that_allow_list(
    http_server: LocalHTTPServer,
) -> None:
    url = install_web(http_server)[0]
    cache = MemoryCache()
    common = {"limits": FetchLimits(), "max_chars": 5_000, "cache": cache, "cache_ttl": timedelta(hours=1)}

    allowed, page = await fetch_url(url, allow_hosts=frozenset({http_server.host}), **common)  # type: ignore[arg-type]
    assert isinstance(allowed, FetchUrlResult) and page is not None and url in cache.pages
    again, _ = await fetch_url(url, allow_hosts=frozenset({http_server.host}), **common)  # type: ignore[arg-type]
    assert isinstance(again, FetchUrlResult)
    assert http_server.hits["/pages/http3"] == 1  # the second read came from the cache

    refused, leaked = await fetch_url(url, allow_hosts=frozenset(), **common)  # type: ignore[arg-type]
    assert isinstance(refused, ToolFailure) and refused.error == "blocked_url"
    assert leaked is None
    assert http_server.hits["/pages/http3"] == 1
