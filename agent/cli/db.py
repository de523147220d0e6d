"""`db status|stop|path|check`: the embedded PostgreSQL server, where it lives and whether it runs; the role
the app signs in as.

Without DATABASE_URL the first command starts an embedded server under the data directory and leaves it
running, so that every later command connects in well under a second to warm caches instead of paying a
start each time. `status`, `stop` and `path` show it and stop it; they never start it, and never touch a
server given by DATABASE_URL (`db stop` refuses: exit 2). They read the settings and the server's
`postmaster.pid` only: no pool, no pydantic-ai, no logfire.

`check` connects as every command does (starting and migrating the database if needed, on the stores-only
path) and reports the role the app signs in as: a superuser, or the owner of the tables, could rewrite the
append-only audit trail, which it warns about on stderr, naming the SQL file that creates the app role
(docs/decisions/0022-app-role.md). A warning is not a failure: exit 0.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from agent.cli.console import err, out, print_json
from agent.cli.exit_codes import ExitCode
from agent.cli.options import JsonOption
from agent.cli.running import exit_on_errors

if TYPE_CHECKING:
    from agent.cli.running import Stores
    from agent.durable.database import EmbeddedServer, RoleCheck
    from agent.settings import Settings

app = typer.Typer(help="The embedded PostgreSQL: where it lives, whether it runs; stop it.", no_args_is_help=True)


def _settings() -> Settings:
    from agent.settings import Settings

    with exit_on_errors():
        return Settings.load()


def _external(settings: Settings) -> str | None:
    """`NAME=url` (password redacted) when the database is a server of the user's, None when embedded."""
    from agent.durable.database import redact_url

    if settings.database_url is None:
        return None
    name = "RESEARCH_AGENT_DATABASE_URL" if os.environ.get("RESEARCH_AGENT_DATABASE_URL") else "DATABASE_URL"
    return f"{name}={redact_url(settings.database_url)}"


def status_json(settings: Settings, server: EmbeddedServer | None) -> dict[str, Any]:
    """`db status --json`: the same keys for both kinds of server (null where they do not apply)."""
    from agent.durable.database import redact_url

    if server is None:
        assert settings.database_url is not None
        return {
            "server": "external",
            "url": redact_url(settings.database_url),
            "running": None,
            "pid": None,
            "data_dir": None,
            "pgdata": None,
            "initialized": None,
            "socket_dir": None,
            "log_file": None,
            "started_at": None,
        }
    return {
        "server": "embedded",
        "url": server.url,
        "running": server.running,
        "pid": server.pid,
        "data_dir": str(settings.data_dir),
        "pgdata": str(server.pgdata),
        "initialized": server.initialized,
        "socket_dir": None if server.socket_dir is None else str(server.socket_dir),
        "log_file": str(server.log_file),
        "started_at": None if server.started_at is None else server.started_at.astimezone().isoformat(),
    }


@app.command("status")
def db_status(as_json: JsonOption = False) -> None:
    """Where the database lives and whether its server runs (with its pid). Starts nothing."""
    from agent.durable.database import embedded_server

    settings = _settings()
    external = _external(settings)
    server = None if external else embedded_server(settings.data_dir / "pgdata")
    if as_json:
        print_json(status_json(settings, server))
        return
    if server is None:
        out.print(
            f"external PostgreSQL ({escape(str(external))}): research-agent neither starts nor stops it", soft_wrap=True
        )
        return
    if server.running:
        since = f", since {server.started_at:%Y-%m-%d %H:%M:%S}" if server.started_at else ""
        out.print(f"embedded PostgreSQL: [bold green]running[/bold green] (pid {server.pid}{since})")
    elif server.initialized:
        out.print("embedded PostgreSQL: [bold]stopped[/bold] (the next command starts it again)")
    else:
        out.print("embedded PostgreSQL: [bold]not created yet[/bold] (the first command creates it)")
    from agent.durable.database import app_role_url

    rows = [("data dir", str(server.pgdata)), ("socket", server.socket_dir), ("url", server.url)]
    if server.url is not None:  # the owner's URL above; the app signs in as its own role on the same socket
        rows.append(("app url", app_role_url(server.url)))
    rows.append(("log", str(server.log_file)))
    for label, value in rows:
        if value is not None:
            out.print(f"  {label:<9}{escape(str(value))}", soft_wrap=True, highlight=False)
    if server.running:
        out.print(
            "It keeps running between commands, so each connects at once; `research-agent db stop` stops it.",
            soft_wrap=True,
        )


