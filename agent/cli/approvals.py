"""`approvals list|approve|reject`: tool calls waiting for a human. Listing reads the stores only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from agent.cli.console import out, print_json
from agent.cli.options import JsonOption
from agent.cli.running import Stores, with_runtime, with_stores

if TYPE_CHECKING:
    from agent.api import Runtime
    from agent.durable.approvals import Approval

app = typer.Typer(help="Tool calls waiting for a human decision.", no_args_is_help=True)

ApprovalId = Annotated[str, typer.Argument(help="Approval id, as `approvals list` shows it (ap_...).")]


@app.command("list")
def approvals_list(as_json: JsonOption = False) -> None:
    """Pending requests, oldest first (overdue ones are expired, i.e. rejected, first)."""
    from agent.cli.render import approval_json, approvals_table

    async def body(stores: Stores) -> list[Approval]:
        return await stores.approvals.pending()

    pending = with_stores(body)
    if as_json:
        print_json([approval_json(a) for a in pending])
    elif pending:
        out.print(approvals_table(pending, title=f"{len(pending)} tool call(s) waiting for approval"))
    else:
        out.print("no tool calls are waiting for approval")


def _decide(approval_id: str, *, approve: bool, note: str | None, as_json: bool) -> None:
    from agent.cli.render import approval_json

    async def body(runtime: Runtime) -> Approval:
        return await runtime.decide_approval(approval_id, approve=approve, note=note)

    decided = with_runtime(body)
    if as_json:
        print_json(approval_json(decided))
    else:
        out.print(
            f"{decided.id} {decided.status}: {decided.tool} for run {decided.run_id}; "
            "a worker resumes the run once all its requests are decided"
        )


@app.command("approve")
def approvals_approve(
    approval_id: ApprovalId,
    note: Annotated[str | None, typer.Option(help="Why, recorded in the audit.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Let the tool call run; the run resumes in a worker."""
    _decide(approval_id, approve=True, note=note, as_json=as_json)


@app.command("reject")
def approvals_reject(
    approval_id: ApprovalId,
    reason: Annotated[str | None, typer.Option(help="Told to the model and recorded in the audit.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Refuse the tool call; the model is told and must work around it."""
    _decide(approval_id, approve=False, note=reason, as_json=as_json)
