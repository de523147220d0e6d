"""`kill-switch on|off|status` and `spend`: the cross-run controls, read and flipped through the stores only.

They never load the agent: the kill switch is what an operator reaches for in an incident, and it should
answer as fast as the database does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from agent.cli.console import err, out, print_json
from agent.cli.exit_codes import ExitCode
from agent.cli.options import JsonOption
from agent.cli.running import Stores, with_stores

if TYPE_CHECKING:
    from agent.durable.controls import KillSwitch, KillSwitchState, SwitchChange
    from budgets import SpendToday

app = typer.Typer(
    help="Stop every run now and refuse new ones, across all workers sharing the database.", no_args_is_help=True
)


def _kill_switch(stores: Stores) -> KillSwitch:
    from agent.durable.controls import KillSwitch

    return KillSwitch(stores.pool, env_override=stores.settings.disabled)


@app.command("on")
def kill_switch_on(
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why; shown to whoever is refused.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Turn the kill switch on: running runs stop as `killed` within 2 s, new runs are refused."""

    async def body(stores: Stores) -> SwitchChange:
        return await _kill_switch(stores).turn_on(reason=reason)

    change = with_stores(body)
    if as_json:
        print_json({**change.state.to_json(), "running": change.running})
        return
    out.print(
        f"kill switch [bold red]ON[/bold red]{f' ({escape(reason)})' if reason else ''}: new runs are refused, "
        f"workers claim nothing, and the {change.running} running run(s) stop as `killed` within 2 s.\n"
        "`research-agent kill-switch off` turns it off and resumes them from their last committed turn.",
        soft_wrap=True,
    )


@app.command("off")
def kill_switch_off(
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Queue the runs the switch killed again (default).")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Turn the kill switch off; the runs it killed are queued again and resume where they stopped."""

    async def body(stores: Stores) -> SwitchChange:
        return await _kill_switch(stores).turn_off(requeue=resume)

    change = with_stores(body)
    if as_json:
        print_json({**change.state.to_json(), "requeued": change.requeued})
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


@app.command("status")
def kill_switch_status(as_json: JsonOption = False) -> None:
    """Whether the kill switch is on. Exit code 0 when off, 5 (refused) when on."""

    async def body(stores: Stores) -> KillSwitchState:
        return await _kill_switch(stores).state()

    state = with_stores(body)
    if as_json:
        print_json(state.to_json())
    elif state.on:
        since = f" since {state.updated_at:%Y-%m-%d %H:%M:%S %Z}" if state.flag and state.updated_at else ""
        out.print(f"[bold red]ON[/bold red]{since}: {escape(state.describe())}", soft_wrap=True)
    else:
        out.print("off: runs are accepted")
    raise typer.Exit(ExitCode.REFUSED if state.on else ExitCode.COMPLETED)


def spend(as_json: JsonOption = False) -> None:
    """Today's spend (UTC day) across all runs, against the daily cap (RESEARCH_AGENT_DAILY_CAP_USD)."""
    from budgets import DailySpend

    async def body(stores: Stores) -> SpendToday:
        return await DailySpend(stores.pool, cap_usd=stores.settings.daily_cap_usd).today()

    today = with_stores(body)
    if as_json:
        print_json(today.to_json())
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
