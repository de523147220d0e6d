"""The typed dependencies every tool and validator of the research agent receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agent.config import RunConfig
from agent.durable.store import RunStore
from agent.events import ProgressCallback, ProgressEvent, ProgressKind, ignore_progress
from tools import FetchedPage, LocalPages, SearchBackend

FetchOrigin = Literal["cache", "network", "corpus"]
"""Where `fetch_url` got a page: the shared page cache, the network, or the local corpus (`tool_effects.origin`)."""


@dataclass(kw_only=True)
class ResearchDeps:
    """Per-run state and handles. `sources` and `plan` are reloaded from the store on resume."""

    run_id: str
    question: str
    config: RunConfig
    store: RunStore
    search: SearchBackend
    corpus: LocalPages | None = None
    """Local documents `fetch_url` serves without the network (offline runs and `corpus://` URLs)."""
    sources: dict[str, FetchedPage] = field(default_factory=dict)
    plan: list[str] | None = None
    progress: ProgressCallback = ignore_progress
    fetch_origins: dict[str, FetchOrigin] = field(default_factory=dict)
    """Where each successful `fetch_url` call got its page, by tool call id, until the ledger records it."""

    def emit(self, kind: ProgressKind, message: str, detail: list[str] | None = None) -> None:
        self.progress(ProgressEvent(run_id=self.run_id, kind=kind, message=message, detail=detail or []))
