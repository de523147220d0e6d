"""`ask`, `submit` and `worker`: the commands that run research, and so load the agent (inside each command)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from agent.cli.console import err, out, print_json
from agent.cli.exit_codes import STATUS_EXIT, ExitCode
from agent.cli.options import JsonOption, MaxCost, MaxTokens, MaxTurns, MaxWall, ModelOption, cap_changes
from agent.cli.running import exit_now, interrupts_on_ctrl_c, stop_on_signals, with_runtime

if TYPE_CHECKING:
    from agent.api import Runtime
    from agent.config import RunStatus
    from agent.metrics import PrometheusEndpoint
    from budgets import Budget


def _budget(*, max_turns: int | None, max_tokens: int | None, max_wall: float | None, max_cost: str | None) -> Budget:
    """The default budget with the caps given on the command line."""
    from budgets import Budget

    changes = cap_changes(max_turns=max_turns, max_tokens=max_tokens, max_wall=max_wall, max_cost=max_cost)
    try:
        return Budget.model_validate({**Budget().model_dump(), **changes})
    except ValueError as exc:
        err.print(f"[red]error:[/red] invalid budget: {escape(str(exc))}")  # pydantic's `[type=...]` is text
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
    """Research a question now and print a cited answer. Ctrl-C stops the run, resumable (exit 130)."""
    from rich.live import Live

    from agent.cli.render import LiveProgress, run_json

    budget = _budget(max_turns=max_turns, max_tokens=max_tokens, max_wall=max_wall, max_cost=max_cost)

    async def body(runtime: Runtime) -> tuple[dict[str, Any], RunStatus, bool]:
        _check_model_option(runtime, model)
        progress = LiveProgress(err)
        with interrupts_on_ctrl_c(runtime) as ctrl_c:
            if as_json:  # no panel; indexing the reference still says so on stderr
                result = await runtime.research(question, model=model, budget=budget, progress=progress)
            else:
                with Live(progress, console=err, refresh_per_second=8, transient=True):
                    result = await runtime.research(question, model=model, budget=budget, progress=progress)
            view = await runtime.get_run(result.run_id)
        return run_json(view.run, view.steps, view.audit, view.approvals), result.status, ctrl_c.pressed

    data, status, interrupted = with_runtime(body)
    if as_json:
        print_json(data)
    else:
        _print_answer(data, status)
    if status == "cancelled":
        run_id = data["run_id"]
        err.print(
            f"[yellow]run {run_id} interrupted[/yellow]; continue it from its last step with:\n"
            f"  research-agent runs resume {run_id}\n"
            "then a `research-agent worker` finishes it."
        )
        if interrupted:
            exit_now(ExitCode.INTERRUPTED)  # a real Ctrl-C: the prompt back at once (see exit_now)
    raise typer.Exit(STATUS_EXIT[status])


def _check_model_option(runtime: Runtime, model: str | None) -> None:
    """A `--model` that cannot work is a configuration error naming `--model`, before any run exists."""
    if model is None or model == "auto":  # `auto` stands for RESEARCH_AGENT_MODEL's resolution
        return
    from agent.models import check_model

    check_model(model, settings=runtime.settings, source="--model")


def _print_answer(data: dict[str, Any], status: RunStatus) -> None:
    """The report (or why there is none), the critic's verdict and a one-line summary of the run."""
    from agent.cli.render import critic_brief, partial_panel, report_panel
    from agent.settings import is_offline_model

    if data["report"]:
        label = "offline model (extractive, no LLM)" if is_offline_model(data["model"]) else data["model"]
        out.print(report_panel(data["report"], label=label))
    elif status == "awaiting_approval":
        _print_pending_approvals(data["approvals"])
    else:
        out.print(f"[yellow]No report[/yellow]: {data['status']} ({data['stop_reason']}) {escape(data['error'] or '')}")
        if data["partial"]:
            out.print(partial_panel(data["partial"]))
    if data.get("review"):
        out.print(critic_brief(data["review"]))
    out.print(_summary_line(data), style="dim", highlight=False, markup=False)


def _print_pending_approvals(approvals: list[dict[str, Any]]) -> None:
    out.print("[yellow]Waiting for a human[/yellow]: the tool policy requires approval for:")
    for approval in approvals:
        if approval["status"] == "pending":
            args = json.dumps(approval["args"], ensure_ascii=False)
            out.print(f"  {approval['id']}  {approval['tool']} {escape(args)}  ({escape(approval['reason'])})")
    out.print(
        "Decide with `research-agent approvals approve ID` or `reject ID --reason ...`; "
        "a `research-agent worker` then finishes the run."
    )


def _summary_line(data: dict[str, Any]) -> str:
    """`run ID · completed · not answered · 5 turns · 1234 tokens · $0.0012 · critic 0.40` (plain text)."""
    from agent.cli.render import kept_critique, report_answered
    from agent.money import money

    parts = [f"run {data['run_id']}", data["status"]]
    if data["report"] and not report_answered(data["report"]):
        parts.append("not answered")
    tokens = data["usage"]["input_tokens"] + data["usage"]["output_tokens"]
    parts += [f"{data['usage']['requests']} turns", f"{tokens} tokens", money(Decimal(data["cost_usd"]))]
    critique = kept_critique(data["review"]) if data.get("review") else None
    if critique:
        parts.append(f"critic {float(critique['score']):.2f}")
    return " · ".join(parts)


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
        _check_model_option(runtime, model)
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
    metrics_port: Annotated[  # metrics hook
        int | None,
        typer.Option(metavar="PORT", help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port)."),
    ] = None,
    metrics_host: Annotated[str, typer.Option(metavar="HOST", help="The address --metrics-port listens on.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Process queued runs and resume abandoned ones until stopped (Ctrl-C); one log line per run claimed and done."""
    from agent.durable.worker import Worker
    from agent.events import WorkerEvent

    def log(event: WorkerEvent) -> None:
        err.print(escape(event.line()), highlight=False)

    async def body(runtime: Runtime) -> int:
        w = Worker(
            runtime,
            concurrency=concurrency,
            max_runs=max_runs,
            exit_when_idle=exit_when_idle,
            on_event=log,
            on_notice=lambda message: err.print(escape(message), highlight=False),  # e.g. a database outage
        )
        stop_on_signals(w.stop)
        err.print(f"worker {w.worker_id} started (concurrency {concurrency})", highlight=False)
        finished = await w.run()
        err.print(f"worker {w.worker_id} stopped after {len(finished)} runs", highlight=False)
        return len(finished)

    endpoint = None if metrics_port is None else _serve_metrics(host=metrics_host, port=metrics_port)  # metrics hook
    try:
        with_runtime(body)
    finally:
        if endpoint is not None:
            endpoint.close()


def _serve_metrics(*, host: str, port: int) -> PrometheusEndpoint:
    """Start the scrape endpoint and configure telemetry with its reader (before `with_runtime` would configure
    it without); prints its URL once. A port that cannot be served is a one-line error (exit 2)."""
    from agent.cli.running import exit_on_errors
    from agent.metrics import start_prometheus
    from agent.settings import Settings
    from agent.telemetry import configure_telemetry

    with exit_on_errors():
        settings = Settings.load()
        endpoint = start_prometheus(host=host, port=port)
    configure_telemetry(settings, metric_readers=[endpoint.reader])
    err.print(f"metrics at {endpoint.url}", highlight=False)
    return endpoint
