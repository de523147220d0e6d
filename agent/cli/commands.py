"""The `research-agent` app: every command registered, from the module of its group.

Importing this (what `--help` does) imports typer, rich and the command modules, whose tops import
nothing heavier: each command imports what it uses when it runs (the agent and pydantic-ai for `ask`,
`submit`, `worker`; only the stores for the read-only commands). tests/test_cli_startup.py holds that.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from agent.cli import alerts, approvals, console, controls, corpus, db, research, runs, stats

# add_completion: `--install-completion` / `--show-completion` for bash, zsh, fish and PowerShell (typer's).
app = typer.Typer(help="A durable, budgeted research agent.", no_args_is_help=True, add_completion=True)
app.command()(research.ask)
app.command()(research.submit)
app.command()(research.worker)
app.command()(controls.spend)
app.command()(stats.stats)
app.add_typer(runs.app, name="runs")
app.add_typer(approvals.app, name="approvals")
app.add_typer(corpus.app, name="corpus")
app.add_typer(controls.app, name="kill-switch")
app.add_typer(db.app, name="db")
app.add_typer(alerts.app, name="alerts")


def _print_version(asked: bool) -> None:
    if not asked:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        typer.echo(f"research-agent {version('research-agent')}")
    except PackageNotFoundError:  # run from a source tree that was never installed
        typer.echo("research-agent (version unknown: the package is not installed)")
    raise typer.Exit()


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of errors otherwise reported in one line.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """A durable, budgeted research agent."""
    console.set_debug(debug)


def main() -> None:
    """The console entry point (`research-agent`, `python -m agent`)."""
    # logfire registers a pydantic plugin that pydantic loads, with the whole of logfire (about a second),
    # the first time any model class is defined; it records nothing unless asked to, and nothing here asks
    # (agent.telemetry never calls `logfire.instrument_pydantic`). Skipping it keeps the read-only commands
    # free of logfire; LOGFIRE_PYDANTIC_PLUGIN_RECORD (or a PYDANTIC_DISABLE_PLUGINS of your own) wins.
    if "LOGFIRE_PYDANTIC_PLUGIN_RECORD" not in os.environ:
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "logfire-plugin")
    app()
