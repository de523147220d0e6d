"""Indexing the Python reference into the corpus: on first use (`ensure_python_docs`) or on demand.

The build runs in a worker thread, its progress relayed to the event loop's thread, and stops between
modules when the caller is cancelled; its documents are upserted in batches, rows the build no longer
produces are pruned, and a marker (interpreter version + extraction format) says when to re-index.
"""

from __future__ import annotations

import asyncio
import platform
import threading
import time
from collections.abc import Callable
from typing import Final

from tools._corpus import CorpusDocument, CorpusStore
from tools._corpus_ingest import IngestError, IngestReport, _batches
from tools._pydocs_build import PYTHON_DOCS_COLLECTION, build_python_docs

__all__ = [
    "IndexProgress",
    "ensure_python_docs",
    "ingest_python_docs",
    "python_docs_version",
]

_PYTHON_DOCS_FORMAT: Final = 3
"""Bump when the extraction (`tools/_pydocs_*.py`) or a document's URL changes, so existing databases re-index.

2: documents moved from docs.python.org URLs to `corpus://python-docs/...` (docs/decisions/0018).
3: one document per documented name (`modules/functools#lru_cache`) besides each module's overview;
   compiled modules and built-ins from their runtime docstrings.
"""
_DOCS_BATCH_DOCUMENTS: Final = 500
"""The Python reference is thousands of short documents: fewer, larger statements index it faster."""

IndexProgress = Callable[[int, int], None]
"""`progress(done, total)` while the Python reference is indexed: `done` only grows and ends at `total`.

Units are steps of work, not documents: each source (a pydoc topic, a module) is built (parsed) and then
stored (its documents), two steps each; storing is reported in proportion to the documents written.
Called on the event loop's thread, never from the worker thread that parses.
"""


def python_docs_version() -> str:
    """What the python-docs collection was built from: interpreter version and extractor format."""
    return f"python-{platform.python_version()}/format-{_PYTHON_DOCS_FORMAT}"


async def ingest_python_docs(store: CorpusStore, *, progress: IndexProgress | None = None) -> IngestReport:
    """(Re)index the Python reference topics and the standard library's module docs unconditionally.

    `progress(done, total)` reports the work as it goes (see `IndexProgress`).
    """
    async with store.exclusive(PYTHON_DOCS_COLLECTION) as locked:
        return await _index_python_docs(locked, progress)


async def ensure_python_docs(store: CorpusStore, *, progress: IndexProgress | None = None) -> IngestReport | None:
    """Index the Python docs the first time they are needed; None when they already are.

    Concurrent callers serialise on a transaction-scoped advisory lock; whoever comes second finds the
    marker the first one committed and returns None. `progress(done, total)` is called only when this
    call indexes (see `IndexProgress`): a caller can show a progress bar for the cold start.
    """
    version = python_docs_version()
    if await _python_docs_current(store, version):
        return None
    async with store.exclusive(PYTHON_DOCS_COLLECTION) as locked:
        if await _python_docs_current(locked, version):
            return None
        return await _index_python_docs(locked, progress)


async def _python_docs_current(store: CorpusStore, version: str) -> bool:
    return (
        await store.collection_version(PYTHON_DOCS_COLLECTION) == version
        and await store.count(PYTHON_DOCS_COLLECTION) > 0
    )


async def _index_python_docs(locked: CorpusStore, progress: IndexProgress | None) -> IngestReport:
    """Build every document in a thread, upsert in batches, drop leftovers, then write the marker.

    Progress: building is the first half of the steps (one per source), storing the second.
    """
    started = time.perf_counter()
    documents, errors, sources = await _build_in_thread(progress)
    report = IngestReport(collection=PYTHON_DOCS_COLLECTION, errors=errors)
    stored = 0
    for batch in _batches(documents, max_documents=_DOCS_BATCH_DOCUMENTS):
        report.add(await locked.upsert_documents(batch))
        stored += len(batch)
        if progress is not None:
            progress(sources + sources * stored // len(documents), 2 * sources)
    await locked.prune(PYTHON_DOCS_COLLECTION, keep={doc.url for doc in documents})
    await locked.mark_collection(PYTHON_DOCS_COLLECTION, version=python_docs_version())
    if progress is not None and not documents:
        progress(2 * sources, 2 * sources)
    report.seconds = time.perf_counter() - started
    return report


async def _build_in_thread(progress: IndexProgress | None) -> tuple[list[CorpusDocument], list[IngestError], int]:
    """`build_python_docs` in a worker thread, its progress relayed to the event loop's thread; also
    returns how many sources it built (the unit of progress).

    If the caller is cancelled (Ctrl-C, a cancelled run), the build stops between modules instead of
    parsing on in the background, and no progress arrives after the cancellation.
    """
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    sources = 0

    def relay(done: int, total: int) -> None:
        if progress is not None and not stop.is_set():
            progress(done, 2 * total)

    def from_thread(done: int, total: int) -> None:
        nonlocal sources
        sources = total
        if not stop.is_set():
            loop.call_soon_threadsafe(relay, done, total)

    try:
        documents, errors = await asyncio.to_thread(build_python_docs, progress=from_thread, stop=stop)
    finally:
        stop.set()
    return documents, errors, sources
