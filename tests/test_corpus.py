"""The local corpus on real PostgreSQL: ingestion, re-ingestion, bad files, ranking, the Python docs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from agent.api import Runtime
from agent.citations import normalize_text
from agent.durable.database import create_pool
from tests._databases import DocsTemplate
from tools._corpus import CorpusSearchBackend, CorpusStore
from tools._corpus_ingest import MAX_FILE_BYTES, IngestReport, ingest_path
from tools._pydocs_build import PYTHON_DOCS_COLLECTION, build_python_docs
from tools._pydocs_index import ensure_python_docs, python_docs_version
from tools._pydocs_urls import TOPIC_PAGES, see_also_url

# --- user files ------------------------------------------------------------------------------------


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture
def store(runtime: Runtime) -> CorpusStore:
    return CorpusStore(runtime.pool)


async def test_ingests_markdown_html_and_text_with_titles_and_stable_urls(store: CorpusStore, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    _write(notes / "guide.md", "Intro line\n\n# Brewing Guide\n\nSteep green tea at 80 degrees for two minutes.\n")
    _write(notes / "setext.markdown", "---\ntitle: 'Front Matter Title'\n---\nBody about kettles.\n")
    _write(
        notes / "web" / "page.html",
        "<html><head><title>Oolong Notes</title></head><body><nav>Home | About</nav>"
        "<article><p>Oolong is partially oxidised tea, between green and black.</p></article></body></html>",
    )
    _write(notes / "plain.txt", "Matcha is powdered green tea.\n")
    _write(notes / "manual.rst", "Kettle Manual\n=============\n\nDescale the kettle monthly.\n")
    _write(notes / "image.png", b"\x89PNG\r\n\x1a\n")
    _write(notes / ".hidden.md", "# Secret\n")

    report = await ingest_path(store, notes)

    assert report.collection == "notes"
    assert (report.inserted, report.updated, report.unchanged, report.errors) == (5, 0, 0, [])
    assert report.skipped == 1  # the PNG; hidden files are not even considered
    assert await store.count("notes") == 5

    guide = await store.get_document("corpus://notes/guide.md")
    assert guide is not None
    assert guide.title == "Brewing Guide"
    assert "Steep green tea at 80 degrees" in guide.text
    assert (guide.status_code, guide.content_type, guide.final_url) == (200, "text/plain", "corpus://notes/guide.md")

    front = await store.get_document("corpus://notes/setext.markdown")
    assert front is not None and front.title == "Front Matter Title"

    page = await store.get_document("corpus://notes/web/page.html")
    assert page is not None
    assert page.title == "Oolong Notes"
    assert "Oolong is partially oxidised tea" in page.text
    assert "<p>" not in page.text

    plain = await store.get_document("corpus://notes/plain.txt")
    assert plain is not None and plain.title == "plain.txt" and plain.text == "Matcha is powdered green tea.\n"
    manual = await store.get_document("corpus://notes/manual.rst")
    assert manual is not None and manual.title == "Kettle Manual"

    assert await store.get_document("corpus://notes/missing.md") is None
    [stats] = await store.collections()
    assert (stats.name, stats.documents) == ("notes", 5)
    assert stats.characters > 100


async def test_single_file_uses_its_stem_and_urls_are_quoted(store: CorpusStore, tmp_path: Path) -> None:
    file = _write(tmp_path / "My Notes.md", "# Release checklist\n\nTag, build, publish.\n")
    report = await ingest_path(store, file)
    assert report.collection == "My Notes" and report.inserted == 1
    assert await store.get_document("corpus://My%20Notes/My%20Notes.md") is not None

    named = await ingest_path(store, file, collection="release")
    assert named.inserted == 1
    doc = await store.get_document("corpus://release/My%20Notes.md")
    assert doc is not None and doc.title == "Release checklist"


async def test_reingesting_updates_instead_of_duplicating(store: CorpusStore, tmp_path: Path) -> None:
    docs = tmp_path / "kb"
    _write(docs / "a.md", "# Alpha\n\nThe first document mentions apricots.\n")
    _write(docs / "b.md", "# Beta\n\nThe second document mentions bananas.\n")
    first = await ingest_path(store, docs)
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)

    again = await ingest_path(store, docs)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)

    _write(docs / "b.md", "# Beta\n\nThe second document now talks about blueberries instead.\n")
    changed = await ingest_path(store, docs)
    assert (changed.inserted, changed.updated, changed.unchanged) == (0, 1, 1)
    assert await store.count("kb") == 2

    [hit] = await store.search("blueberries", limit=5)
    assert hit.url == "corpus://kb/b.md"
    assert "blueberries" in hit.snippet
    assert await store.search("bananas", limit=5) == []


async def test_upsert_document_reports_what_happened(store: CorpusStore) -> None:
    fields = {"url": "corpus://x/one.txt", "collection": "x", "source": "one.txt", "title": "One"}
    assert await store.upsert_document(**fields, body="first") == "inserted"
    assert await store.upsert_document(**fields, body="first") == "unchanged"
    assert await store.upsert_document(**fields, body="second") == "updated"
    assert await store.count() == 1


async def test_bad_files_are_reported_and_the_rest_is_indexed(store: CorpusStore, tmp_path: Path) -> None:
    docs = tmp_path / "mixed"
    _write(docs / "good.md", "# Good\n\nThis file is fine and mentions zucchini.\n")
    _write(docs / "binary.txt", b"GIF89a\x00\x01\x02\x03 not text")
    _write(docs / "latin1.txt", "café au lait".encode("latin-1"))
    _write(docs / "empty.md", "")
    _write(docs / "blank.txt", "  \n\n\t\n")
    _write(docs / "huge.txt", b"a" * (MAX_FILE_BYTES + 1))
    _write(docs / "also-good.html", "<html><head><title>Fine</title></head><body><p>Eggplant facts.</p></body></html>")

    report = await ingest_path(store, docs)

    assert report.inserted == 2
    messages = {Path(e.path).name: e.message for e in report.errors}
    assert set(messages) == {"binary.txt", "latin1.txt", "empty.md", "blank.txt", "huge.txt"}
    assert "binary" in messages["binary.txt"] and "NUL" in messages["binary.txt"]
    assert "not UTF-8" in messages["latin1.txt"] and "0xe9" in messages["latin1.txt"]
    assert "empty" in messages["empty.md"] and "empty" in messages["blank.txt"]
    assert "too large" in messages["huge.txt"] and "5 MB" in messages["huge.txt"]
    assert all(str(e).startswith(e.path) for e in report.errors)
    assert [h.url for h in await store.search("zucchini", limit=3)] == ["corpus://mixed/good.md"]
    assert [h.url for h in await store.search("eggplant", limit=3)] == ["corpus://mixed/also-good.html"]


async def test_a_file_too_big_for_a_tsvector_is_reported(store: CorpusStore, tmp_path: Path) -> None:
    docs = tmp_path / "logs"
    _write(docs / "ids.txt", " ".join(f"id{i:07d}x" for i in range(400_000)))  # 4.4 MB of distinct words
    _write(docs / "note.txt", "a small note about quinces")
    report = await ingest_path(store, docs)
    assert report.inserted == 1
    [error] = report.errors
    assert Path(error.path).name == "ids.txt" and "too many distinct words" in error.message
    assert [h.url for h in await store.search("quinces", limit=3)] == ["corpus://logs/note.txt"]


async def test_missing_or_unsupported_paths_raise_clear_errors(store: CorpusStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        await ingest_path(store, tmp_path / "nope")
    with pytest.raises(ValueError, match="not a supported document"):
        await ingest_path(store, _write(tmp_path / "data.csv", "a,b\n"))


_GARDEN = {
    "tomatoes.md": "# Growing tomatoes\n\nTomatoes need full sun, deep watering and support stakes. "
    "Pinch side shoots to get bigger fruit.",
    "compost.md": "# Composting\n\nA compost heap turns kitchen scraps and leaves into humus. Turn it weekly; "
    "keep it as damp as a wrung-out sponge.",
    "slugs.md": "# Slugs and snails\n\nBeer traps and copper tape keep slugs away from lettuce seedlings. "
    "Water in the morning so the soil is dry by night.",
    "roses.md": "# Pruning roses\n\nPrune roses in late winter, cutting above an outward-facing bud. "
    "Remove dead, diseased and crossing stems first.",
    "watering.md": "# Watering schedule\n\nMost vegetables want about an inch of water a week. "
    "Water deeply and less often so roots grow down.",
}


async def test_the_relevant_document_ranks_first(store: CorpusStore, tmp_path: Path) -> None:
    for name, text in _GARDEN.items():
        _write(tmp_path / "garden" / name, text)
    await ingest_path(store, tmp_path / "garden")

    expectations = {
        "How do I keep slugs away from my lettuce?": "slugs.md",
        "When should I prune roses?": "roses.md",
        "how to make compost from kitchen scraps": "compost.md",
        "why should tomato side shoots be pinched": "tomatoes.md",
    }
    for question, expected in expectations.items():
        hits = await store.search(question, limit=3)
        assert hits, question
        assert hits[0].url == f"corpus://garden/{expected}", (question, [h.url for h in hits])
        assert hits[0].score > 0

    # No document has "my" + "garden" + "snails" + "beer" all together: the OR fallback still finds one.
    fallback = await store.search("Do snails in my garden like beer or cider?", limit=3)
    assert fallback[0].url == "corpus://garden/slugs.md"
    assert await store.search("   ", limit=3) == []
    assert await store.search("the and of", limit=3) == []  # only stop words
    assert await store.search("slugs", limit=3, collection="elsewhere") == []


async def test_snippets_are_bounded_plain_text(store: CorpusStore) -> None:
    body = ("Filler words about nothing in particular. " * 300) + "The treasure is buried under the old oak tree."
    await store.upsert_document(
        url="corpus://t/long.txt", collection="t", source=None, title="Long <b>file</b>", body=body
    )
    [hit] = await store.search("treasure oak", limit=1)
    assert "treasure" in hit.snippet and "oak" in hit.snippet
    assert "<b>" not in hit.snippet and "«" not in hit.snippet
    assert len(hit.snippet) < 600
    assert hit.title == "Long <b>file</b>"  # titles are stored verbatim


async def test_search_backend_keeps_corpus_and_fragment_urls(store: CorpusStore, tmp_path: Path) -> None:
    _write(tmp_path / "ops" / "deploy.md", "# Deploying\n\nRun the blue-green deploy script after tagging.\n")
    await ingest_path(store, tmp_path / "ops")
    await store.upsert_document(
        url="https://example.org/reference/statements.html#pass",
        collection="web",
        source="pass",
        title="The pass statement",
        body="pass is a null operation; deploy it where a statement is required syntactically.",
    )
    calls: list[str] = []

    async def prepare() -> None:
        calls.append("prepared")

    backend = CorpusSearchBackend(store, prepare=prepare)
    assert backend.name == "corpus"
    hits = await backend.search("deploy", max_results=5)
    assert {h.url for h in hits} == {
        "corpus://ops/deploy.md",
        "https://example.org/reference/statements.html#pass",
    }
    assert all(h.title and h.snippet for h in hits)
    await backend.search("deploy", max_results=1)
    assert calls == ["prepared"]  # once, before the first search

    only_ops = CorpusSearchBackend(store, collection="ops")
    assert [h.url for h in await only_ops.search("deploy", max_results=5)] == ["corpus://ops/deploy.md"]


# --- the Python documentation (indexed once for this module) -------------------------------------


@dataclass
class IndexedDocs:
    pool: asyncpg.Pool
    store: CorpusStore
    report: IngestReport
    seconds: float


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture(scope="module")
async def python_docs(postgres_url: str, python_docs_template: DocsTemplate) -> AsyncIterator[IndexedDocs]:
    """One database for the module: a clone of the session's Python-docs template, which two concurrent
    `ensure_python_docs` calls indexed (tests/conftest.py); `report` and `seconds` are that indexing's."""
    name = f"t_corpus_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {python_docs_template.name}")
    finally:
        await admin.close()
    pool = await create_pool(_with_database(postgres_url, name), max_size=4)
    try:
        store = CorpusStore(pool)
        yield IndexedDocs(
            pool=pool, store=store, report=python_docs_template.report, seconds=python_docs_template.seconds
        )
    finally:
        await pool.close()
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


