"""`corpus add` never reads outside the folder it is given (issue 14, point 6), on a real folder.

The folder holds a link to a fake credentials file outside it, a link to a folder outside it, a link to
`/etc/passwd`, a broken link, a link to a file inside it and a FIFO. None of them is read: each is named,
with why, in `IngestReport.refused` (and on stderr by the CLI, one line each, counted in its summary), and
no text from outside reaches the corpus. The same holds for a link named on the command line, for a path
that resolves outside the folder through `..`, and for a file that became a link after the folder was
scanned.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from agent.api import Runtime
from agent.settings import Settings
from tests._cli import run_cli as cli
from tests._processes import worker_env
from tools._corpus import CorpusStore
from tools._corpus_ingest import _load_file, _Refusal, ingest_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="symbolic links and FIFOs as on POSIX")

SECRET = "AKIAFAKEKEY0123456789 sk-live-0123456789abcdefghijklmnop"


def _layout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """`docs/` with one real document and every kind of entry that must be refused; what each must say."""
    outside = tmp_path / "outside"
    (outside / "private").mkdir(parents=True)
    credentials = outside / "credentials.md"
    credentials.write_text(f"# Credentials\n\n{SECRET}\n", encoding="utf-8")
    (outside / "private" / "notes.md").write_text(f"# Private notes\n\n{SECRET}\n", encoding="utf-8")

    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "guide.md").write_text("# Guide\n\nSteep green tea at 80 degrees.\n", encoding="utf-8")
    (docs / "sub" / "kettle.txt").write_text("Descale the kettle monthly.\n", encoding="utf-8")
    (docs / "creds.md").symlink_to(credentials)
    (docs / "sub" / "private").symlink_to(outside / "private", target_is_directory=True)
    (docs / "passwd.txt").symlink_to("/etc/passwd")
    (docs / "broken.md").symlink_to(tmp_path / "nowhere.md")
    (docs / "alias.md").symlink_to("guide.md")  # inside, but a link all the same
    os.mkfifo(docs / "pipe.md")  # reading it would block forever
    expected = {
        str(docs / "creds.md"): f"is a symbolic link (to {credentials}); links are not followed",
        str(docs / "sub" / "private"): f"is a symbolic link (to {outside / 'private'}); links are not followed",
        str(docs / "passwd.txt"): "is a symbolic link (to /etc/passwd); links are not followed",
        str(docs / "broken.md"): f"is a symbolic link (to {tmp_path / 'nowhere.md'}); links are not followed",
        str(docs / "alias.md"): "is a symbolic link (to guide.md); links are not followed",
        str(
            docs / "pipe.md"
        ): "is not a regular file; corpus add reads only regular files inside the folder it is given",
    }
    return docs, expected


async def _indexed_text(runtime: Runtime) -> str:
    rows = await runtime.pool.fetch("SELECT url, source, title, body FROM corpus_documents")
    return "\n".join(f"{r['url']} {r['source']} {r['title']} {r['body']}" for r in rows)


async def test_links_and_special_files_in_the_folder_are_refused_and_named(runtime: Runtime, tmp_path: Path) -> None:
    docs, expected = _layout(tmp_path)
    store = CorpusStore(runtime.pool)

    report = await ingest_path(store, docs)

    assert {e.path: e.message for e in report.refused} == expected
    assert (report.inserted, report.errors, report.skipped) == (2, [], 0)
    assert sorted(r["url"] for r in await runtime.pool.fetch("SELECT url FROM corpus_documents")) == [
        "corpus://docs/guide.md",
        "corpus://docs/sub/kettle.txt",
    ]
    indexed = await _indexed_text(runtime)
    for leaked in ("AKIAFAKEKEY", "sk-live-", "Credentials", "Private notes", "root:", str(tmp_path / "outside")):
        assert leaked not in indexed


async def test_a_link_named_as_the_path_is_refused_too(runtime: Runtime, tmp_path: Path) -> None:
    docs, _ = _layout(tmp_path)
    store = CorpusStore(runtime.pool)
    folder_link = tmp_path / "docs-link"
    folder_link.symlink_to(tmp_path / "outside", target_is_directory=True)

    for given, target in (
        (docs / "creds.md", tmp_path / "outside" / "credentials.md"),
        (folder_link, tmp_path / "outside"),
    ):
        report = await ingest_path(store, given)
        assert report.documents == 0
        [refusal] = report.refused
        assert (refusal.path, refusal.message) == (
            str(given),
            f"is a symbolic link (to {target}); give the real path instead",
        )
    assert await _indexed_text(runtime) == ""


def test_a_path_escaping_the_folder_or_turned_into_a_link_is_not_read(tmp_path: Path) -> None:
    docs, _ = _layout(tmp_path)
    root = docs.resolve()
    escaping = docs / "sub" / ".." / ".." / "outside" / "credentials.md"
    refused = _load_file(escaping, root=root, url="corpus://docs/x.md", collection="docs")
    assert refused == _Refusal(
        f"resolves outside {root}; corpus add reads only regular files inside the folder it is given"
    )

    # A file the scan found regular, replaced by a link before it is read: O_NOFOLLOW refuses to open it.
    swapped = docs / "guide.md"
    swapped.unlink()
    swapped.symlink_to(docs / "sub" / "kettle.txt")  # even a link that stays inside
    refused = _load_file(swapped, root=root, url="corpus://docs/guide.md", collection="docs")
    assert refused == _Refusal(f"is a symbolic link (to {docs / 'sub' / 'kettle.txt'}); links are not followed")


async def test_corpus_add_prints_one_line_per_refused_path_and_counts_them(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    docs, expected = _layout(tmp_path)
    added = cli(worker_env(settings), "corpus", "add", str(docs))

    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("2 added, 0 updated, 0 unchanged, 0 skipped, 6 refused in "), added.stdout
    lines = [line for line in added.stderr.splitlines() if line.startswith("refused: ")]
    assert sorted(lines) == sorted(f"refused: {path}: {message}" for path, message in expected.items())
    assert "Traceback" not in added.stderr and SECRET not in added.stdout + added.stderr
    assert "AKIAFAKEKEY" not in await _indexed_text(runtime)
