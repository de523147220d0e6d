"""`alerts check`: the alert rules over a window of recent runs and today's spend, now (`agent.durable.alerts`).

Exit 0 when every rule holds (or could not be judged yet), 1 with the breached rules: a cron job or a
health check can run it. It only reads: firing (events, webhooks) is the workers' job. Stores only, like
`stats`: no model, no telemetry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from agent.cli.console import out, print_json
from agent.cli.exit_codes import ExitCode
from agent.cli.options import JsonOption
from agent.cli.running import Stores, with_stores
from agent.cli.stats import since_window

if TYPE_CHECKING:
    from rich.table import Table

    from agent.durable.alerts import AlertCheck

app = typer.Typer(help="Alert rules over the recent runs: what they say now.", no_args_is_help=True)


@app.command("check")
def alerts_check(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="AGE",
            help="The runs created in this last stretch of time (30m, 1h, 24h); default: RESEARCH_AGENT_ALERT_WINDOW.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Judge every alert rule now: success rate, steps, p99 duration, tokens and cost per run, tool error rate,
    approval rate (once the window holds RESEARCH_AGENT_ALERT_MIN_RUNS finished runs), and today's spend against
    the daily cap. Exit 1 when any rule is breached. docs/runbook.md says what each one means and what to do."""
    window = None if since is None else since_window(since)

    async def body(stores: Stores) -> AlertCheck:
        from agent.durable.alerts import check_alerts

        return await check_alerts(stores.pool, stores.settings, since=window)

    check = with_stores(body)
    if as_json:
        print_json({**check.model_dump(mode="json"), "ok": not check.breached})
    else:
        out.print(_table(check))
        breached = check.breached
        summary = f"{len(breached)} rule(s) breached: {', '.join(r.rule for r in breached)}" if breached else "all hold"
        out.print(summary, style="bold red" if breached else "green")
    if check.breached:
        raise typer.Exit(ExitCode.FAILED)


def _table(check: AlertCheck) -> Table:
    from rich.table import Table

    minutes = check.window_seconds / 60
    table = Table(
        title=f"Alerts over the last {minutes:g} min: {check.runs} runs, {check.finished_runs} finished",
        expand=True,
    )
    table.add_column("rule", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=1)
    for result in check.results:
        state = "[bold red]BREACHED[/]" if result.breached else ("ok" if result.judged else "[dim]not judged[/]")
        table.add_row(result.rule, state, escape(result.message))
    return table
