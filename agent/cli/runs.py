"""`runs list|show|export|resume`: browsing runs reads the stores only; export and resume use the runtime."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from agent.cli.console import out, print_json
from agent.cli.options import JsonOption
from agent.cli.running import Stores, with_runtime, with_stores

if TYPE_CHECKING:
    from agent.api import Runtime
    from agent.durable.run_view import RunView
    from agent.durable.store import RunRecord

app = typer.Typer(help="Browse and resume runs.", no_args_is_help=True)


@app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOption = False,
) -> None:
    """Recent runs: id, status, question, turns, tokens, cost, duration."""
    from agent.cli.render import run_json, runs_table

    async def body(stores: Stores) -> list[RunRecord]:
        return await stores.runs.list_runs(limit=limit)

    runs = with_stores(body)
    if as_json:
        print_json([run_json(r) for r in runs])
    else:
        out.print(runs_table(runs))


@app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix (6+ characters).")],
    as_json: JsonOption = False,
) -> None:
    """One run: plan, every step, the report, the stop reason."""
    from agent.cli.render import run_detail, run_json
    from agent.durable.run_view import read_run

    async def body(stores: Stores) -> RunView:
        return await read_run(stores.runs, stores.approvals, run_id)

    view = with_stores(body)
    if as_json:
        print_json(run_json(view.run, view.steps, view.audit, view.approvals))
    else:
        out.print(run_detail(view))


@app.command("export")
def runs_export(run_id: Annotated[str, typer.Argument(help="Run id or unique prefix.")]) -> None:
    """Write a run's messages and tool calls as a JSON trace (for replay tests)."""
    from agent.replay import export_run

    async def body(runtime: Runtime) -> str:
        return (await export_run(runtime, run_id)).model_dump_json(indent=2)

    sys.stdout.write(with_runtime(body) + "\n")


@app.command("resume")
def runs_resume(run_id: Annotated[str, typer.Argument(help="Run id or unique prefix.")]) -> None:
    """Queue a stopped run again; a worker continues it from its last committed turn."""

    async def body(runtime: Runtime) -> str:
        return (await runtime.resume(run_id)).id

    out.print(f"queued {with_runtime(body)}")
