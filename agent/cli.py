"""The `research-agent` command line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from agent._render import LiveProgress, report_panel, run_detail, run_json, runs_table
from agent.api import Runtime, open_runtime
from agent.config import RunStatus
from agent.errors import ConfigurationError, InvalidQuestionError, ResearchAgentError
from agent.settings import Settings, is_offline_model
from tools import (
    CollectionStats,
    CorpusHit,
    CorpusStore,
    IngestReport,
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
corpus_app = typer.Typer(help="The local document corpus searched offline.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")

out = Console()
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help="Model name; default: RESEARCH_AGENT_MODEL.")]


def _run(body: Callable[[Runtime], Awaitable[T]]) -> T:
    """Open the runtime, run `body`, and turn our errors into clear messages and exit codes."""

    async def main() -> T:
        async with open_runtime(Settings()) as runtime:
            return await body(runtime)

    try:
        return asyncio.run(main())
    except InvalidQuestionError as exc:
        err.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(ExitCode.REFUSED) from exc
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
) -> None:
    """Research a question now and print a cited answer."""

    async def body(runtime: Runtime) -> tuple[dict[str, Any], RunStatus]:
        if as_json:
            result = await runtime.research(question, model=model)
        else:
            progress = LiveProgress(err)
            with Live(progress, console=err, refresh_per_second=8, transient=True):
                result = await runtime.research(question, model=model, progress=progress)
        view = await runtime.get_run(result.run_id)
        return run_json(view.run, view.steps), result.status

    data, status = _run(body)
    if as_json:
        _print_json(data)
    else:
        if data["report"]:
            label = "offline model (extractive, no LLM)" if is_offline_model(data["model"]) else data["model"]
            out.print(report_panel(data["report"], title=f"Answer · {label}"))
        else:
            out.print(f"[yellow]No report[/yellow]: {data['status']} ({data['stop_reason']}) {data['error'] or ''}")
            if data["partial"]:
                out.print(data["partial"])
        out.print(
            f"[dim]run {data['run_id']} · {data['status']} · {data['usage']['requests']} turns · "
            f"{data['usage']['input_tokens'] + data['usage']['output_tokens']} tokens · ${data['cost_usd']}[/dim]"
        )
    raise typer.Exit(STATUS_EXIT[status])


@app.command()
def submit(
    question: Annotated[str, typer.Argument(help="What to research.")],
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a question for a worker and print the run id."""

    async def body(runtime: Runtime) -> str:
        return (await runtime.submit(question, model=model)).id

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
    from agent.worker import Worker

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
        _print_json(run_json(view.run, view.steps))
    else:
        out.print(run_detail(view))


@runs_app.command("resume")
def runs_resume(run_id: Annotated[str, typer.Argument(help="Run id or unique prefix.")]) -> None:
    """Queue a stopped run again; a worker continues it from its last committed turn."""

    async def body(runtime: Runtime) -> str:
        return (await runtime.resume(run_id)).id

    out.print(f"queued {_run(body)}")


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


def main() -> None:
    app()