async def test_python_docs_are_indexed_quickly(python_docs: IndexedDocs) -> None:
    report, store = python_docs.report, python_docs.store
    assert report.errors == []
    assert python_docs.seconds < 60, f"indexing took {python_docs.seconds:.1f}s (budget 30s on 2 cores)"
    assert await store.count(PYTHON_DOCS_COLLECTION) == report.inserted == report.documents
    topics = await python_docs.pool.fetchval(
        "SELECT count(*) FROM corpus_documents WHERE source LIKE 'pydoc_data.topics:%'"
    )
    assert topics == 79
    overviews = await python_docs.pool.fetchval(
        "SELECT count(*) FROM corpus_documents WHERE url LIKE 'corpus://python-docs/modules/%' AND url NOT LIKE '%#%'"
    )
    assert overviews >= 200  # modules with source, plus builtins and the compiled ones (math, sys, itertools...)
    assert report.documents - topics - overviews >= 5_000  # one document per documented name
    assert await store.get_document("corpus://python-docs/modules/argparse") is not None
    assert await store.get_document("corpus://python-docs/modules/argparse#ArgumentParser") is not None


async def test_every_topic_is_a_corpus_url_with_a_docs_python_org_page(python_docs: IndexedDocs) -> None:
    from pydoc_data.topics import topics

    assert set(topics) <= set(TOPIC_PAGES)
    rows = await python_docs.pool.fetch(
        "SELECT url, source FROM corpus_documents WHERE source LIKE 'pydoc_data.topics:%'"
    )
    assert len(rows) == len(topics)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for row in rows:
        label = row["source"].removeprefix("pydoc_data.topics:")
        assert row["url"] == f"corpus://python-docs/topics/{label}"
        page = urlsplit(see_also_url(row["url"]) or "")
        assert page.scheme == "https" and page.hostname == "docs.python.org"
        assert page.path.startswith(f"/{version}/") and page.path.endswith(".html") and page.fragment == label


