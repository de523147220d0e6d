"""Options shared by several commands, declared once so their names and help read the same everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help="Model name; default: RESEARCH_AGENT_MODEL.")]

MaxTurns = Annotated[int | None, typer.Option(min=1, help="Model requests per run (default 10).")]
MaxTokens = Annotated[int | None, typer.Option(min=1, help="Input + output tokens per run (default 200000).")]
MaxWall = Annotated[float | None, typer.Option(min=0.1, help="Seconds of run time (default 120).")]
MaxCost = Annotated[str | None, typer.Option(help="Dollars per run (default 0.50); `none` for no cost cap.")]
