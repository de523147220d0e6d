"""The `research-agent` command line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from agent.api import Runtime, open_runtime
from agent.cli.render import (
    LiveProgress,
    approval_json,
    approvals_table,
    report_panel,
    run_detail,
    run_json,
    runs_table,
)
from agent.config import RunStatus
from agent.durable.approvals import Approval
from agent.durable.controls import KillSwitch, KillSwitchState, SwitchChange
from agent.errors import ConfigurationError, InvalidQuestionError, ResearchAgentError, RunRefusedError
from agent.settings import Settings, is_offline_model
from budgets import Budget, BudgetExceeded, DailySpend, SpendGate, SpendToday
from tools import (
    CollectionStats,
    CorpusHit,
    CorpusStore,
    FetchError,
    IngestReport,
    SearchBackendError,
    ensure_python_docs,
    ingest_path,
    ingest_python_docs,
)


class ExitCode(IntEnum):
    """Documented in the README: scripts can branch on how a run ended."""

    COMPLETED = 0
    FAILED = 1
    USAGE = 2
    BUDGET_EXCEEDED = 3
    KILLED = 4
    REFUSED = 5
    AWAITING_APPROVAL = 6


STATUS_EXIT: dict[RunStatus, ExitCode] = {
    "completed": ExitCode.COMPLETED,
    "failed": ExitCode.FAILED,
    "budget_exceeded": ExitCode.BUDGET_EXCEEDED,
    "killed": ExitCode.KILLED,
    "awaiting_approval": ExitCode.AWAITING_APPROVAL,
    "queued": ExitCode.COMPLETED,
    "running": ExitCode.COMPLETED,
}

app = typer.Typer(help="A durable, budgeted research agent.", no_args_is_help=True, add_completion=False)
runs_app = typer.Typer(help="Browse and resume runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
approvals_app = typer.Typer(help="Tool calls waiting for a human decision.", no_args_is_help=True)
app.add_typer(approvals_app, name="approvals")
corpus_app = typer.Typer(help="The local document corpus searched offline.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")

out = Console()
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help="Model name; default: RESEARCH_AGENT_MODEL.")]


MaxTurns = Annotated[int | None, typer.Option(min=1, help="Model requests per run (default 10).")]
MaxTokens = Annotated[int | None, typer.Option(min=1, help="Input + output tokens per run (default 200000).")]
MaxWall = Annotated[float | None, typer.Option(min=0.1, help="Seconds of run time (default 120).")]
MaxCost = Annotated[str | None, typer.Option(help="Dollars per run (default 0.50); `none` for no cost cap.")]


def _budget(*, max_turns: int | None, max_tokens: int | None, max_wall: float | None, max_cost: str | None) -> Budget:
    """The default budget with the caps given on the command line."""
    changes: dict[str, object] = {}
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
            err.print(f"[red]error:[/red] --max-cost must be a dollar amount like 0.05 or `none`, not {max_cost!r}")
            raise typer.Exit(ExitCode.USAGE) from None
    try:
        return Budget.model_validate({**Budget().model_dump(), **changes})
    except ValueError as exc:
        err.print(f"[red]error:[/red] invalid budget: {exc}")
        raise typer.Exit(ExitCode.USAGE) from exc


def _run(body: Callable[[Runtime], Awaitable[T]]) -> T:
    """Open the runtime, run `body`, and turn our errors into clear messages and exit codes."""

    async def main() -> T:
        async with open_runtime(Settings()) as runtime:
            return await body(runtime)

    try:
        return asyncio.run(main())
    except (InvalidQuestionError, RunRefusedError) as exc:
        err.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(ExitCode.REFUSED) from exc
    except (BudgetExceeded, SpendGate, FetchError, SearchBackendError):
        raise  # `tools`/`budgets` errors share the root but were never a usage error: a traceback, as before
    except (ConfigurationError, ResearchAgentError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(ExitCode.USAGE) from exc
    except ValueError as exc:  # settings validation (pydantic) and bad arguments
        err.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(ExitCode.USAGE) from exc


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="What to research.")],
    model: ModelOption = None,
    as_json: JsonOption = False,
    max_turns: MaxTurns = None,
    max_tokens: MaxTokens = None,
    max_wall: MaxWall = None,
    max_cost: MaxCost = None,
) -> None:
    """Research a question now and print a cited answer."""
    budget = _budget(max_turns=max_turns, max_tokens=max_tokens, max_wall=max_wall, max_cost=max_cost)

    async def body(runtime: Runtime) -> tuple[dict[str, Any], RunStatus]:
        if as_json:
            result = await runtime.research(question, model=model, budget=budget)
        else:
            progress = LiveProgress(err)
            with Live(progress, console=err, refresh_per_second=8, transient=True):
                result = await runtime.research(question, model=model, budget=budget, progress=progress)
        view = await runtime.get_run(result.run_id)
        return run_json(view.run, view.steps, view.audit, view.approvals), result.status

    data, status = _run(body)
    if as_json:
        _print_json(data)
    else:
        if data["report"]:
            label = "offline model (extractive, no LLM)" if is_offline_model(data["model"]) else data["model"]
            out.print(report_panel(data["report"], title=f"Answer · {label}"))
        elif status == "awaiting_approval":
            out.print("[yellow]Waiting for a human[/yellow]: the tool policy requires approval for:")
            for approval in data["approvals"]:
                if approval["status"] == "pending":
                    args = json.dumps(approval["args"], ensure_ascii=False)
                    out.print(f"  {approval['id']}  {approval['tool']} {escape(args)}  ({escape(approval['reason'])})")
            out.print(
                "Decide with `research-agent approvals approve ID` or `reject ID --reason ...`; "
                "a `research-agent worker` then finishes the run."
            )
        else:
            out.print(f"[yellow]No report[/yellow]: {data['status']} ({data['stop_reason']}) {data['error'] or ''}")
            if data["partial"]:
                out.print(data["partial"])
        first = (data.get("review") or {}).get("first")
        critic = f" · critic {first['score']:.2f}" if first else ""
        tokens = data["usage"]["input_tokens"] + data["usage"]["output_tokens"]
        out.print(
            f"[dim]run {data['run_id']} · {data['status']} · {data['usage']['requests']} turns · "
            f"{tokens} tokens · ${data['cost_usd']}{critic}[/dim]"
        )
    raise typer.Exit(STATUS_EXIT[status])


@app.command()
def submit(
    question: Annotated[str, typer.Argument(help="What to research.")],
    model: ModelOption = None,
    as_json: JsonOption = False,
    max_turns: MaxTurns = None,
    max_tokens: MaxTokens = None,
    max_wall: MaxWall = None,
    max_cost: MaxCost = None,
) -> None:
    """Queue a question for a worker and print the run id."""
    budget = _budget(max_turns=max_turns, max_tokens=max_tokens, max_wall=max_wall, max_cost=max_cost)

    async def body(runtime: Runtime) -> str:
        return (await runtime.submit(question, model=model, budget=budget)).id

    run_id = _run(body)
    if as_json:
        _print_json({"run_id": run_id, "status": "queued"})
    else:
        out.print(run_id)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Runs executed at once.")] = 4,
    max_runs: Annotated[int | None, typer.Option(min=1, help="Exit after claiming this many runs.")] = None,
    exit_when_idle: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
) -> None:
    """Process queued runs and resume abandoned ones until stopped (Ctrl-C)."""
    from agent.durable.worker import Worker

    async def body(runtime: Runtime) -> int:
        w = Worker(runtime, concurrency=concurrency, max_runs=max_runs, exit_when_idle=exit_when_idle)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, w.stop)
        err.print(f"worker {w.worker_id} started (concurrency {concurrency})")
        finished = await w.run()
        for run in finished:
            err.print(f"{run.id} {run.status} ({run.stop_reason})")
        return len(finished)

    _run(body)


@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOption = False,
) -> None:
    """Recent runs: id, status, question, turns, tokens, cost, duration."""

    async def body(runtime: Runtime) -> list[Any]:
        return await runtime.list_runs(limit=limit)

    runs = _run(body)
    if as_json:
        _print_json([run_json(r) for r in runs])
    else:
        out.print(runs_table(runs))


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix (6+ characters).")],
    as_json: JsonOption = False,
) -> None:
    """One run: plan, every step, the report, the stop reason."""

    async def body(runtime: Runtime) -> Any:
        return await runtime.get_run(run_id)

    view = _run(body)
    if as_json:
        _print_json(run_json(view.run, view.steps, view.audit, view.approvals))
    else:
        out.print(run_detail(view))


@runs_app.command("export")
def runs_export(run_id: Annotated[str, typer.Argument(help="Run id or unique prefix.")]) -> None:
    """Write a run's messages and tool calls as a JSON trace (for replay tests)."""
    from agent.replay import export_run

    async def body(runtime: Runtime) -> str:
        return (await export_run(runtime, run_id)).model_dump_json(indent=2)

    sys.stdout.write(_run(body) + "\n")


