"""Building the python-docs corpus: every pydoc topic, then for each standard-library module an overview
and one document per documented name (docs/decisions/0018).

No database here: CPU-bound, run in a thread by `tools._pydocs_index`. Which modules to document comes
from `tools._pydocs_modules`; a module with Python source is read with `ast` (`tools._pydocs_ast`), a compiled
one from its runtime docstrings (`tools._pydocs_runtime`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from tools._corpus import CorpusDocument
from tools._corpus_ingest import IngestError
from tools._pydocs_ast import _module_parts
from tools._pydocs_entries import _bounded_join, _display_name, _Entry, _Part, _summary
from tools._pydocs_modules import _module_sources, _Source
from tools._pydocs_runtime import _import, _own_doc, _runtime_module_parts
from tools._pydocs_urls import COLLECTION, entry_corpus_url, module_corpus_url, topic_corpus_url

if TYPE_CHECKING:  # the indexer imports this module and defines the progress type: a cycle for type checkers only
    from tools._pydocs_index import IndexProgress

__all__ = ["MAX_MODULE_CHARS", "PYTHON_DOCS_COLLECTION", "build_python_docs"]

MAX_MODULE_CHARS: Final = 40_000
"""A module overview: its docstring and one line per documented name."""
PYTHON_DOCS_COLLECTION: Final = COLLECTION


class _BuildStopped(Exception):
    """The build was abandoned because its caller went away (see `tools._pydocs_index._build_in_thread`)."""


def build_python_docs(
    *, progress: IndexProgress | None = None, stop: threading.Event | None = None
) -> tuple[list[CorpusDocument], list[IngestError]]:
    """Every `pydoc_data` topic, plus an overview and one document per documented name for each stdlib module.

    CPU-bound: run it in a thread. `progress(done, total)` counts sources built (or failed): the topics
    at once, then module by module, ending at `total`. Once `stop` is set the build gives up between modules.
    """
    documents = _topic_documents()
    sources = _module_sources()
    total = len(documents) + len(sources)
    done = len(documents)
    errors: list[IngestError] = []
    if progress is not None:
        progress(done, total)
    for source in sources:
        if stop is not None and stop.is_set():
            raise _BuildStopped(source.name)
        try:
            documents.extend(_source_documents(source))
        except Exception as exc:  # one module that cannot be read or introspected never stops the others
            path = str(source.path) if source.path else source.name
            errors.append(IngestError(path=path, message=f"{source.name}: {type(exc).__name__}: {exc}"))
        done += 1
        if progress is not None:
            progress(done, total)
    return documents, errors


def _topic_documents() -> list[CorpusDocument]:
    from pydoc_data.topics import topics  # pure data: a dict of strings

    documents: list[CorpusDocument] = []
    for label in sorted(topics):
        text = topics[label].strip()
        if not text:
            continue
        first_line = text.splitlines()[0].strip()
        documents.append(
            CorpusDocument(
                url=topic_corpus_url(label),
                collection=PYTHON_DOCS_COLLECTION,
                source=f"pydoc_data.topics:{label}",
                title=first_line.replace('"', "") or label,
                body=text,
            )
        )
    return documents


# --- documents: an overview per module, and one per documented name --------------------------------


def _source_documents(source: _Source) -> list[CorpusDocument]:
    if source.path is None:
        module = _import(source.name)
        if module is None:
            return []
        docstring = _own_doc(module)
        return _documents(source.name, docstring, _runtime_module_parts(module, docstring=docstring))
    docstring, parts = _module_parts(source.name, source.path, fold_children=source.path.name == "__init__.py")
    return _documents(source.name, docstring, parts)


def _documents(name: str, docstring: str, parts: Sequence[_Part]) -> list[CorpusDocument]:
    """The overview (the module's URL, bounded to `MAX_MODULE_CHARS`) and one document per entry (`URL#qualname`)."""
    display = _display_name(name)
    overview = _bounded_join([p if isinstance(p, str) else p.overview_line() for p in parts], MAX_MODULE_CHARS)
    summary = _summary(docstring)
    documents = [
        CorpusDocument(
            url=module_corpus_url(display),
            collection=PYTHON_DOCS_COLLECTION,
            source=name,
            title=f"{display} — {summary}" if summary else display,
            body=overview or display,
        )
    ]
    for entry in parts:
        if isinstance(entry, _Entry):
            documents.append(
                CorpusDocument(
                    url=entry_corpus_url(display, entry.qualname),
                    collection=PYTHON_DOCS_COLLECTION,
                    source=f"{name}:{entry.qualname}",
                    title=entry.signature,
                    body=entry.body(),
                )
            )
    return documents
