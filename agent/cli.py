"""The `research-agent` command line."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live

from agent._render import LiveProgress, report_panel, run_detail, run_json, runs_table
from agent.api import Runtime, open_runtime
from agent.config import RunStatus
from agent.errors import ConfigurationError, InvalidQuestionError, ResearchAgentError
from agent.settings import Settings


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

out = Console()
err = Console(stderr=True)
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
            out.print(report_panel(data["report"], title=f"Answer · {data['model']}"))
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


def main() -> None:
    app()
