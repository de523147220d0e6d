"""Human approval of tool calls: the durable half of pydantic-ai's deferred tools.

When the tool policy says a call needs approval, `PolicyGuard` raises pydantic-ai's
`ApprovalRequired`; the run ends its pass with `DeferredToolRequests`, and the runner parks it here:
one `approvals` row per call and the run set to `awaiting_approval`, in one transaction fenced by the
worker's lease. Anyone with database access decides (`research-agent approvals approve|reject`);
when a run's last pending request is decided it goes back to `queued`, and whichever worker claims
it resumes pydantic-ai with `deferred_tool_results` built from the decisions. A request nobody
decides within the timeout expires, which the model sees as a rejection.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, cast

import asyncpg

from agent.durable.store import Connection, JSONValue, RunRecord, StepRecord, history, insert_audit, runs
from agent.errors import ApprovalError

if TYPE_CHECKING:  # the resume helpers import them when called: listing and deciding requests does not
    from pydantic_ai.messages import ModelMessage, ToolCallPart
    from pydantic_ai.tools import DeferredToolResults

ApprovalStatus = Literal["pending", "approved", "rejected", "expired"]


@dataclass(frozen=True, kw_only=True)
class ApprovalRequest:
    """A tool call the policy wants a human to decide, as the runner parks it."""

    tool_call_id: str
    tool: str
    args: JSONValue
    """Redacted: secrets never reach the approvals table."""
    reason: str


@dataclass(frozen=True, kw_only=True)
class Approval:
    """One row of `approvals`."""

    id: str
    run_id: str
    tool_call_id: str
    tool: str
    args: JSONValue
    reason: str
    status: ApprovalStatus
    decided_by: str | None
    note: str | None
    requested_at: datetime
    expires_at: datetime
    decided_at: datetime | None

    def refusal(self) -> str:
        """What the model is told about a call that was not approved."""
        if self.status == "expired":
            return (
                "No human approved this call before the approval request timed out, so it was rejected. "
                "Do not try it again; continue without it."
            )
        why = f": {self.note}" if self.note else ""
        return f"A human reviewer rejected this call{why}. Do not try it again; continue without it."


def _approval_from_row(row: asyncpg.Record) -> Approval:
    return Approval(
        id=row["id"],
        run_id=str(row["run_id"]),
        tool_call_id=row["tool_call_id"],
        tool=row["tool"],
        args=row["args"],
        reason=row["reason"],
        status=cast(ApprovalStatus, row["status"]),
        decided_by=row["decided_by"],
        note=row["note"],
        requested_at=row["requested_at"],
        expires_at=row["expires_at"],
        decided_at=row["decided_at"],
    )


def _new_id() -> str:
    return f"ap_{secrets.token_hex(5)}"


class ApprovalStore:
    """Typed access to `approvals`; every decision is also appended to the tool audit."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def park(
        self,
        run_id: str,
        *,
        worker_id: str,
        requests: Sequence[ApprovalRequest],
        timeout_seconds: float,
        steps: Sequence[StepRecord] = (),
        elapsed_seconds: float | None = None,
    ) -> RunRecord:
        """Record the requests and set the run `awaiting_approval`, releasing the lease; one transaction."""
        if not requests:
            raise ValueError("park() needs at least one approval request")
        rid = uuid.UUID(run_id)
        async with self.pool.acquire() as conn, conn.transaction():
            await runs.park_for_approval(conn, rid, worker_id=worker_id, elapsed_seconds=elapsed_seconds)
            await conn.executemany(
                """
                INSERT INTO approvals (id, run_id, tool_call_id, tool, args, reason, expires_at)
                VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
                ON CONFLICT (run_id, tool_call_id) DO NOTHING
                """,
                [(_new_id(), rid, r.tool_call_id, r.tool, r.args, r.reason, timeout_seconds) for r in requests],
            )
            await history.insert_steps(conn, rid, steps)
            # A request decided earlier (a re-parked run) leaves nothing pending: queue the run again now.
            await runs.requeue_if_decided(conn, rid)
            return await runs.fetch(conn, rid)

    async def get(self, approval_id: str) -> Approval:
        row = await self.pool.fetchrow("SELECT * FROM approvals WHERE id = $1", approval_id.strip())
        if row is None:
            raise ApprovalError(f"no approval request {approval_id!r}; see `research-agent approvals list`")
        return _approval_from_row(row)

    async def find(self, *, run_id: str | None = None, pending_only: bool = True) -> list[Approval]:
        rows = await self.pool.fetch(
            "SELECT * FROM approvals WHERE ($1::uuid IS NULL OR run_id = $1) AND (NOT $2 OR status = 'pending')"
            " ORDER BY requested_at, id",
            uuid.UUID(run_id) if run_id else None,
            pending_only,
        )
        return [_approval_from_row(r) for r in rows]

    async def decide(self, approval_id: str, *, approve: bool, decided_by: str, note: str | None = None) -> Approval:
        """Approve or reject a pending request; the run is queued again once nothing of it is pending."""
        status: ApprovalStatus = "approved" if approve else "rejected"
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT *, expires_at <= now() AS overdue FROM approvals WHERE id = $1 FOR UPDATE", approval_id.strip()
            )
            if row is None:
                raise ApprovalError(f"no approval request {approval_id!r}; see `research-agent approvals list`")
            current = _approval_from_row(row)
            if current.status != "pending":
                raise ApprovalError(
                    f"approval {current.id} is already {current.status}"
                    + (f" (by {current.decided_by})" if current.decided_by else "")
                )
            if row["overdue"]:
                await _expire(conn, [current.id])  # committed: the timeout stands whatever is decided now
                expired = True
            else:
                expired = False
                decided = await _decide(conn, current, status=status, decided_by=decided_by, note=note)
        if expired:
            raise ApprovalError(f"approval {current.id} timed out before it was decided; the call was rejected")
        return decided

    async def expire_due(self) -> list[Approval]:
        """Expire every pending request past its deadline (a rejection) and queue runs left with none pending."""
        async with self.pool.acquire() as conn, conn.transaction():
            ids = await conn.fetch(
                "SELECT id FROM approvals WHERE status = 'pending' AND expires_at <= now() FOR UPDATE SKIP LOCKED"
            )
            return await _expire(conn, [r["id"] for r in ids])

    async def pending(self) -> list[Approval]:
        """Requests waiting for a human, oldest first, once the overdue ones are expired (rejected)."""
        await self.expire_due()
        return await self.find(pending_only=True)

    async def refused_calls(self, run_id: str, history: Sequence[ModelMessage]) -> frozenset[str]:
        """Call keys (`budgets.call_key`) of this run's rejected or expired calls: asking again is refused."""
        if not history:  # a fresh run has asked nobody anything
            return frozenset()
        from pydantic_ai.messages import ModelResponse

        from budgets import call_key

        rows = await self.pool.fetch(
            "SELECT tool_call_id FROM approvals WHERE run_id = $1 AND status IN ('rejected', 'expired')",
            uuid.UUID(run_id),
        )
        ids = {r["tool_call_id"] for r in rows}
        calls = [p for m in history if isinstance(m, ModelResponse) for p in m.tool_calls if p.tool_call_id in ids]
        return frozenset(call_key(p.tool_name, p.args_as_dict()) for p in calls)

    async def decided_results(self, run_id: str, history: Sequence[ModelMessage]) -> DeferredToolResults | None:
        """Decisions for the calls the history still leaves unanswered, as pydantic-ai resumes them."""
        open_calls = unanswered_calls(history)
        if not open_calls:
            return None
        rows = await self.pool.fetch(
            "SELECT * FROM approvals WHERE run_id = $1 AND status <> 'pending' AND tool_call_id = ANY($2::text[])",
            uuid.UUID(run_id),
            list(open_calls),
        )
        if not rows:
            return None
        from pydantic_ai.tools import DeferredToolResults, ToolApproved, ToolDenied

        results = DeferredToolResults()
        for approval in map(_approval_from_row, rows):
            results.approvals[approval.tool_call_id] = (
                ToolApproved() if approval.status == "approved" else ToolDenied(approval.refusal())
            )
        return results


