"""`runs list|show|export|resume`: browsing runs reads the stores only; export and resume use the runtime."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from agent.cli.console import err, out, print_json
from agent.cli.exit_codes import ExitCode
from agent.cli.options import JsonOption, cap_changes
from agent.cli.running import Stores, with_runtime, with_stores

if TYPE_CHECKING:
    from agent.api import Runtime
    from agent.config import RunStatus
    from agent.durable.run_view import RunView
    from agent.durable.store import RunRecord

app = typer.Typer(help="Browse and resume runs.", no_args_is_help=True)

StatusOption = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        "-s",
        metavar="STATUS",
        help="Only runs with this status (repeatable): queued, running, completed, failed, budget_exceeded, "
        "killed, cancelled, awaiting_approval.",
        show_default=False,
    ),
]
# `runs resume`: unlike `ask`'s options, an absent cap keeps the run's own.
NewMaxTurns = Annotated[int | None, typer.Option("--max-turns", min=1, help="New cap on model requests (all turns).")]
NewMaxTokens = Annotated[int | None, typer.Option("--max-tokens", min=1, help="New cap on input + output tokens.")]
NewMaxWall = Annotated[float | None, typer.Option("--max-wall", min=0.1, help="New cap on seconds of run time.")]
NewMaxCost = Annotated[str | None, typer.Option("--max-cost", help="New cap in dollars; `none` for no cost cap.")]


@app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many runs, newest first.")] = 20,
    status: StatusOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recent runs: id, status, question, turns, tokens, cost, duration, when created."""
    from agent.cli.render import RunsTable, run_json

    statuses = _statuses(status or [])

    async def body(stores: Stores) -> list[RunRecord]:
        return await stores.runs.list_runs(limit=limit, statuses=statuses)

    runs = with_stores(body)
    if as_json:
        print_json([run_json(r) for r in runs])
    elif not runs:
        out.print(f"no runs with status {' or '.join(statuses)}" if statuses else "no runs yet")
    else:
        title = "Recent runs" + (f" ({', '.join(statuses)})" if statuses else "")
        out.print(RunsTable(runs, title=title))


def _statuses(given: list[str]) -> list[RunStatus] | None:
    """`--status` values checked against `RunStatus`: a typo is a usage error, never an empty list."""
    from typing import get_args

    from agent.config import RunStatus

    known: tuple[RunStatus, ...] = get_args(RunStatus)
    unknown = [s for s in given if s not in known]
    if unknown:
        listed = escape(", ".join(map(repr, unknown)))
        err.print(f"[red]error:[/red] unknown --status {listed}; expected one of: {', '.join(known)}", soft_wrap=True)
        raise typer.Exit(ExitCode.USAGE)
    return [s for s in known if s in given] or None


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
def runs_resume(
    run_id: Annotated[str, typer.Argument(help="Run id or unique prefix.")],
    max_turns: NewMaxTurns = None,
    max_tokens: NewMaxTokens = None,
    max_wall: NewMaxWall = None,
    max_cost: NewMaxCost = None,
) -> None:
    """Queue a stopped run (failed, budget_exceeded, killed, cancelled) again; a worker continues it from its
    last committed turn. The --max-* options replace those caps of the run's budget, e.g. to go on past the
    cap that stopped it (what it used so far still counts); the change is recorded on the run as a
    `budget_changed` step. Other caps stay as they were."""
    changes = cap_changes(max_turns=max_turns, max_tokens=max_tokens, max_wall=max_wall, max_cost=max_cost)

    async def body(runtime: Runtime) -> tuple[RunRecord, RunRecord]:
        from agent.errors import ConfigurationError
        from budgets import Budget

        before = await runtime.store.get_run(run_id)
        budget = None
        if changes:
            try:
                budget = Budget.model_validate({**before.config.budget.model_dump(), **changes})
            except ValueError as exc:
                raise ConfigurationError(f"invalid budget: {exc}") from exc
        return before, await runtime.resume(before.id, budget=budget)

    before, queued = with_runtime(body)
    out.print(f"queued {queued.id}")
    if changes:
        from agent.durable.store.run_store import budget_change, describe_budget_change

        old, new = budget_change(
            before.config.budget.model_dump(mode="json"), queued.config.budget.model_dump(mode="json")
        )
        out.print(f"caps: {describe_budget_change(old, new)}", soft_wrap=True)
    elif before.status == "budget_exceeded" and before.stop_reason in _CAP_OPTIONS:
        err.print(
            f"[yellow]note:[/yellow] it stopped at its {before.stop_reason} cap, which is unchanged: pass "
            f"{_CAP_OPTIONS[before.stop_reason]} to raise it, or it stops there again",
            soft_wrap=True,
        )


_CAP_OPTIONS = {"turns": "--max-turns", "tokens": "--max-tokens", "wall_time": "--max-wall", "cost": "--max-cost"}
"""The stop reasons `runs resume` can lift, with the option that does."""
