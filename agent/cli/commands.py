"""The `research-agent` app: every command registered, from the module of its group.

Importing this (what `--help` does) imports typer, rich and the command modules, whose tops import
nothing heavier: each command imports what it uses when it runs (the agent and pydantic-ai for `ask`,
`submit`, `worker`; only the stores for the read-only commands). tests/test_cli_startup.py holds that.
"""

from __future__ import annotations

import os

import typer

from agent.cli import approvals, controls, corpus, research, runs

app = typer.Typer(help="A durable, budgeted research agent.", no_args_is_help=True, add_completion=False)
app.command()(research.ask)
app.command()(research.submit)
app.command()(research.worker)
app.command()(controls.spend)
app.add_typer(runs.app, name="runs")
app.add_typer(approvals.app, name="approvals")
app.add_typer(corpus.app, name="corpus")
app.add_typer(controls.app, name="kill-switch")


def main() -> None:
    """The console entry point (`research-agent`, `python -m agent`)."""
    # logfire registers a pydantic plugin that pydantic loads, with the whole of logfire (about a second),
    # the first time any model class is defined; it records nothing unless asked to, and nothing here asks
    # (agent.telemetry never calls `logfire.instrument_pydantic`). Skipping it keeps the read-only commands
    # free of logfire; LOGFIRE_PYDANTIC_PLUGIN_RECORD (or a PYDANTIC_DISABLE_PLUGINS of your own) wins.
    if "LOGFIRE_PYDANTIC_PLUGIN_RECORD" not in os.environ:
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "logfire-plugin")
    app()
