"""The model-facing `web_search`: validate the arguments, call the backend, never raise.

Whatever goes wrong (bad arguments, a provider outage, a bug in a backend) comes back as a
`ToolFailure` the model can read and act on, because a failed search must not crash a research run.
Secret shapes (`tools.secrets`) in titles, URLs and snippets are redacted before the model sees them,
so no message, step, tool effect or span of the run can hold them.
"""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from tools._fetch_tool import CORPUS_SCHEME
from tools._search import WEB_SCHEMES, SearchBackend, SearchBackendError, clean_hits
from tools._types import SearchHit, SearchResponse, ToolFailure
from tools.secrets import redact_text

__all__ = ["WebSearchArgs", "web_search"]

logger = logging.getLogger(__name__)


class WebSearchArgs(BaseModel):
    """The arguments the model may pass to `web_search`; bounds keep queries and result lists small."""

    model_config = ConfigDict(extra="forbid")

    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=400)] = Field(
        description="What to search for, in plain words (1-400 characters)."
    )
    max_results: Annotated[int, Field(ge=1, le=10)] = Field(default=5, description="How many results to return (1-10).")


def _describe(error: ValidationError) -> str:
    """`field: reason` for each problem, short enough for the model to fix its call."""
    parts: list[str] = []
    for item in error.errors(include_url=False):
        field = ".".join(str(loc) for loc in item["loc"]) or "arguments"
        parts.append(f"{field}: {item['msg']}")
    return "invalid web_search arguments: " + "; ".join(parts)


async def web_search(query: str, max_results: int, *, backend: SearchBackend) -> SearchResponse | ToolFailure:
    """Search with `backend`; every failure becomes a `ToolFailure` (only cancellation propagates)."""
    try:
        args = WebSearchArgs(query=query, max_results=max_results)
    except ValidationError as exc:
        return ToolFailure(error="invalid_argument", message=_describe(exc))

    try:
        hits = await backend.search(args.query, max_results=args.max_results)
        # Backends already clean their hits; re-apply the same rules so a third-party backend cannot
        # hand the model duplicates, non-http URLs or unbounded text.
        # Backends already cleaned their hits; this bounds whatever a custom backend returns, keeping
        # corpus URLs and their section anchors intact.
        results = clean_hits(
            ((hit.title, hit.url, hit.snippet) for hit in hits),
            max_results=args.max_results,
            schemes=WEB_SCHEMES | {CORPUS_SCHEME},
            keep_fragments=True,
        )
    except SearchBackendError as exc:
        return ToolFailure(error=exc.code, message=exc.message, retryable=exc.retryable)
    except Exception as exc:
        logger.exception("search backend %r failed unexpectedly for query %r", backend.name, args.query)
        return ToolFailure(
            error="backend_error",
            message=f"the {backend.name} search backend failed unexpectedly ({type(exc).__name__}); "
            "retry once, then continue with what you have",
            retryable=True,
        )
    return SearchResponse(query=args.query, backend=backend.name, results=[_redacted(hit) for hit in results])


def _redacted(hit: SearchHit) -> SearchHit:
    """The hit with secret shapes redacted (a few hundred characters: cheap enough for the event loop)."""
    return SearchHit(
        title=redact_text(hit.title, category="secret")[0],
        url=redact_text(hit.url, category="secret")[0],
        snippet=redact_text(hit.snippet, category="secret")[0],
    )
