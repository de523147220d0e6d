"""`ask`, `submit` and `worker`: the commands that run research, and so load the agent (inside each command)."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from agent.cli.console import err, out, print_json
from agent.cli.exit_codes import STATUS_EXIT, ExitCode
from agent.cli.options import JsonOption, MaxCost, MaxTokens, MaxTurns, MaxWall, ModelOption
from agent.cli.running import with_runtime

if TYPE_CHECKING:
    from agent.api import Runtime
    from agent.config import RunStatus
    from budgets import Budget


def _budget(*, max_turns: int | None, max_tokens: int | None, max_wall: float | None, max_cost: str | None) -> Budget:
    """The default budget with the caps given on the command line."""
    from budgets import Budget

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
    from rich.live import Live

    from agent.cli.render import LiveProgress, run_json

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

    data, status = with_runtime(body)
    if as_json:
        print_json(data)
    else:
        _print_answer(data, status)
    raise typer.Exit(STATUS_EXIT[status])


def _print_answer(data: dict[str, Any], status: RunStatus) -> None:
    """The report (or why there is none) and a one-line summary of the run, for a person."""
    from agent.cli.render import report_panel
    from agent.settings import is_offline_model

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

    run_id = with_runtime(body)
    if as_json:
        print_json({"run_id": run_id, "status": "queued"})
    else:
        out.print(run_id)


def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Runs executed at once.")] = 4,
    max_runs: Annotated[int | None, typer.Option(min=1, help="Exit after claiming this many runs.")] = None,
    exit_when_idle: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
) -> None:
    """Process queued runs and resume abandoned ones until stopped (Ctrl-C)."""
    import asyncio
    import signal

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

    with_runtime(body)
