"""`runs list|show|export|resume|purge`: browsing and purging runs use the stores only; export and resume use
the runtime."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

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
    from agent.durable.store import PurgeCounts, RunRecord

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
        print_json(run_json(view.run, view.steps, view.audit, view.approvals, view.events))
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


@app.command("purge")
def runs_purge(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Runs that ended longer ago than this: a number and a unit, s, m, h, d or w (30d, 12h, 2w).",
            show_default=False,
        ),
    ],
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            "-s",
            metavar="STATUS[,STATUS...]",
            help="Only runs with these statuses (comma-separated or repeated); default every finished one: "
            "completed, failed, budget_exceeded, killed, cancelled.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete old finished runs with their messages, steps, sources, tool effects, approvals and events. Their
    tool audit rows stay: they are the record. Queued, running and awaiting_approval runs are never deleted."""
    from agent.durable.store.retention import count_purgeable, parse_age, purge_cutoff, purge_runs

    try:
        age = parse_age(older_than)
    except ValueError as exc:
        err.print(f"[red]error:[/red] --older-than: {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(ExitCode.USAGE) from None
    statuses = _purge_statuses(status or [])

    async def preview(stores: Stores) -> tuple[datetime, PurgeCounts]:
        cutoff = await purge_cutoff(stores.pool, age)
        return cutoff, await count_purgeable(stores.pool, finished_before=cutoff, statuses=statuses)

    cutoff, found = with_stores(preview)
    which = f"({' or '.join(statuses)}) that ended before {cutoff.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    if dry_run or not found.runs:
        if as_json:
            print_json(_purge_json(found, cutoff=cutoff, statuses=statuses, dry_run=True))
        elif not found.runs:
            out.print(f"nothing to purge: no runs {which}", soft_wrap=True)
        else:
            out.print(f"would delete {_purge_summary(found, which)} (dry run: nothing deleted)", soft_wrap=True)
        return
    if not yes:
        if not sys.stdin.isatty():
            err.print(
                f"[red]error:[/red] {found.runs} runs would be deleted: pass --yes to delete them without a"
                " prompt, or --dry-run to count them",
                soft_wrap=True,
            )
            raise typer.Exit(ExitCode.USAGE)
        err.print(f"this deletes {_purge_summary(found, which)}", soft_wrap=True)
        if not typer.confirm("delete them?", default=False, err=True):
            err.print("nothing deleted")
            raise typer.Exit(ExitCode.FAILED)

    async def purge(stores: Stores) -> PurgeCounts:
        return await purge_runs(stores.pool, finished_before=cutoff, statuses=statuses)

    deleted = with_stores(purge)
    if as_json:
        print_json(_purge_json(deleted, cutoff=cutoff, statuses=statuses, dry_run=False))
    else:
        out.print(f"deleted {_purge_summary(deleted, which)}", soft_wrap=True)


def _purge_statuses(given: list[str]) -> list[RunStatus]:
    """`runs purge --status`: comma-separated or repeated, known, and finished (default: every finished one)."""
    from agent.durable.store.retention import FINISHED_STATUSES

    chosen = _statuses([name.strip() for value in given for name in value.split(",") if name.strip()])
    if chosen is None:
        return list(FINISHED_STATUSES)
    unfinished = [s for s in chosen if s not in FINISHED_STATUSES]
    if unfinished:
        err.print(
            f"[red]error:[/red] --status {', '.join(unfinished)}: only finished runs can be purged"
            f" ({', '.join(FINISHED_STATUSES)})",
            soft_wrap=True,
        )
        raise typer.Exit(ExitCode.USAGE)
    return chosen


def _purge_summary(counts: PurgeCounts, which: str) -> str:
    """`3 runs (completed or failed) that ended before ..., with 24 messages, ...; their 9 audit rows are kept`."""
    rows = ", ".join(
        _count(n, word)
        for n, word in (
            (counts.run_messages, "message"),
            (counts.run_steps, "step"),
            (counts.run_sources, "source"),
            (counts.tool_effects, "tool effect"),
            (counts.approvals, "approval"),
            (counts.run_events, "event"),
            (counts.daily_spend_holds, "spend hold"),
        )
    )
    kept = f"their {_count(counts.audit_kept, 'audit row')} {'is' if counts.audit_kept == 1 else 'are'} kept"
    return f"{_count(counts.runs, 'run')} {which}, with {rows}; {kept}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _purge_json(counts: PurgeCounts, *, cutoff: datetime, statuses: list[RunStatus], dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "finished_before": cutoff.isoformat(),
        "statuses": statuses,
        "deleted" if not dry_run else "would_delete": counts.deleted(),
        "audit_kept": counts.audit_kept,
    }
