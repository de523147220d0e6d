"""How the agent touches the world: web search backends, safe fetching, extraction, framing, page cache.

Nothing here knows about the agent's runner or store: callers pass what the tools need (limits,
allow-lists, a `PageCache`, a `SearchBackend`) and get structured results or `ToolFailure`s back.
"""

from tools._extract import extract_main_text
from tools._fetch import (
    BlockedURLError,
    FetchError,
    FetchHTTPError,
    FetchLimits,
    FetchNetworkError,
    FetchTimeoutError,
    FetchTooLargeError,
    InvalidURLError,
    TooManyRedirectsError,
    UnsupportedContentError,
    check_destination,
    fetch_page,
)
from tools._fetch_tool import FetchUrlArgs, FetchUrlResult, fetch_url
from tools._framing import frame_untrusted, neutralize, truncate_text
from tools._search import (
    BraveBackend,
    DuckDuckGoBackend,
    SearchBackend,
    SearchBackendError,
    SearchNetworkError,
    SearchNotConfiguredError,
    SearchTimeoutError,
    SearxngBackend,
    TavilyBackend,
    build_search_backend,
)
from tools._search_tool import WebSearchArgs, web_search
from tools._types import FetchedPage, PageCache, SearchHit, SearchResponse, ToolErrorCode, ToolFailure

__all__ = [
    "BlockedURLError",
    "BraveBackend",
    "DuckDuckGoBackend",
    "FetchError",
    "FetchHTTPError",
    "FetchLimits",
    "FetchNetworkError",
    "FetchTimeoutError",
    "FetchTooLargeError",
    "FetchUrlArgs",
    "FetchUrlResult",
    "FetchedPage",
    "InvalidURLError",
    "PageCache",
    "SearchBackend",
    "SearchBackendError",
    "SearchHit",
    "SearchNetworkError",
    "SearchNotConfiguredError",
    "SearchResponse",
    "SearchTimeoutError",
    "SearxngBackend",
    "TavilyBackend",
    "TooManyRedirectsError",
    "ToolErrorCode",
    "ToolFailure",
    "UnsupportedContentError",
    "WebSearchArgs",
    "build_search_backend",
    "check_destination",
    "extract_main_text",
    "fetch_page",
    "fetch_url",
    "frame_untrusted",
    "neutralize",
    "truncate_text",
    "web_search",
]