@runs_app.command("resume")
def runs_resume(run_id: Annotated[str, typer.Argument(help="Run id or unique prefix.")]) -> None:
    """Queue a stopped run again; a worker continues it from its last committed turn."""

    async def body(runtime: Runtime) -> str:
        return (await runtime.resume(run_id)).id

    out.print(f"queued {_run(body)}")


@approvals_app.command("list")
def approvals_list(as_json: JsonOption = False) -> None:
    """Pending requests, oldest first (overdue ones are expired, i.e. rejected, first)."""

    async def body(runtime: Runtime) -> list[Approval]:
        return await runtime.pending_approvals()

    pending = _run(body)
    if as_json:
        _print_json([approval_json(a) for a in pending])
    elif pending:
        out.print(approvals_table(pending, title=f"{len(pending)} tool call(s) waiting for approval"))
    else:
        out.print("no tool calls are waiting for approval")


def _decide(approval_id: str, *, approve: bool, note: str | None, as_json: bool) -> None:
    async def body(runtime: Runtime) -> Approval:
        return await runtime.decide_approval(approval_id, approve=approve, note=note)

    decided = _run(body)
    if as_json:
        _print_json(approval_json(decided))
    else:
        out.print(
            f"{decided.id} {decided.status}: {decided.tool} for run {decided.run_id}; "
            "a worker resumes the run once all its requests are decided"
        )


