"""`RunView`: one run read in full (record, steps, policy audit, approvals, named events), as `get_run` and
`runs show` give it.

It lives apart from `agent.api` because reading a run needs only the stores, not the runner: the CLI's
read-only commands build it without importing pydantic-ai, provider SDKs or logfire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.durable.approvals import Approval, ApprovalStore
    from agent.durable.store import AuditRecord, RunEvent, RunRecord, RunStore, StepRecord


@dataclass(frozen=True, kw_only=True)
class RunView:
    """A run with its steps, as `runs show` prints it."""

    run: RunRecord
    steps: list[StepRecord]
    audit: list[AuditRecord] = field(default_factory=list)
    """Tool-policy decisions for this run, from the append-only audit table."""
    approvals: list[Approval] = field(default_factory=list)
    """Tool calls this run asked a human about, pending or decided."""
    events: list[RunEvent] = field(default_factory=list)
    """Its named events (`run.started`, `cost.recorded`, ... one terminal event per finish)."""


async def read_run(store: RunStore, approvals: ApprovalStore, run_id: str) -> RunView:
    """The run `run_id` (a full id or a unique prefix of 6+ characters) with everything recorded about it."""
    run = await store.get_run(run_id)
    return RunView(
        run=run,
        steps=await store.get_steps(run.id),
        audit=await store.audit_rows(run.id),
        approvals=await approvals.find(run_id=run.id, pending_only=False),
        events=await store.events(run.id),
    )
