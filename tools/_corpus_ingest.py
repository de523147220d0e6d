"""Filling the corpus: the user's files, and the Python documentation that ships with the interpreter.

Reading and parsing run in a worker thread (the event loop keeps serving); the database work is a few
batched statements. The standard library is documented from its source with `ast`: nothing being
documented is ever imported, so no module side effect (antigravity opening a browser, tkinter probing
a display) can run.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.machinery
import itertools
import os
import platform
import re
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeGuard
from urllib.parse import quote

import asyncpg

from tools._corpus import CorpusDocument, CorpusStore, UpsertCounts
from tools._extract import extract_main_text
from tools._pydocs_urls import SKIPPED_MODULES, SUBMODULE_PAGES, module_url, topic_url
from tools.errors import ResearchAgentError

__all__ = [
    "MAX_FILE_BYTES",
    "PYTHON_DOCS_COLLECTION",
    "SUPPORTED_SUFFIXES",
    "CorpusPathError",
    "IndexProgress",
    "IngestError",
    "IngestReport",
    "build_python_docs",
    "ensure_python_docs",
    "ingest_path",
    "ingest_python_docs",
    "python_docs_version",
]

MAX_FILE_BYTES: Final = 5 * 1024 * 1024
MAX_MODULE_CHARS: Final = 40_000
MAX_SIGNATURE_CHARS: Final = 200
PYTHON_DOCS_COLLECTION: Final = "python-docs"
_PYTHON_DOCS_FORMAT: Final = 1
"""Bump when the extraction below changes, so existing databases re-index."""
_BATCH_DOCUMENTS: Final = 64
_BATCH_CHARS: Final = 4_000_000

_MARKDOWN: Final = frozenset({".md", ".markdown"})
_TEXT: Final = frozenset({".txt", ".rst"})
_HTML: Final = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES: Final = _MARKDOWN | _TEXT | _HTML

IndexProgress = Callable[[int, int], None]
"""`progress(done, total)` while the Python reference is indexed: `done` only grows and ends at `total`.

Units are steps of work, not documents: each document is built (parsed) and then stored, two steps each.
Called on the event loop's thread, never from the worker thread that parses.
"""


class CorpusPathError(ResearchAgentError):
    """A path given to `ingest_path` (`corpus add PATH...`) that cannot be indexed: it does not exist, or it is
    a file of an unsupported type. The message names the path and what was expected; the CLI exits 2 on it.

    The missing-path error is also a `FileNotFoundError`, the unsupported-file one a `ValueError`, as before.
    """


class _PathNotFoundError(CorpusPathError, FileNotFoundError):
    pass


class _UnsupportedFileError(CorpusPathError, ValueError):
    pass


_EXPECTED_PATH: Final = "expected an existing folder, or a file ending in .md, .markdown, .txt, .rst, .html or .htm"


@dataclass(frozen=True, kw_only=True)
class IngestError:
    """A file (or module) that could not be indexed, and why in words a user can act on."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(kw_only=True)