async def test_python_questions_find_the_right_pages(python_docs: IndexedDocs) -> None:
    store = python_docs.store
    nonlocal_hits = await store.search("What does the nonlocal statement do?", limit=5)
    assert nonlocal_hits[0].url == "corpus://python-docs/topics/nonlocal", [h.url for h in nonlocal_hits]
    assert "nonlocal" in nonlocal_hits[0].snippet

    argv_hits = await store.search("How do I parse command line arguments?", limit=3)
    modules = [h.url.removeprefix("corpus://python-docs/modules/").split("#")[0] for h in argv_hits]
    assert {"argparse", "getopt", "optparse"} & set(modules), modules

    page = await store.get_document(nonlocal_hits[0].url)
    assert page is not None
    assert page.title == "The nonlocal statement"
    assert 'The "nonlocal" statement causes the listed identifiers' in page.text


async def test_ensure_python_docs_is_a_no_op_once_indexed(python_docs: IndexedDocs) -> None:
    started = time.perf_counter()
    assert await ensure_python_docs(python_docs.store) is None
    assert time.perf_counter() - started < 1.0


async def test_a_different_python_version_reindexes_and_prunes(python_docs: IndexedDocs) -> None:
    store = python_docs.store
    for url in ("corpus://python-docs/modules/gone", "https://docs.python.org/3.11/library/gone.html"):
        await store.upsert_document(  # a removed module, and a row of format 1 (docs.python.org URLs)
            url=url,
            collection=PYTHON_DOCS_COLLECTION,
            source="gone",
            title="gone — a removed module",
            body="This module no longer exists.",
        )
    await python_docs.pool.execute(
        "UPDATE corpus_collections SET version = 'python-3.0.0/format-1' WHERE name = $1", PYTHON_DOCS_COLLECTION
    )
    report = await ensure_python_docs(store)
    assert report is not None
    assert report.unchanged == python_docs.report.documents and report.inserted == report.updated == 0
    assert await store.get_document("corpus://python-docs/modules/gone") is None
    leftovers = await python_docs.pool.fetchval(
        "SELECT count(*) FROM corpus_documents WHERE collection = $1 AND url NOT LIKE 'corpus://python-docs/%'",
        PYTHON_DOCS_COLLECTION,
    )
    assert leftovers == 0
    assert await store.collection_version(PYTHON_DOCS_COLLECTION) == python_docs_version()


