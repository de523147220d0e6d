"""The model-facing `fetch_url`: validate, consult the page cache, fetch, truncate, frame.

Every failure comes back as a `ToolFailure` the model can act on; nothing here raises into the run.
The untruncated `FetchedPage` is returned alongside so the caller can verify citations against it.

Secret shapes (`tools.secrets`) are redacted from the page's text, title and final URL before anything
else sees it: the model, the page cache, the run's sources, so the citations a model copies from the
page match the stored text. Redacting a long page is CPU work, done in a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import timedelta
from typing import Annotated, Literal, Protocol
from urllib.parse import urlsplit

import httpx2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tools._fetch import FetchError, FetchLimits, fetch_page, validate_destination
from tools._framing import frame_untrusted, neutralize, truncate_text
from tools._types import FetchedPage, PageCache, ToolFailure
from tools.secrets import redact_text

logger = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
_MAX_TITLE_CHARS = 300


class FetchUrlArgs(BaseModel):
    """The arguments the model may pass to `fetch_url`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: Annotated[
        str,
        Field(min_length=1, max_length=MAX_URL_LENGTH, description="Absolute http:// or https:// URL to read."),
    ]

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https"):
            raise ValueError("url must be an absolute http:// or https:// URL")
        if not parts.hostname:
            raise ValueError("url must include a host name")
        _ = parts.port  # raises ValueError on a malformed port
        return value


CORPUS_SCHEME = "corpus"


class LocalPages(Protocol):
    """Documents held locally (the corpus), looked up by their exact URL."""

    async def get_document(self, url: str) -> FetchedPage | None: ...


class FetchUrlResult(BaseModel):
    """A fetched page as the model sees it: metadata plus the framed (possibly truncated) text."""

    ok: Literal[True] = True
    url: str
    final_url: str
    title: str
    content_type: str
    truncated: bool
    total_chars: int
    text: str


async def fetch_url(
    url: str,
    *,
    limits: FetchLimits,
    allow_hosts: frozenset[str],
    max_chars: int,
    cache: PageCache | None,
    cache_ttl: timedelta,
    client: httpx2.AsyncClient | None = None,
    corpus: LocalPages | None = None,
) -> tuple[FetchUrlResult | ToolFailure, FetchedPage | None]:
    """Fetch `url` for the model; returns the tool result and the full page (None on failure).

    With `corpus`, a URL the local corpus holds (its own `corpus://` URLs, or a web URL it mirrors) is
    served from there without touching the network.
    """
    if corpus is not None:
        local = await corpus.get_document(url.strip())
        if local is not None:
            local = await redacted_page(local)
            return _result(local, max_chars=max_chars), local
    if url.strip().lower().startswith(f"{CORPUS_SCHEME}://"):
        return ToolFailure(error="invalid_argument", message=f"No corpus document at {url}."), None
    try:
        args = FetchUrlArgs(url=url)
    except ValidationError as e:
        message = "; ".join(str(error["msg"]) for error in e.errors())
        return ToolFailure(error="invalid_argument", message=f"Invalid url: {message}"), None

    page = await _cached(cache, args.url)
    if page is not None:
        try:  # a page cached by a run with a wider allow-list must not leak into this one
            for destination in {page.url, page.final_url}:
                await validate_destination(destination, allow_hosts=allow_hosts)
        except FetchError as e:
            return ToolFailure(error=e.code, message=e.message, retryable=e.retryable), None
        page = await redacted_page(page)  # cached before pages were redacted
    else:
        try:
            page = await fetch_page(args.url, limits=limits, allow_hosts=allow_hosts, client=client)
        except FetchError as e:
            return ToolFailure(error=e.code, message=e.message, retryable=e.retryable), None
        except Exception as e:  # a bug or an unforeseen library error must not crash the run
            logger.exception("unexpected error fetching %s", args.url)
            return (
                ToolFailure(
                    error="backend_error",
                    message=f"Fetching {args.url} failed unexpectedly ({type(e).__name__}); try a different source.",
                ),
                None,
            )
        page = await redacted_page(page)
        await _store(cache, page, ttl=cache_ttl)
    return _result(page, max_chars=max_chars), page


async def redacted_page(page: FetchedPage) -> FetchedPage:
    """`page` with secret shapes redacted from its text, title and final URL (in a thread: pages are long)."""
    return await asyncio.to_thread(_redact_page, page)


def _redact_page(page: FetchedPage) -> FetchedPage:
    text, found = redact_text(page.text, category="secret")
    title, in_title = redact_text(page.title, category="secret")
    final_url, in_url = redact_text(page.final_url, category="secret")
    if not (found or in_title or in_url):
        return page
    logger.info("redacted %s from %s", dict(found + in_title + in_url), page.url)
    return dataclasses.replace(page, text=text, title=title, final_url=final_url)


def _result(page: FetchedPage, *, max_chars: int) -> FetchUrlResult:
    text, truncated = truncate_text(page.text, max_chars=max_chars)
    return FetchUrlResult(
        url=page.url,
        final_url=neutralize(page.final_url),
        title=neutralize(" ".join(page.title.split())[:_MAX_TITLE_CHARS]),
        content_type=neutralize(page.content_type[:100]),
        truncated=truncated,
        total_chars=len(page.text),
        text=frame_untrusted(text, source=page.final_url),
    )


async def _cached(cache: PageCache | None, url: str) -> FetchedPage | None:
    """A cache that is down only costs a network fetch, never the tool call."""
    if cache is None:
        return None
    try:
        return await cache.get_page(url)
    except Exception:
        logger.warning("page cache lookup failed for %s", url, exc_info=True)
        return None


async def _store(cache: PageCache | None, page: FetchedPage, *, ttl: timedelta) -> None:
    if cache is None:
        return
    try:
        await cache.put_page(page, ttl=ttl)
    except Exception:
        logger.warning("page cache store failed for %s", page.url, exc_info=True)
