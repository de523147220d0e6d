"""The `research-agent` command line: typer commands (`commands`) and rich rendering (`render`)."""

from agent.cli.commands import app, main

__all__ = ["app", "main"]