async def _decide(
    conn: Connection,
    current: Approval,
    *,
    status: ApprovalStatus,
    decided_by: str,
    note: str | None,
) -> Approval:
    row = await conn.fetchrow(
        "UPDATE approvals SET status = $2, decided_by = $3, note = $4, decided_at = now() WHERE id = $1 RETURNING *",
        current.id,
        status,
        decided_by,
        note,
    )
    assert row is not None  # locked by the caller
    decided = _approval_from_row(row)
    await _audit_decision(conn, decided)
    await runs.requeue_if_decided(conn, decided.run_id)
    return decided


async def _expire(conn: Connection, ids: list[str]) -> list[Approval]:
    if not ids:
        return []
    rows = await conn.fetch(
        "UPDATE approvals SET status = 'expired', decided_by = 'timeout', decided_at = now()"
        " WHERE id = ANY($1::text[]) AND status = 'pending' RETURNING *",
        ids,
    )
    expired = [_approval_from_row(r) for r in rows]
    for approval in expired:
        await _audit_decision(conn, approval)
    for run_id in {a.run_id for a in expired}:
        await runs.requeue_if_decided(conn, run_id)
    return expired


async def _audit_decision(conn: Connection, approval: Approval) -> None:
    reason = {
        "approved": f"approved by {approval.decided_by}",
        "rejected": f"rejected by {approval.decided_by}",
        "expired": "approval request timed out: rejected",
    }.get(approval.status, approval.status)
    if approval.note:
        reason += f": {approval.note}"
    await insert_audit(
        conn,
        approval.run_id,
        tool=approval.tool,
        args=approval.args,
        decision=approval.status,
        reason=f"{reason} (approval {approval.id})",
    )


def unanswered_calls(history: Sequence[ModelMessage]) -> dict[str, ToolCallPart]:
    """The last response's tool calls that no later request answers, by tool call id."""
    from pydantic_ai.messages import ModelRequest, ModelResponse

    for index in range(len(history) - 1, -1, -1):
        message = history[index]
        if isinstance(message, ModelResponse):
            calls = {part.tool_call_id: part for part in message.tool_calls}
            for later in history[index + 1 :]:
                if isinstance(later, ModelRequest):
                    for part in later.parts:
                        calls.pop(getattr(part, "tool_call_id", ""), None)
            return calls
    return {}