# A phrase of each name's real docstring (`inspect.getdoc`): built-ins and compiled modules, re-exported
# compiled code (collections.defaultdict) and a name beyond the old 40,000-character module cut (asyncio.gather).
ENTRY_PHRASES = {
    "builtins#zip": "If strict is true and one of the arguments is exhausted before the others, raise a ValueError.",
    "builtins#str.join": "The string whose method is called is inserted in between each given string.",
    "math#isclose": "Determine whether two floating point numbers are close in value.",
    "sys#exit": "If the status is an integer, it will be used as the system exit status.",
    "asyncio#gather": "the first raised exception will be immediately propagated to the returned future.",
    "functools#lru_cache": "Least-recently-used cache decorator.",
    "collections#defaultdict": "The default factory is called without arguments to produce",
}


@pytest.mark.parametrize(("entry", "phrase"), ENTRY_PHRASES.items())
async def test_documented_names_have_their_own_document(python_docs: IndexedDocs, entry: str, phrase: str) -> None:
    module, _, qualname = entry.partition("#")
    page = await python_docs.store.get_document(f"corpus://python-docs/modules/{entry}")
    assert page is not None, entry
    signature = qualname if module == "builtins" else f"{module}.{qualname}"
    assert page.title.removeprefix("class ").startswith(f"{signature}("), page.title
    assert page.text.startswith(f"{page.title}\n\n") and normalize_text(phrase) in normalize_text(page.text)


