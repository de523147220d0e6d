"""Plain data shared by the search backends, the fetcher and their callers.

These types are the contract between `tools/` and `agent/`: the agent turns them into pydantic-ai
tool returns and stores fetched pages; `tools/` never imports anything from `agent/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, Field


class SearchHit(BaseModel):
    """One search result, as every backend returns it."""

    title: str
    url: str
    snippet: str = ""


class SearchResponse(BaseModel):
    """What `web_search` hands back to the model."""

    query: str
    backend: str
    results: list[SearchHit] = Field(default_factory=list)


ToolErrorCode = Literal[
    "invalid_argument",
    "blocked_url",
    "too_large",
    "timeout",
    "http_error",
    "unsupported_content",
    "network_error",
    "backend_error",
    "not_configured",
]


class ToolFailure(BaseModel):
    """A structured error returned to the model instead of raising: a tool failure never crashes a run."""

    ok: Literal[False] = False
    error: ToolErrorCode
    message: str
    retryable: bool = False


@dataclass(frozen=True, kw_only=True)
class FetchedPage:
    """A downloaded page reduced to its main text; `text` is the untruncated extracted text."""

    url: str
    final_url: str
    status_code: int
    content_type: str
    title: str
    text: str
    fetched_at: datetime


class PageCache(Protocol):
    """Where fetched pages are kept between runs (the agent implements it on Postgres)."""

    async def get_page(self, url: str) -> FetchedPage | None:
        """A fresh cached page for `url`, or None when missing or expired."""
        ...

    async def put_page(self, page: FetchedPage, *, ttl: timedelta) -> None:
        """Store `page` under its requested URL until `ttl` passes."""
        ...
