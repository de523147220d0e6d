"""Options shared by several commands, declared once so their names and help read the same everywhere."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import typer
from rich.markup import escape

from agent.cli.console import err
from agent.cli.exit_codes import ExitCode

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help="Model name; default: RESEARCH_AGENT_MODEL.")]

MaxTurns = Annotated[int | None, typer.Option(min=1, help="Model requests per run (default 10).")]
MaxTokens = Annotated[int | None, typer.Option(min=1, help="Input + output tokens per run (default 200000).")]
MaxWall = Annotated[float | None, typer.Option(min=0.1, help="Seconds of run time (default 120).")]
MaxCost = Annotated[str | None, typer.Option(help="Dollars per run (default 0.50); `none` for no cost cap.")]


def cap_changes(
    *, max_turns: int | None, max_tokens: int | None, max_wall: float | None, max_cost: str | None
) -> dict[str, Any]:
    """The caps given on the command line, by `Budget` field name (`ask`, `submit`, `runs resume`)."""
    changes: dict[str, Any] = {}
    if max_turns is not None:
        changes["max_turns"] = max_turns
    if max_tokens is not None:
        changes["max_tokens"] = max_tokens
    if max_wall is not None:
        changes["max_wall_seconds"] = max_wall
    if max_cost is not None:
        try:
            changes["max_cost_usd"] = None if max_cost.lower() == "none" else Decimal(max_cost)
        except InvalidOperation:
            given = escape(repr(max_cost))
            err.print(f"[red]error:[/red] --max-cost must be a dollar amount like 0.05 or `none`, not {given}")
            raise typer.Exit(ExitCode.USAGE) from None
    return changes
