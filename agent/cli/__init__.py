"""The `research-agent` command line: the app (`commands`), one module per command group, rich rendering (`render`).

`main` is the console entry point; `app` is the typer app (tests drive it with typer's `CliRunner`).
"""

from agent.cli.commands import app, main

__all__ = ["app", "main"]
