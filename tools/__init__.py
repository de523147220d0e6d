"""How the agent touches the world: web search backends, safe fetching, extraction, page cache."""

from tools._types import FetchedPage, PageCache, SearchHit, SearchResponse, ToolErrorCode, ToolFailure

__all__ = [
    "FetchedPage",
    "PageCache",
    "SearchHit",
    "SearchResponse",
    "ToolErrorCode",
    "ToolFailure",
]
