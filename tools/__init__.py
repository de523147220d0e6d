"""How the agent touches the world: web search backends, safe fetching, extraction, framing, page cache.

Nothing here knows about the agent's runner or store: callers pass what the tools need (limits,
allow-lists, a `PageCache`, a `SearchBackend`) and get structured results or `ToolFailure`s back.

Each public name is imported from its module on first use (PEP 562 `__getattr__`): settings and run
records need `ToolPolicy` and `FetchedPage`, and the CLI's read-only commands must not pay for what
searching and fetching import (httpx, trafilatura, lxml, pydantic-ai's SSRF helpers). Type checkers and
IDEs read the same names from the imports under `TYPE_CHECKING`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.lazy import lazy_exports

if TYPE_CHECKING:
    from tools._corpus import CollectionStats, CorpusDocument, CorpusHit, CorpusSearchBackend, CorpusStore, UpsertCounts
    from tools._corpus_ingest import CorpusPathError, IngestError, IngestReport, ingest_path
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
    from tools._fetch_tool import CORPUS_SCHEME, FetchUrlArgs, FetchUrlResult, LocalPages, fetch_url
    from tools._framing import frame_untrusted, neutralize, truncate_text
    from tools._policy import (
        ArgsRefusal,
        PolicyDecision,
        ToolPolicy,
        ToolPolicyOverrides,
        args_size,
        omitted_args,
        redact_args,
        redact_secrets,
        redact_url,
        screen_args,
        screen_size,
    )
    from tools._pydocs_build import PYTHON_DOCS_COLLECTION, build_python_docs
    from tools._pydocs_index import IndexProgress, ensure_python_docs, ingest_python_docs
    from tools._pydocs_urls import see_also_url
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
    from tools._webhook import WebhookAnswer, check_webhook_url, post_webhook
    from tools.errors import ResearchAgentError

__all__ = [
    "CORPUS_SCHEME",
    "PYTHON_DOCS_COLLECTION",
    "ArgsRefusal",
    "BlockedURLError",
    "BraveBackend",
    "CollectionStats",
    "CorpusDocument",
    "CorpusHit",
    "CorpusPathError",
    "CorpusSearchBackend",
    "CorpusStore",
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
    "IndexProgress",
    "IngestError",
    "IngestReport",
    "InvalidURLError",
    "LocalPages",
    "PageCache",
    "PolicyDecision",
    "ResearchAgentError",
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
    "ToolPolicy",
    "ToolPolicyOverrides",
    "UnsupportedContentError",
    "UpsertCounts",
    "WebSearchArgs",
    "WebhookAnswer",
    "args_size",
    "build_python_docs",
    "build_search_backend",
    "check_destination",
    "check_webhook_url",
    "ensure_python_docs",
    "extract_main_text",
    "fetch_page",
    "fetch_url",
    "frame_untrusted",
    "ingest_path",
    "ingest_python_docs",
    "neutralize",
    "omitted_args",
    "post_webhook",
    "redact_args",
    "redact_secrets",
    "redact_url",
    "screen_args",
    "screen_size",
    "see_also_url",
    "truncate_text",
    "web_search",
]

_MODULES: dict[str, tuple[str, ...]] = {
    "tools._corpus": (
        "CollectionStats",
        "CorpusDocument",
        "CorpusHit",
        "CorpusSearchBackend",
        "CorpusStore",
        "UpsertCounts",
    ),
    "tools._corpus_ingest": ("CorpusPathError", "IngestError", "IngestReport", "ingest_path"),
    "tools._extract": ("extract_main_text",),
    "tools._fetch": (
        "BlockedURLError",
        "FetchError",
        "FetchHTTPError",
        "FetchLimits",
        "FetchNetworkError",
        "FetchTimeoutError",
        "FetchTooLargeError",
        "InvalidURLError",
        "TooManyRedirectsError",
        "UnsupportedContentError",
        "check_destination",
        "fetch_page",
    ),
    "tools._fetch_tool": ("CORPUS_SCHEME", "FetchUrlArgs", "FetchUrlResult", "LocalPages", "fetch_url"),
    "tools._framing": ("frame_untrusted", "neutralize", "truncate_text"),
    "tools._policy": (
        "ArgsRefusal",
        "PolicyDecision",
        "ToolPolicy",
        "ToolPolicyOverrides",
        "args_size",
        "omitted_args",
        "redact_args",
        "redact_secrets",
        "redact_url",
        "screen_args",
        "screen_size",
    ),
    "tools._pydocs_build": ("PYTHON_DOCS_COLLECTION", "build_python_docs"),
    "tools._pydocs_index": ("IndexProgress", "ensure_python_docs", "ingest_python_docs"),
    "tools._pydocs_urls": ("see_also_url",),
    "tools._search": (
        "BraveBackend",
        "DuckDuckGoBackend",
        "SearchBackend",
        "SearchBackendError",
        "SearchNetworkError",
        "SearchNotConfiguredError",
        "SearchTimeoutError",
        "SearxngBackend",
        "TavilyBackend",
        "build_search_backend",
    ),
    "tools._search_tool": ("WebSearchArgs", "web_search"),
    "tools._types": ("FetchedPage", "PageCache", "SearchHit", "SearchResponse", "ToolErrorCode", "ToolFailure"),
    "tools._webhook": ("WebhookAnswer", "check_webhook_url", "post_webhook"),
    "tools.errors": ("ResearchAgentError",),
}
"""Where each public name lives (keep in step with the imports above); only its module is imported."""
_EXPORTS, _getattr, __dir__ = lazy_exports(_MODULES, globals())

if not TYPE_CHECKING:  # type checkers see the imports above, and an unknown name stays an error for them
    __getattr__ = _getattr