class IngestReport:
    collection: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    """Files with an unsupported extension (not errors: a docs folder holds images too)."""
    errors: list[IngestError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def documents(self) -> int:
        """Documents now indexed from this ingestion (new, changed or already up to date)."""
        return self.inserted + self.updated + self.unchanged

    def add(self, counts: UpsertCounts) -> None:
        self.inserted += counts.inserted
        self.updated += counts.updated
        self.unchanged += counts.unchanged


# --- user files ------------------------------------------------------------------------------------


async def ingest_path(store: CorpusStore, path: Path, *, collection: str | None = None) -> IngestReport:
    """Index a file or (recursively) a directory of Markdown, text and HTML files.

    URLs are `corpus://{collection}/{relative/path}`, so ingesting the same tree again updates documents
    in place. A bad file is reported in `errors` and never stops the others; only a missing `path` or an
    unsupported single file raises (`CorpusPathError`).
    """
    started = time.perf_counter()
    scan = await asyncio.to_thread(_scan, path)
    name = collection.strip() if collection and collection.strip() else scan.default_collection
    report = IngestReport(collection=name, skipped=scan.skipped)
    batch: list[CorpusDocument] = []
    batch_chars = 0
    for file in scan.files:
        relative = file.name if file == scan.root else file.relative_to(scan.root).as_posix()
        url = f"corpus://{quote(name, safe='')}/{quote(relative, safe='/')}"
        loaded = await asyncio.to_thread(_load_file, file, url=url, collection=name)
        if isinstance(loaded, str):
            report.errors.append(IngestError(path=str(file), message=loaded))
            continue
        batch.append(loaded)
        batch_chars += len(loaded.body)
        if len(batch) >= _BATCH_DOCUMENTS or batch_chars >= _BATCH_CHARS:
            await _upsert_isolating_failures(store, batch, report)
            batch, batch_chars = [], 0
    await _upsert_isolating_failures(store, batch, report)
    report.seconds = time.perf_counter() - started
    return report


@dataclass(frozen=True, kw_only=True)
class _Scan:
    root: Path
    files: list[Path]
    skipped: int
    default_collection: str


def _scan(path: Path) -> _Scan:
    """The supported files under `path` (sorted, hidden entries skipped) and the unsupported count."""
    root = path.expanduser().resolve()
    if root.is_file():
        if root.suffix.lower() in SUPPORTED_SUFFIXES:
            return _Scan(root=root, files=[root], skipped=0, default_collection=root.stem or "files")
        raise _UnsupportedFileError(f"corpus path {str(path)!r} is not a supported document: {_EXPECTED_PATH}")
    if not root.is_dir():
        raise _PathNotFoundError(f"corpus path {str(path)!r} does not exist: {_EXPECTED_PATH}")
    files: list[Path] = []
    skipped = 0
    # os.walk does not follow directory symlinks, so a link loop cannot make ingestion endless.
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for entry in sorted(names):
            if entry.startswith("."):
                continue
            if Path(entry).suffix.lower() in SUPPORTED_SUFFIXES:
                files.append(Path(directory, entry))
            else:
                skipped += 1
    return _Scan(root=root, files=files, skipped=skipped, default_collection=root.name or "files")


def _load_file(file: Path, *, url: str, collection: str) -> CorpusDocument | str:
    """The document for `file`, or a message saying why it cannot be indexed."""
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            return f"too large ({size / 1024 / 1024:.1f} MB; the limit is {MAX_FILE_BYTES // 1024 // 1024} MB)"
        with file.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if len(data) > MAX_FILE_BYTES:
        return f"too large (over the {MAX_FILE_BYTES // 1024 // 1024} MB limit)"
    if b"\x00" in data:
        return "looks binary (contains NUL bytes); only text, Markdown and HTML files are indexed"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
    if not text.strip():
        return "is empty (no text to index)"
    suffix = file.suffix.lower()
    title = ""
    if suffix in _HTML:
        title, text = extract_main_text(text, url=url)
        if not text.strip():
            return "has no readable text (HTML with no main content)"
    elif suffix in _MARKDOWN:
        title = _markdown_title(text)
    elif suffix == ".rst":
        title = _rst_title(text)
    return CorpusDocument(url=url, collection=collection, source=str(file), title=title.strip() or file.name, body=text)


_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_RST_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1+[ \t]*$")


def _markdown_title(text: str) -> str:
    """The front-matter `title:`, else the first ATX (`# T`) or setext (`T` over `===`) heading."""
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is not None:
            match = _FRONT_MATTER_TITLE.search("\n".join(lines[1:end]))
            if match:
                return match.group(1).strip("'\"")
            lines = lines[end + 1 :]
    in_fence = False
    previous = ""
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
            previous = ""
            continue
        if in_fence:
            continue
        atx = _ATX_HEADING.match(line)
        if atx:
            return atx.group(1).strip()
        if previous.strip() and _SETEXT_UNDERLINE.match(line):
            return previous.strip()
        previous = line
    return ""


def _rst_title(text: str) -> str:
    """The first section title: a line underlined by one repeated punctuation character."""
    lines = text.splitlines()
    for above, below in itertools.pairwise(lines):
        title = above.strip()
        if (
            title
            and not _RST_ADORNMENT.match(above)
            and _RST_ADORNMENT.match(below)
            and len(below.rstrip()) >= len(title)
        ):
            return title
    return ""


async def _upsert_isolating_failures(store: CorpusStore, batch: Sequence[CorpusDocument], report: IngestReport) -> None:
    """One statement per batch; if the database rejects it, retry one by one to name the bad file.

    Each statement is atomic on a pool, so a rejected batch wrote nothing and the retry duplicates nothing.
    """
    if not batch:
        return
    try:
        report.add(await store.upsert_documents(batch))
    except asyncpg.PostgresError as exc:  # e.g. a tsvector over Postgres' 1 MB limit
        if len(batch) > 1:
            for doc in batch:
                await _upsert_isolating_failures(store, [doc], report)
            return
        doc = batch[0]
        if isinstance(exc, asyncpg.ProgramLimitExceededError):
            message = f"has too many distinct words for one full-text index entry ({exc}); split it into smaller files"
        else:
            message = f"rejected by the database: {exc}"
        report.errors.append(IngestError(path=doc.source or doc.url, message=message))


# --- the Python documentation ----------------------------------------------------------------------


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

    Progress: building is the first half of the steps (one per document), storing the second.
    """
    started = time.perf_counter()
    documents, errors = await _build_in_thread(progress)
    built = len(documents) + len(errors)
    report = IngestReport(collection=PYTHON_DOCS_COLLECTION, errors=errors)
    stored = 0
    for batch in _batches(documents):
        report.add(await locked.upsert_documents(batch))
        stored += len(batch)
        if progress is not None:
            progress(built + stored, 2 * built)
    await locked.prune(PYTHON_DOCS_COLLECTION, keep={doc.url for doc in documents})
    await locked.mark_collection(PYTHON_DOCS_COLLECTION, version=python_docs_version())
    if progress is not None and stored < built:  # documents that failed to build are not stored: still done
        progress(2 * built, 2 * built)
    report.seconds = time.perf_counter() - started
    return report


async def _build_in_thread(progress: IndexProgress | None) -> tuple[list[CorpusDocument], list[IngestError]]:
    """`build_python_docs` in a worker thread, its progress relayed to the event loop's thread.

    If the caller is cancelled (Ctrl-C, a cancelled run), the build stops between modules instead of
    parsing on in the background, and no progress arrives after the cancellation.
    """
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def relay(done: int, total: int) -> None:
        if progress is not None and not stop.is_set():
            progress(done, 2 * total)

    def from_thread(done: int, total: int) -> None:
        if not stop.is_set():
            loop.call_soon_threadsafe(relay, done, total)

    try:
        return await asyncio.to_thread(build_python_docs, progress=from_thread if progress else None, stop=stop)
    finally:
        stop.set()


def _batches(documents: Sequence[CorpusDocument]) -> Iterator[list[CorpusDocument]]:
    batch: list[CorpusDocument] = []
    chars = 0
    for doc in documents:
        batch.append(doc)
        chars += len(doc.body)
        if len(batch) >= _BATCH_DOCUMENTS or chars >= _BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


class _BuildStopped(Exception):
    """The build was abandoned because its caller went away (see `_build_in_thread`)."""


def build_python_docs(
    *, progress: IndexProgress | None = None, stop: threading.Event | None = None
) -> tuple[list[CorpusDocument], list[IngestError]]:
    """Every `pydoc_data` topic plus one document per documented stdlib module (CPU-bound: run in a thread).

    `progress(done, total)` counts documents built (or failed): the topics at once, then module by
    module, ending at `total`. Once `stop` is set the build gives up between modules.
    """
    documents = _topic_documents()
    modules = [
        entry
        for module, path, is_package in _stdlib_sources()
        for entry in [(module, path), *_own_page_submodules(module, path, is_package)]
    ]
    total = len(documents) + len(modules)
    errors: list[IngestError] = []
    if progress is not None:
        progress(len(documents), total)
    for name, source in modules:
        if stop is not None and stop.is_set():
            raise _BuildStopped(name)
        try:
            documents.append(_module_document(name, source, fold_children=source.name == "__init__.py"))
        except (OSError, SyntaxError, ValueError) as exc:
            errors.append(IngestError(path=str(source), message=f"{name}: {type(exc).__name__}: {exc}"))
        if progress is not None:
            progress(len(documents) + len(errors), total)
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
                url=topic_url(label),
                collection=PYTHON_DOCS_COLLECTION,
                source=f"pydoc_data.topics:{label}",
                title=first_line.replace('"', "") or label,
                body=text,
            )
        )
    return documents


def _stdlib_dirs() -> list[str]:
    return sorted({p for p in (sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")) if p})


def _stdlib_sources() -> Iterator[tuple[str, Path, bool]]:
    """`(module, source file, is_package)` for public top-level stdlib modules that have Python source.

    `PathFinder.find_spec` (what `importlib.util.find_spec` ends in for a top-level name) only locates:
    nothing is executed. Asking it directly, restricted to the stdlib directories, also skips meta-path
    hooks (setuptools' distutils shim imports code inside `find_spec`) and third-party modules that
    shadow a stdlib name. Frozen modules (os, io, site…) are found as their source files here; built-in
    and extension modules have no source and are left out.
    """
    stdlib_dirs = _stdlib_dirs()
    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") or n == "__future__")
    for name in names:
        if name in SKIPPED_MODULES:
            continue
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, stdlib_dirs)
        except (ImportError, ValueError, OSError):
            continue
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        yield name, Path(spec.origin), spec.submodule_search_locations is not None


def _own_page_submodules(package: str, path: Path, is_package: bool) -> Iterator[tuple[str, Path]]:
    """Submodules of `package` with their own library page, located on disk without importing."""
    if not is_package:
        return
    for name in sorted(SUBMODULE_PAGES):
        if not name.startswith(package + "."):
            continue
        parts = name.split(".")[1:]
        base = path.parent.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                yield name, candidate
                break


_IMPLEMENTED_IN: Final[dict[str, str]] = {
    "decimal": "_pydecimal.py",  # decimal.py only re-exports _decimal (C) or this pure-Python twin
    "collections.abc": "_collections_abc.py",
}
"""Modules whose documented API lives in a private file at the top of the stdlib directory."""
_THIN_CHARS: Final = 2_000


def _module_document(name: str, source: Path, *, fold_children: bool) -> CorpusDocument:
    """Module docstring plus public signatures and docstrings, bounded to `MAX_MODULE_CHARS`.

    A package also folds in its public submodules that have no page of their own (asyncio.tasks into
    asyncio), since its `__init__` alone often says little; if that is still thin, it folds in the
    private implementation modules too (tomllib._parser, zoneinfo._zoneinfo).
    """
    tree = ast.parse(source.read_bytes(), filename=str(source))
    docstring = ast.get_docstring(tree) or ""
    parts = [docstring] if docstring else []
    parts.extend(_describe(tree, module=name))
    implementation = _implementation_file(name)
    if implementation is not None:
        impl_tree = ast.parse(implementation.read_bytes(), filename=str(implementation))
        docstring = docstring or ast.get_docstring(impl_tree) or ""
        parts = [docstring] if docstring else []
        parts.extend(_describe(impl_tree, module=name))
    if fold_children:
        children = list(_folded_children(name, source.parent))
        for private in (False, True):
            if private and sum(len(p) for p in parts) >= _THIN_CHARS:
                break
            for child_name, child in children:
                if child_name.rsplit(".", 1)[-1].startswith("_") != private:
                    continue
                if sum(len(p) for p in parts) >= MAX_MODULE_CHARS:
                    break  # full: do not parse what cannot be kept
                parts.extend(_child_entries(child_name, child, private=private))
    body = _bounded_join(parts, MAX_MODULE_CHARS)
    display = "os.path" if name == "posixpath" else name
    summary = _summary(docstring)
    return CorpusDocument(
        url=module_url(name),
        collection=PYTHON_DOCS_COLLECTION,
        source=name,
        title=f"{display} — {summary}" if summary else display,
        body=body or display,
    )


def _implementation_file(name: str) -> Path | None:
    file_name = _IMPLEMENTED_IN.get(name)
    if file_name is None:
        return None
    return next((Path(d, file_name) for d in _stdlib_dirs() if Path(d, file_name).is_file()), None)


def _child_entries(child_name: str, child: Path, *, private: bool) -> list[str]:
    """A folded submodule: its docstring then its public API; a private one documents its package."""
    try:
        tree = ast.parse(child.read_bytes(), filename=str(child))
    except (OSError, SyntaxError, ValueError):
        return []
    entries: list[str] = []
    doc = ast.get_docstring(tree) or ""
    if not private:
        entries.append(f"{child_name}: {doc}" if doc else child_name)
    elif doc:
        entries.append(doc)
    entries.extend(_describe(tree, module=child_name.rsplit(".", 1)[0] if private else child_name))
    return entries


def _folded_children(package: str, directory: Path) -> Iterator[tuple[str, Path]]:
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        stem = entry.stem if entry.suffix == ".py" else entry.name
        if stem.startswith("__") or stem in ("test", "tests", "idle_test") or f"{package}.{stem}" in SUBMODULE_PAGES:
            continue
        if entry.suffix == ".py" and entry.is_file():
            yield f"{package}.{stem}", entry
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            yield f"{package}.{stem}", entry / "__init__.py"


def _summary(docstring: str) -> str:
    first = docstring.strip().split("\n\n", 1)[0]
    line = " ".join(first.split())
    return line if len(line) <= 120 else line[:119].rstrip() + "…"


def _describe(tree: ast.Module, *, module: str) -> Iterator[str]:
    """`name(signature): docstring` for public top-level functions and classes (and their methods)."""
    seen: set[str] = set()
    for node in _top_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.startswith("_") or node.name in seen:
                continue
            seen.add(node.name)
            yield _function_entry(node, prefix=f"{module}.")
        elif isinstance(node, ast.ClassDef):
            if node.name.startswith("_") or node.name in seen:
                continue
            seen.add(node.name)
            bases = ", ".join(ast.unparse(b) for b in [*node.bases, *node.keywords])
            doc = ast.get_docstring(node) or ""
            header = f"class {module}.{node.name}({_clip(bases)})"
            yield f"{header}: {doc}" if doc else header
            for member in node.body:
                if _documented_method(member):
                    yield _function_entry(member, prefix=f"{module}.{node.name}.")


def _documented_method(node: ast.stmt) -> TypeGuard[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Public methods (and `__init__`) with a docstring; undocumented ones would only add noise."""
    return (
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (not node.name.startswith("_") or node.name == "__init__")
        and ast.get_docstring(node) is not None
    )


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements at module level, including those under `if`/`try` (platform-specific definitions)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            yield from _top_level(node.body)
            for handler in node.handlers:
                yield from _top_level(handler.body)
            yield from _top_level(node.orelse)
        else:
            yield node


def _function_entry(node: ast.FunctionDef | ast.AsyncFunctionDef, *, prefix: str) -> str:
    keyword = "async " if isinstance(node, ast.AsyncFunctionDef) else ""
    signature = f"{keyword}{prefix}{node.name}({_clip(ast.unparse(node.args))})"
    doc = ast.get_docstring(node) or ""
    return f"{signature}: {doc}" if doc else signature


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SIGNATURE_CHARS else text[: MAX_SIGNATURE_CHARS - 1] + "…"


def _bounded_join(parts: Sequence[str], limit: int) -> str:
    """Join whole entries, in order, while they fit in `limit` (one huge docstring does not end the rest).

    A first entry over the limit is cut at a line break instead.
    """
    out: list[str] = []
    size = 0
    for part in parts:
        cost = len(part) + 2
        if size + cost > limit:
            if not out:
                cut = part[:limit]
                out.append(cut[: cut.rfind("\n")] if "\n" in cut else cut)
                size = len(out[0])
            continue
        out.append(part)
        size += cost
    return "\n\n".join(out)
