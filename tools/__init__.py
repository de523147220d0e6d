"""How the agent touches the world: web search backends, safe fetching, extraction, framing, page cache.

Nothing here knows about the agent's runner or store: callers pass what the tools need (limits,
allow-lists, a `PageCache`, a `SearchBackend`) and get structured results or `ToolFailure`s back.
"""

from tools._corpus import (
    CollectionStats,
    CorpusDocument,
    CorpusHit,
    CorpusSearchBackend,
    CorpusStore,
    UpsertCounts,
)
from tools._corpus_ingest import (
    PYTHON_DOCS_COLLECTION,
    IndexProgress,
    IngestError,
    IngestReport,
    ensure_python_docs,
    ingest_path,
    ingest_python_docs,
)
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
from tools._policy import PolicyDecision, ToolPolicy, ToolPolicyOverrides, redact_args
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
from tools.errors import ResearchAgentError

__all__ = [
    "CORPUS_SCHEME",
    "PYTHON_DOCS_COLLECTION",
    "BlockedURLError",
    "BraveBackend",
    "CollectionStats",
    "CorpusDocument",
    "CorpusHit",
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
    "build_search_backend",
    "check_destination",
    "ensure_python_docs",
    "extract_main_text",
    "fetch_page",
    "fetch_url",
    "frame_untrusted",
    "ingest_path",
    "ingest_python_docs",
    "neutralize",
    "redact_args",
    "truncate_text",
    "web_search",
]