@app.command("stop")
def db_stop(as_json: JsonOption = False) -> None:
    """Stop the embedded server (open sessions end, committed work is kept; the next command starts it again)."""
    from agent.durable.database import stop_embedded_server

    settings = _settings()
    external = _external(settings)
    if external:
        err.print(
            f"[red]error:[/red] the database is an external server ({escape(external)}): research-agent did not "
            "start it and does not stop it; stop it where it is managed, or unset that variable to use the "
            "embedded server",
            soft_wrap=True,
        )
        raise typer.Exit(ExitCode.USAGE)
    pgdata = settings.data_dir / "pgdata"
    with exit_on_errors():
        server = stop_embedded_server(pgdata)
    if as_json:
        print_json({"stopped": server.running, "pid": server.pid, "pgdata": str(pgdata), "running": False})
    elif server.running:
        out.print(
            f"stopped the embedded PostgreSQL (pid {server.pid}) under {escape(str(pgdata))}; "
            "the next command starts it again",
            soft_wrap=True,
            highlight=False,
        )
    else:
        out.print(f"the embedded PostgreSQL under {escape(str(pgdata))} is not running", soft_wrap=True)


@app.command("path")
def db_path() -> None:
    """Print the embedded server's data directory (`$RESEARCH_AGENT_DATA_DIR/pgdata`)."""
    settings = _settings()
    external = _external(settings)
    if external:
        err.print(
            f"[red]error:[/red] the database is an external server ({escape(external)}): it has no directory here",
            soft_wrap=True,
        )
        raise typer.Exit(ExitCode.USAGE)
    out.print(str(settings.data_dir / "pgdata"), soft_wrap=True, highlight=False, markup=False)


def check_json(settings: Settings, check: RoleCheck) -> dict[str, Any]:
    """`db check --json`."""
    from agent.durable.database import redact_url

    return {
        "server": "embedded" if settings.database_url is None else "external",
        "url": None if settings.database_url is None else redact_url(settings.database_url),
        "role": check.role,
        "superuser": check.superuser,
        "owns": check.owns,
        "audit_privileges": check.audit_privileges,
        "migrations": check.migrations,
        "pending": check.pending,
        "warnings": check.warnings,
    }


@app.command("check")
def db_check(as_json: JsonOption = False) -> None:
    """Connect as the app does (starting and migrating the database if needed) and check the role it signs in as:
    warns, without failing, when that role could rewrite the audit trail (a superuser, the tables' owner)."""
    from agent.cli.running import with_stores
    from agent.durable.database import check_role

    async def body(stores: Stores) -> RoleCheck:
        return await check_role(stores.pool)

    check = with_stores(body)
    settings = _settings()
    for warning in check.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True, highlight=False)
    if as_json:
        print_json(check_json(settings, check))
        return
    where = _external(settings) or "the embedded PostgreSQL"
    out.print(f"database: {escape(where)}", soft_wrap=True, highlight=False)
    if check.superuser:
        what = "a superuser"
    else:
        what = "not a superuser, " + (f"owns {', '.join(check.owns)}" if check.owns else "owns no table")
    out.print(f"role:     {escape(check.role)} ({what})", soft_wrap=True, highlight=False)
    pending = f"; pending: {', '.join(check.pending)}" if check.pending else ", none pending"
    out.print(f"schema:   {check.migrations} migrations applied{pending}", soft_wrap=True, highlight=False)
    if not check.warnings:
        out.print(
            "audit:    tool_audit is append-only for this role (no UPDATE, DELETE, TRUNCATE; no trigger to drop)",
            soft_wrap=True,
            highlight=False,
        )