ApprovalId = Annotated[str, typer.Argument(help="Approval id, as `approvals list` shows it (ap_...).")]


@approvals_app.command("approve")
def approvals_approve(
    approval_id: ApprovalId,
    note: Annotated[str | None, typer.Option(help="Why, recorded in the audit.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Let the tool call run; the run resumes in a worker."""
    _decide(approval_id, approve=True, note=note, as_json=as_json)


@approvals_app.command("reject")
def approvals_reject(
    approval_id: ApprovalId,
    reason: Annotated[str | None, typer.Option(help="Told to the model and recorded in the audit.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Refuse the tool call; the model is told and must work around it."""
    _decide(approval_id, approve=False, note=reason, as_json=as_json)


@corpus_app.command("add")
def corpus_add(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders (Markdown, text, HTML).")] = None,
    python_docs: Annotated[bool, typer.Option("--python-docs", help="Index the Python reference.")] = False,
    collection: Annotated[str | None, typer.Option(help="Collection name; default: the folder's name.")] = None,
) -> None:
    """Index documents for offline search; re-adding a file updates it."""
    if not paths and not python_docs:
        err.print("[red]error:[/red] give files or folders to add, or --python-docs")
        raise typer.Exit(ExitCode.USAGE)

    async def body(runtime: Runtime) -> list[IngestReport]:
        store = CorpusStore(runtime.pool)
        reports = [await ingest_python_docs(store)] if python_docs else []
        for path in paths or []:
            reports.append(await ingest_path(store, path, collection=collection))
        return reports

    reports = _run(body)
    failed = False
    for report in reports:
        out.print(
            f"{report.inserted} added, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.skipped} skipped in {report.seconds:.1f}s"
        )
        for error in report.errors:
            failed = True
            err.print(f"[yellow]not indexed:[/yellow] {error}")
    raise typer.Exit(ExitCode.FAILED if failed else ExitCode.COMPLETED)


@corpus_app.command("list")
def corpus_list(as_json: JsonOption = False) -> None:
    """Collections in the corpus, with document counts."""

    async def body(runtime: Runtime) -> list[CollectionStats]:
        return await CorpusStore(runtime.pool).collections()

    stats = _run(body)
    if as_json:
        _print_json([dataclasses.asdict(s) for s in stats])
        return
    table = Table(title="Corpus")
    for column in ("collection", "documents", "characters", "updated"):
        table.add_column(column)
    for s in stats:
        table.add_row(s.name, str(s.documents), str(s.characters), s.updated_at.strftime("%Y-%m-%d %H:%M"))
    out.print(table)


@corpus_app.command("search")
def corpus_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    as_json: JsonOption = False,
) -> None:
    """Search the corpus the way the offline agent does."""

    async def body(runtime: Runtime) -> list[CorpusHit]:
        store = CorpusStore(runtime.pool)
        await ensure_python_docs(store)
        return await store.search(query, limit=limit)

    hits = _run(body)
    if as_json:
        _print_json([dataclasses.asdict(h) for h in hits])
        return
    for number, hit in enumerate(hits, start=1):
        out.print(f"[bold]{number}. {escape(hit.title)}[/bold]  [dim]{hit.score:.3f}[/dim]\n   [cyan]{hit.url}[/cyan]")
        out.print(f"   {escape(hit.snippet)}")
    if not hits:
        out.print("no matches")


kill_switch_app = typer.Typer(
    help="Stop every run now and refuse new ones, across all workers sharing the database.", no_args_is_help=True
)
app.add_typer(kill_switch_app, name="kill-switch")


def _kill_switch(runtime: Runtime) -> KillSwitch:
    return KillSwitch(runtime.pool, env_override=runtime.settings.disabled)


@kill_switch_app.command("on")
def kill_switch_on(
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why; shown to whoever is refused.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Turn the kill switch on: running runs stop as `killed` within 2 s, new runs are refused."""

    async def body(runtime: Runtime) -> SwitchChange:
        return await _kill_switch(runtime).turn_on(reason=reason)

    change = _run(body)
    if as_json:
        _print_json({**change.state.to_json(), "running": change.running})
        return
    out.print(
        f"kill switch [bold red]ON[/bold red]{f' ({escape(reason)})' if reason else ''}: new runs are refused, "
        f"workers claim nothing, and the {change.running} running run(s) stop as `killed` within 2 s.\n"
        "`research-agent kill-switch off` turns it off and resumes them from their last committed turn.",
        soft_wrap=True,
    )


@kill_switch_app.command("off")
def kill_switch_off(
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Queue the runs the switch killed again (default).")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Turn the kill switch off; the runs it killed are queued again and resume where they stopped."""

    async def body(runtime: Runtime) -> SwitchChange:
        return await _kill_switch(runtime).turn_off(requeue=resume)

    change = _run(body)
    if as_json:
        _print_json({**change.state.to_json(), "requeued": change.requeued})
        return
    out.print("kill switch [bold green]off[/bold green]: new runs are accepted.")
    if change.requeued:
        out.print(
            f"requeued {len(change.requeued)} run(s) it had killed; a worker resumes each from its last committed "
            "turn (nothing completed is redone):",
            soft_wrap=True,
        )
        for run_id in change.requeued:
            out.print(f"  {run_id}")
    if change.state.env_override:
        err.print("[yellow]note:[/yellow] RESEARCH_AGENT_DISABLED=1 is set here: this environment still refuses runs")


@kill_switch_app.command("status")
def kill_switch_status(as_json: JsonOption = False) -> None:
    """Whether the kill switch is on. Exit code 0 when off, 5 (refused) when on."""

    async def body(runtime: Runtime) -> KillSwitchState:
        return await _kill_switch(runtime).state()

    state = _run(body)
    if as_json:
        _print_json(state.to_json())
    elif state.on:
        since = f" since {state.updated_at:%Y-%m-%d %H:%M:%S %Z}" if state.flag and state.updated_at else ""
        out.print(f"[bold red]ON[/bold red]{since}: {escape(state.describe())}", soft_wrap=True)
    else:
        out.print("off: runs are accepted")
    raise typer.Exit(ExitCode.REFUSED if state.on else ExitCode.COMPLETED)


@app.command()
def spend(as_json: JsonOption = False) -> None:
    """Today's spend (UTC day) across all runs, against the daily cap (RESEARCH_AGENT_DAILY_CAP_USD)."""

    async def body(runtime: Runtime) -> SpendToday:
        return await DailySpend(runtime.pool, cap_usd=runtime.settings.daily_cap_usd).today()

    today = _run(body)
    if as_json:
        _print_json(today.to_json())
        return
    line = f"{today.day} (UTC): ${today.spent_usd:.4f} spent"
    if today.reserved_usd:
        line += f", ${today.reserved_usd:.4f} held by requests in flight"
    if today.cap_usd is None:
        line += " · no daily cap (set RESEARCH_AGENT_DAILY_CAP_USD)"
    else:
        line += f" of the ${today.cap_usd} daily cap · ${today.remaining_usd:.4f} remaining"
        if today.cap_reached:
            line += " · [bold red]cap reached: new runs are refused[/bold red]"
    out.print(line, soft_wrap=True)


def main() -> None:
    app()
