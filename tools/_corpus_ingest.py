"""Filling the corpus from the user's files (`corpus add`), and the batching every ingestion shares.

Reading and parsing run in a worker thread (the event loop keeps serving); the database work is a few
batched statements. The Python documentation is built in `tools._pydocs_build` and indexed, on first use,
by `tools._pydocs_index`.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import quote

import asyncpg

from tools._corpus import CorpusDocument, CorpusStore, UpsertCounts
from tools._extract import extract_main_text
from tools.errors import ResearchAgentError

__all__ = [
    "MAX_FILE_BYTES",
    "SUPPORTED_SUFFIXES",
    "CorpusPathError",
    "IngestError",
    "IngestReport",
    "ingest_path",
]

MAX_FILE_BYTES: Final = 5 * 1024 * 1024
_BATCH_DOCUMENTS: Final = 64
_BATCH_CHARS: Final = 4_000_000

_MARKDOWN: Final = frozenset({".md", ".markdown"})
_TEXT: Final = frozenset({".txt", ".rst"})
_HTML: Final = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES: Final = _MARKDOWN | _TEXT | _HTML


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
    refused: list[IngestError] = field(default_factory=list)
    """Entries not read because they could lead outside the folder: symbolic links (to files or folders),
    anything but a regular file (a FIFO, a device), a path that resolves outside it. Each with why."""
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

    Nothing outside `path` is ever read: no symbolic link is followed, not even `path` itself (give the
    real path), and each link, special file or path resolving outside the folder is reported in `refused`.
    """
    started = time.perf_counter()
    scan = await asyncio.to_thread(_scan, path)
    name = collection.strip() if collection and collection.strip() else scan.default_collection
    report = IngestReport(collection=name, skipped=scan.skipped, refused=scan.refused)
    batch: list[CorpusDocument] = []
    batch_chars = 0
    for file in scan.files:
        relative = file.name if file == scan.root else file.relative_to(scan.root).as_posix()
        url = f"corpus://{quote(name, safe='')}/{quote(relative, safe='/')}"
        loaded = await asyncio.to_thread(_load_file, file, root=scan.root, url=url, collection=name)
        if isinstance(loaded, _Refusal):
            report.refused.append(IngestError(path=str(file), message=loaded.message))
            continue
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
    refused: list[IngestError]
    default_collection: str


@dataclass(frozen=True)
class _Refusal:
    """Why a file was not read: reading it could leave the folder (`IngestReport.refused`)."""

    message: str


_ONLY_INSIDE: Final = "corpus add reads only regular files inside the folder it is given"


def _scan(path: Path) -> _Scan:
    """The supported files under `path` (sorted, hidden entries skipped), the unsupported count, and the
    entries refused: links (never followed), special files, anything resolving outside `path`."""
    given = path.expanduser()
    if given.is_symlink():  # even the path given: a glob such as `docs/*` would name a planted link too
        refusal = IngestError(path=str(path), message=f"{_link(given)}; give the real path instead")
        return _Scan(root=given, files=[], skipped=0, refused=[refusal], default_collection=given.stem or "files")
    root = given.resolve()
    if root.is_file():
        if root.suffix.lower() in SUPPORTED_SUFFIXES:
            return _Scan(root=root, files=[root], skipped=0, refused=[], default_collection=root.stem or "files")
        raise _UnsupportedFileError(f"corpus path {str(path)!r} is not a supported document: {_EXPECTED_PATH}")
    if not root.is_dir():
        raise _PathNotFoundError(f"corpus path {str(path)!r} does not exist: {_EXPECTED_PATH}")
    files: list[Path] = []
    refused: list[IngestError] = []
    skipped = 0
    # os.walk does not descend into directory links (followlinks=False); they are listed, and refused here.
    for directory, subdirs, names in os.walk(root):
        kept: list[str] = []
        for name in sorted(d for d in subdirs if not d.startswith(".")):
            problem = _refusal(Path(directory, name), root, folder=True)
            if problem is None:
                kept.append(name)
            else:
                refused.append(IngestError(path=str(Path(directory, name)), message=problem))
        subdirs[:] = kept
        for name in sorted(n for n in names if not n.startswith(".")):
            problem = _refusal(Path(directory, name), root, folder=False)
            if problem is not None:
                refused.append(IngestError(path=str(Path(directory, name)), message=problem))
            elif Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                files.append(Path(directory, name))
            else:
                skipped += 1
    return _Scan(root=root, files=files, skipped=skipped, refused=refused, default_collection=root.name or "files")


def _refusal(entry: Path, root: Path, *, folder: bool) -> str | None:
    """Why `entry`, found under `root`, must not be read (or listed), or None: only what is really inside."""
    try:
        mode = entry.lstat().st_mode
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if stat.S_ISLNK(mode):
        return f"{_link(entry)}; links are not followed"
    if not (stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)):
        return f"is not a regular {'folder' if folder else 'file'}; {_ONLY_INSIDE}"
    if not _inside(entry, root):
        return f"resolves outside {root}; {_ONLY_INSIDE}"
    return None


def _link(entry: Path) -> str:
    try:
        target = os.readlink(entry)
    except OSError:
        return "is a symbolic link"
    return f"is a symbolic link (to {target})"


def _inside(entry: Path, root: Path) -> bool:
    """Whether `entry` resolves (links and `..` followed) to `root` or a path below it."""
    return Path(os.path.realpath(entry)).is_relative_to(root)


def _load_file(file: Path, *, root: Path, url: str, collection: str) -> CorpusDocument | _Refusal | str:
    """The document for `file`, a refusal if it stopped being a regular file inside `root` since the scan,
    or a message saying why it cannot be indexed."""
    try:
        data = _read_inside(file, root)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link put there after the scan
            return _Refusal(f"{_link(file)}; links are not followed")
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if isinstance(data, _Refusal | str):
        return data
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


def _read_inside(file: Path, root: Path) -> bytes | _Refusal | str:
    """At most `MAX_FILE_BYTES + 1` bytes of `file`, opened without following a link (`O_NOFOLLOW`) and
    without blocking on a FIFO, once it is checked to resolve inside `root` and found a regular file."""
    if not _inside(file, root):
        return _Refusal(f"resolves outside {root}; {_ONLY_INSIDE}")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(file, flags)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return _Refusal(f"is not a regular file; {_ONLY_INSIDE}")
        if info.st_size > MAX_FILE_BYTES:
            return f"too large ({info.st_size / 1024 / 1024:.1f} MB; the limit is {MAX_FILE_BYTES // 1024 // 1024} MB)"
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        return f"too large (over the {MAX_FILE_BYTES // 1024 // 1024} MB limit)"
    return data


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


def _batches(documents: Sequence[CorpusDocument], *, max_documents: int) -> Iterator[list[CorpusDocument]]:
    batch: list[CorpusDocument] = []
    chars = 0
    for doc in documents:
        batch.append(doc)
        chars += len(doc.body)
        if len(batch) >= max_documents or chars >= _BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch
