"""The Python docs are cited under the corpus URLs that serve their text; docs.python.org is only "see also".

A pydoc topic or a module's docstrings is not the web page, so a quote from it may not be on
docs.python.org (issue 12, docs/decisions/0018-python-docs-urls.md).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tools
from agent.api import Runtime
from agent.citations import normalize_text
from agent.durable.database import create_pool
from agent.durable.factory import CorpusUrlsOnly
from tools import (
    PYTHON_DOCS_COLLECTION,
    CorpusStore,
    FetchedPage,
    FetchLimits,
    FetchUrlResult,
    LocalPages,
    ToolFailure,
    ensure_python_docs,
    fetch_url,
)
from tools._pydocs_index import python_docs_version
from tools._pydocs_urls import see_also_url

DOCS = f"https://docs.python.org/{sys.version_info.major}.{sys.version_info.minor}/"
OS_MODULE = "corpus://python-docs/modules/os"
MAKEDIRS_ENTRY = "corpus://python-docs/modules/os#makedirs"
NONLOCAL_TOPIC = "corpus://python-docs/topics/nonlocal"
USER_FILE = "corpus://notes/mkdir.md"
MAKEDIRS = "Super-mkdir; create a leaf directory and all intermediate ones."
NONLOCAL = 'The "nonlocal" statement causes the listed identifiers to refer to previously bound variables'


@pytest.fixture
def database_url(docs_database_url: str) -> str:
    """The runtime's database, with the Python reference already indexed (tests/conftest.py)."""
    return docs_database_url


@pytest.fixture
async def pool(docs_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(docs_database_url, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def test_see_also_url_names_the_web_page_of_python_docs_corpus_urls() -> None:
    assert tools.see_also_url is see_also_url  # the public, lazily exported name
    assert see_also_url(NONLOCAL_TOPIC) == f"{DOCS}reference/simple_stmts.html#nonlocal"
    assert see_also_url(OS_MODULE + "/") == f"{DOCS}library/os.html"
    assert see_also_url("corpus://python-docs/modules/os.path") == f"{DOCS}library/os.path.html"
    assert see_also_url("corpus://python-docs/modules/xml.etree.ElementTree") == (
        f"{DOCS}library/xml.etree.elementtree.html"
    )


@pytest.mark.parametrize(
    ("entry", "page"),
    [
        ("os#makedirs", "library/os.html#os.makedirs"),
        ("functools#lru_cache", "library/functools.html#functools.lru_cache"),
        ("collections#OrderedDict.copy", "library/collections.html#collections.OrderedDict.copy"),
        ("os.path#join", "library/os.path.html#os.path.join"),
        ("xml.etree.ElementTree#parse", "library/xml.etree.elementtree.html#xml.etree.ElementTree.parse"),
        ("importlib#util.find_spec", "library/importlib.html#importlib.util.find_spec"),
        ("math#isclose", "library/math.html#math.isclose"),
        ("sys#exit", "library/sys.html#sys.exit"),
        ("asyncio#gather", "library/asyncio-task.html#asyncio.gather"),
        ("asyncio#run", "library/asyncio-runner.html#asyncio.run"),
        ("asyncio#Queue.get", "library/asyncio-queue.html#asyncio.Queue.get"),
        ("asyncio#format_helpers", "library/asyncio.html"),  # not on one of asyncio's pages: the index
        ("cProfile#run", "library/profile.html#module-cProfile"),  # documented on another module's page
        ("builtins#zip", "library/functions.html#zip"),
        ("builtins#super", "library/functions.html#super"),
        ("builtins#int", "library/functions.html#int"),
        ("builtins#str", "library/stdtypes.html#str"),  # functions.html only describes it (:noindex:)
        ("builtins#str.join", "library/stdtypes.html#str.join"),
        ("builtins#list.sort", "library/stdtypes.html#list.sort"),
        ("builtins#dict.get", "library/stdtypes.html#dict.get"),
        ("builtins#int.bit_length", "library/stdtypes.html#int.bit_length"),
        ("builtins#set.union", "library/stdtypes.html#frozenset.union"),  # shared methods are frozenset's
        ("builtins#set.add", "library/stdtypes.html#set.add"),
        ("builtins#property.getter", "library/functions.html#property"),
        ("builtins#ValueError", "library/exceptions.html#ValueError"),
        ("builtins#BaseException.with_traceback", "library/exceptions.html#BaseException.with_traceback"),
    ],
)
def test_see_also_url_of_a_documented_name_is_its_sphinx_anchor(entry: str, page: str) -> None:
    assert see_also_url(f"corpus://python-docs/modules/{entry}") == f"{DOCS}{page}"


@pytest.mark.parametrize(
    "url",
    [
        f"{DOCS}library/os.html",  # already a web page
        "https://example.org/os.html",
        USER_FILE,
        "corpus://python-docs/topics/no-such-topic",
        "corpus://python-docs/modules/no_such_module",
        "corpus://python-docs/modules/antigravity",  # never indexed
        "corpus://python-docs/modules/_thread",  # private modules are not indexed
        "corpus://python-docs/modules/posix",  # indexed under os
        "corpus://python-docs/modules/antigravity#fly",
        "corpus://python-docs/modules/builtins#no_such_builtin",
        "corpus://python-docs/modules/builtins#str.no_such_method",
        "corpus://python-docs/modules/os#../../etc/passwd",
        "corpus://python-docs/modules/os#",
        "corpus://python-docs/topics/nonlocal#global",  # topics have no entries
        "corpus://python-docs/modules/../../etc/passwd",
        "corpus://python-docs/other/os",
        "",
    ],
)
def test_see_also_url_is_none_for_anything_else(url: str) -> None:
    assert see_also_url(url) is None


async def _fetch(
    url: str, view: LocalPages, *, max_chars: int = 100_000
) -> tuple[FetchUrlResult | ToolFailure, FetchedPage | None]:
    return await fetch_url(
        url,
        limits=FetchLimits(),
        allow_hosts=frozenset(),
        max_chars=max_chars,
        cache=None,
        cache_ttl=timedelta(0),
        corpus=view,
    )


async def test_every_python_docs_document_fetches_through_fetch_url(pool: asyncpg.Pool) -> None:
    store = CorpusStore(pool)
    rows = await pool.fetch("SELECT url, body FROM corpus_documents WHERE collection = $1", PYTHON_DOCS_COLLECTION)
    assert len(rows) > 5_000
    online = CorpusUrlsOnly(store)
    for index, row in enumerate(rows):
        url = row["url"]
        assert url.startswith(("corpus://python-docs/topics/", "corpus://python-docs/modules/")), url
        assert see_also_url(url) is not None, url
        # Offline runs read every document; online runs (corpus:// URLs only) the same code path, sampled.
        for view in (store, online) if index % 25 == 0 else (store,):
            result, page = await _fetch(url, view)
            assert isinstance(result, FetchUrlResult) and result.url == url, (url, result)
            assert page is not None and page.text == row["body"]


@pytest.mark.parametrize(
    ("entry", "phrase"),
    [
        ("builtins#zip", "This continues until the shortest argument is exhausted."),
        ("builtins#str.join", "Example: '.'.join(['ab', 'pq', 'rs']) -> 'ab.pq.rs'"),
        ("math#isclose", "NaN is not close to anything, even itself."),
        ("sys#exit", "Exit the interpreter by raising SystemExit(status)."),
        ("asyncio#gather", "If *return_exceptions* is True, exceptions in the tasks are treated the same as"),
        ("functools#lru_cache", "Arguments to the cached function must be hashable."),
        ("collections#defaultdict", "A defaultdict compares equal to a dict with the same items."),
    ],
)
async def test_a_documented_name_fetches_whole_and_first(pool: asyncpg.Pool, entry: str, phrase: str) -> None:
    """An entry is short: its whole docstring is in what the model reads, at the default `max_chars` too."""
    url = f"corpus://python-docs/modules/{entry}"
    for view in (CorpusStore(pool), CorpusUrlsOnly(CorpusStore(pool))):
        result, page = await _fetch(url, view, max_chars=12_000)  # fetch_max_chars' default
        assert isinstance(result, FetchUrlResult) and not result.truncated, (url, result)
        assert result.url == url and page is not None and page.url == url
        assert normalize_text(phrase) in normalize_text(result.text)
    assert see_also_url(url) is not None


async def test_a_format_1_database_reindexes_under_corpus_urls(pool: asyncpg.Pool) -> None:
    """Format 1 stored the documents under docs.python.org URLs: they are replaced, not kept beside."""
    everything = await pool.fetchval(
        "SELECT count(*) FROM corpus_documents WHERE collection = $1", PYTHON_DOCS_COLLECTION
    )
    await pool.execute("DELETE FROM corpus_documents WHERE url LIKE '%#%'")  # format 1 had no entry documents
    rows = await pool.fetch("SELECT url FROM corpus_documents WHERE collection = $1", PYTHON_DOCS_COLLECTION)
    for row in rows:
        await pool.execute("UPDATE corpus_documents SET url = $2 WHERE url = $1", row["url"], see_also_url(row["url"]))
    await pool.execute(
        "UPDATE corpus_collections SET version = $2 WHERE name = $1",
        PYTHON_DOCS_COLLECTION,
        python_docs_version().replace("format-3", "format-1"),
    )
    report = await ensure_python_docs(CorpusStore(pool))
    assert report is not None and report.inserted == report.documents == everything
    urls = [r["url"] for r in await pool.fetch("SELECT url FROM corpus_documents")]
    assert len(urls) == everything and all(u.startswith("corpus://python-docs/") for u in urls)


async def test_a_format_2_database_gains_the_entry_documents(pool: asyncpg.Pool) -> None:
    """Format 2 had one document per module: the overviews are rewritten in place and the entries added."""
    everything = await pool.fetchval(
        "SELECT count(*) FROM corpus_documents WHERE collection = $1", PYTHON_DOCS_COLLECTION
    )
    await pool.execute("DELETE FROM corpus_documents WHERE url LIKE '%#%'")
    await pool.execute(
        "UPDATE corpus_documents SET body = 'format 2', content_hash = 'format 2'"
        " WHERE url LIKE 'corpus://python-docs/modules/%'"
    )
    await pool.execute(
        "UPDATE corpus_collections SET version = $2 WHERE name = $1",
        PYTHON_DOCS_COLLECTION,
        python_docs_version().replace("format-3", "format-2"),
    )
    report = await ensure_python_docs(CorpusStore(pool))
    assert report is not None and report.documents == everything and report.updated > 200
    assert await CorpusStore(pool).get_document("corpus://python-docs/modules/functools#lru_cache") is not None


def _cite_makedirs(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Plan, fetch a module, a topic and a user file, then cite all three with garbage in `see_also`."""
    turn = sum(isinstance(m, ModelRequest) for m in messages)
    if turn == 1:
        return ModelResponse(parts=[ToolCallPart("record_plan", {"sub_questions": ["What does os.makedirs do?"]})])
    if turn == 2:
        return ModelResponse(
            parts=[ToolCallPart("fetch_url", {"url": u}) for u in (MAKEDIRS_ENTRY, NONLOCAL_TOPIC, USER_FILE)]
        )
    citations = [
        {"url": MAKEDIRS_ENTRY, "quote": MAKEDIRS, "see_also": "https://evil.example/"},
        {"url": NONLOCAL_TOPIC, "quote": NONLOCAL},
        {"url": USER_FILE, "quote": "makedirs creates parents", "see_also": f"{DOCS}library/os.html"},
    ]
    return ModelResponse(
        parts=[ToolCallPart(info.output_tools[0].name, {"answer": "A super-mkdir.", "citations": citations})]
    )


async def test_a_docstring_citation_carries_its_corpus_url_and_a_docs_python_org_see_also(runtime: Runtime) -> None:
    await CorpusStore(runtime.pool).upsert_document(
        url=USER_FILE, collection="notes", source="mkdir.md", title="mkdir", body="makedirs creates parents too."
    )
    result = await runtime.research("What does os.makedirs do?", model=FunctionModel(_cite_makedirs))
    assert result.status == "completed" and result.report is not None
    cited = [(c.url, c.see_also) for c in result.report.citations]
    assert cited == [
        (MAKEDIRS_ENTRY, f"{DOCS}library/os.html#os.makedirs"),
        (NONLOCAL_TOPIC, f"{DOCS}reference/simple_stmts.html#nonlocal"),
        (USER_FILE, None),  # a user's file has no web page, whatever the model wrote
    ]
    stored = (await runtime.get_run(result.run_id)).run.report
    assert stored is not None and stored["citations"][0]["see_also"] == f"{DOCS}library/os.html#os.makedirs"