async def test_a_documented_name_ranks_above_the_pages_that_mention_it(python_docs: IndexedDocs) -> None:
    for query in ("lru_cache", "functools.lru_cache"):
        hits = await python_docs.store.search(query, limit=5)
        assert hits[0].url == "corpus://python-docs/modules/functools#lru_cache", [h.url for h in hits]
    [hit] = await python_docs.store.search("str.join", limit=1)
    assert hit.url == "corpus://python-docs/modules/builtins#str.join"


async def test_a_module_overview_lists_its_names_in_one_line_each(python_docs: IndexedDocs) -> None:
    page = await python_docs.store.get_document("corpus://python-docs/modules/functools")
    assert page is not None and page.title.startswith("functools — ")
    assert "functools.lru_cache(maxsize=128, typed=False): Least-recently-used cache decorator." in page.text
    assert "If *maxsize* is set to None" not in page.text  # the rest of that docstring is in its own document
    builtins = await python_docs.store.get_document("corpus://python-docs/modules/builtins")
    assert builtins is not None and "\nlen(obj, /): Return the number of items in a container." in builtins.text


_IMPORT_PROBE = """
import json, sys, warnings
from tools._pydocs_build import build_python_docs
before = set(sys.modules)
warnings.simplefilter("error")  # a module that warns when imported (imp, crypt, nis) must not be imported
documents, errors = build_python_docs()
print(json.dumps({"new": sorted(set(sys.modules) - before), "errors": len(errors)}))
"""


def test_building_python_docs_imports_only_side_effect_free_stdlib_modules() -> None:
    """Compiled modules, and modules that re-export compiled code, are imported for their runtime docstrings;
    nothing outside the standard library, and nothing whose import does something (a browser, a display, the
    terminal, a deprecation warning)."""
    probe = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    result = json.loads(probe.stdout.splitlines()[-1])
    assert result["errors"] == 0
    imported = {name.split(".")[0] for name in result["new"]}
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    never = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "readline", "curses", "distutils"}
    assert not imported & never
    assert "cmath" in imported  # a compiled module it documents


def test_python_docs_documents_are_unique_and_bounded() -> None:
    documents, errors = build_python_docs()
    assert errors == []
    assert len({d.url for d in documents}) == len(documents)
    modules = [d for d in documents if d.url.startswith("corpus://python-docs/modules/")]
    assert all(len(d.body) <= 40_000 for d in modules if "#" not in d.url)
    assert all(len(d.body) <= 20_000 for d in modules if "#" in d.url)
    assert all(d.title for d in documents)
