"""Rendering runs for people (rich) and for machines (JSON)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # records are rendered, never built, here: reading them needs no import (nor pydantic-ai)
    from agent.durable.approvals import Approval
    from agent.durable.run_view import RunView
    from agent.durable.store import AuditRecord, RunRecord, StepRecord
    from agent.events import ProgressEvent


def decimal_text(value: Decimal) -> str:
    """Plain notation without trailing zeros: `0`, `0.0021` (never `0E-8`)."""
    return format(value.normalize(), "f")


def _cost(value: Decimal | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _duration(run: RunRecord) -> str:
    return f"{run.elapsed_seconds:.1f}s"


def budget_line(run: RunRecord) -> str:
    """Each cap with what the run used of it: the cap decisions at a glance."""
    budget = run.config.budget
    usage = run.usage_json
    tokens = usage["input_tokens"] + usage["output_tokens"]
    parts = [
        f"turns {usage['requests']}/{budget.max_turns}",
        f"tokens {tokens:,}/{budget.max_tokens:,}",
        f"wall {run.elapsed_seconds:.1f}/{budget.max_wall_seconds:g}s",
        f"cost {_cost(run.cost_usd)}/" + ("no cap" if budget.max_cost_usd is None else f"${budget.max_cost_usd}"),
    ]
    if budget.max_tool_calls is not None:
        parts.append(f"tool calls {usage['tool_calls']}/{budget.max_tool_calls}")
    parts += [f"{tool} ≤ {cap}" for tool, cap in budget.per_tool.items()]
    return ", ".join(parts)


def approval_json(approval: Approval) -> dict[str, Any]:
    return {
        "id": approval.id,
        "run_id": approval.run_id,
        "tool": approval.tool,
        "args": approval.args,
        "reason": approval.reason,
        "status": approval.status,
        "decided_by": approval.decided_by,
        "note": approval.note,
        "requested_at": approval.requested_at.isoformat(),
        "expires_at": approval.expires_at.isoformat(),
        "decided_at": approval.decided_at.isoformat() if approval.decided_at else None,
    }


def _expires_in(approval: Approval) -> str:
    if approval.status != "pending":
        return (approval.decided_at or approval.expires_at).strftime("%Y-%m-%d %H:%M")
    seconds = (approval.expires_at - datetime.now(UTC)).total_seconds()
    if seconds <= 0:
        return "overdue"
    return f"in {seconds / 3600:.1f}h" if seconds >= 3600 else f"in {max(1, round(seconds / 60))}m"


def approvals_table(approvals: list[Approval], *, title: str, show_run: bool = True) -> Table:
    """Approval requests; `runs show` leaves out the run column (it is that run's table)."""
    table = Table(title=title, expand=True)
    table.add_column("id", no_wrap=True)
    if show_run:
        table.add_column("run", no_wrap=True)
    table.add_column("call", overflow="fold", ratio=3)
    table.add_column("reason", overflow="fold", ratio=2)
    table.add_column("status", overflow="fold", ratio=2)
    table.add_column("expires" if show_run else "when", no_wrap=True)
    for a in approvals:
        status = a.status + (f" by {a.decided_by}" if a.decided_by else "") + (f": {a.note}" if a.note else "")
        cells = [a.id, a.run_id[:8]] if show_run else [a.id]
        cells += [
            escape(f"{a.tool} {json.dumps(a.args, ensure_ascii=False, default=str)}"),
            escape(a.reason),
            escape(status),
            _expires_in(a),
        ]
        table.add_row(*cells)
    return table


def run_json(
    run: RunRecord,
    steps: list[StepRecord] | None = None,
    audit: list[AuditRecord] | None = None,
    approvals: list[Approval] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run_id": run.id,
        "status": run.status,
        "stop_reason": run.stop_reason,
        "error": run.error,
        "question": run.question,
        "model": run.config.model,
        "prompt_version": run.config.prompt_version,
        "config": run.config.model_dump(mode="json"),
        "plan": run.plan,
        "report": run.report,
        "partial": run.partial,
        "review": run.review,
        "usage": run.usage_json,
        "cost_usd": decimal_text(run.cost_usd),
        "cost_known": run.cost_known,
        "elapsed_seconds": round(run.elapsed_seconds, 3),
        "attempts": run.attempts,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }
    if approvals is not None:
        data["approvals"] = [approval_json(a) for a in approvals]
    if audit is not None:
        data["audit"] = [{"tool": a.tool, "args": a.args, "decision": a.decision, "reason": a.reason} for a in audit]
    if steps is not None:
        data["steps"] = [
            {
                "seq": s.seq,
                "kind": s.kind,
                "name": s.name,
                "tool_call_id": s.tool_call_id,
                "args": s.args,
                "summary": s.summary,
                "ok": s.ok,
                "input_tokens": s.input_tokens,
                "output_tokens": s.output_tokens,
                "cost_usd": None if s.cost_usd is None else decimal_text(s.cost_usd),
                "latency_ms": None if s.latency_ms is None else round(s.latency_ms, 2),
            }
            for s in steps
        ]
    return data


def runs_table(runs: list[RunRecord]) -> Table:
    table = Table(title="Recent runs", expand=False)
    for column in ("id", "status", "question", "turns", "tokens", "cost", "duration"):
        table.add_column(column, no_wrap=column != "question")
    for run in runs:
        table.add_row(
            run.id[:8],
            run.status + (f" ({run.stop_reason})" if run.stop_reason and run.stop_reason != run.status else ""),
            escape(run.question[:60]),
            str(run.usage_json["requests"]),
            str(run.usage_json["input_tokens"] + run.usage_json["output_tokens"]),
            _cost(run.cost_usd),
            _duration(run),
        )
    return table


def report_panel(report: dict[str, Any] | None, *, title: str = "Report") -> Panel:
    if not report:
        return Panel("(no report)", title=title)
    body = Text(str(report.get("answer", "")))
    for number, citation in enumerate(report.get("citations", []), start=1):
        body.append(f"\n\n[{number}] {citation.get('title') or citation.get('url')}\n", style="bold")
        body.append(f"    {citation.get('url')}\n", style="cyan")
        body.append(f"    “{citation.get('quote')}”", style="italic")
    unresolved = report.get("unresolved") or []
    if unresolved:
        body.append("\n\nCould not establish:", style="bold yellow")
        for item in unresolved:
            body.append(f"\n  - {item}")
    return Panel(body, title=title)


def _critique_lines(label: str, critique: dict[str, Any] | None) -> list[str]:
    if not critique:
        return [f"{label}: not graded"]
    lines = [f"{label}: score {float(critique.get('score', 0)):.2f}"]
    lines += [f"  - {issue}" for issue in critique.get("issues") or []]
    return lines


def review_panel(review: dict[str, Any]) -> Panel:
    """The critic's verdicts: both scores, the critique, what was revised and which report was kept."""
    lines = [f"critic {review.get('critic_model')} · threshold {float(review.get('threshold', 0)):.2f}"]
    lines += _critique_lines("first report", review.get("first"))
    outcome = review.get("revision") or "-"
    lines.append(f"revision: {outcome}" + (f" ({review['skip_reason']})" if review.get("skip_reason") else ""))
    if outcome in ("revised", "stopped"):
        lines += _critique_lines("revised report", review.get("second"))
    if review.get("kept"):
        lines.append(f"kept: the {review['kept']} report")
    return Panel(escape("\n".join(lines)), title="Critic")


def run_detail(view: RunView) -> Group:
    run = view.run
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row("run", run.id)
    header.add_row("question", escape(run.question))
    header.add_row("status", f"{run.status}  stop_reason={run.stop_reason or '-'}")
    if run.error:
        header.add_row("error", escape(run.error))
    header.add_row("model", f"{run.config.model}  prompt={run.config.prompt_version}")
    header.add_row("budget", budget_line(run))
    usage = run.usage_json
    header.add_row(
        "usage",
        f"{usage['requests']} turns, {usage['input_tokens']} in / {usage['output_tokens']} out tokens, "
        f"{usage['tool_calls']} tool calls, {_cost(run.cost_usd)}{'' if run.cost_known else ' (price unknown)'}, "
        f"{_duration(run)}, attempts {run.attempts}",
    )
    plan = Text("\n".join(f"{i}. {q}" for i, q in enumerate(run.plan or [], start=1)) or "(no plan recorded)")
    steps = Table(title="Steps", expand=True)
    for column in ("#", "kind", "name", "args / summary", "tokens", "cost", "ms"):
        steps.add_column(column, overflow="fold")
    for step in view.steps:
        args = "" if step.args is None else escape(str(step.args))[:160]
        summary = escape(step.summary)
        steps.add_row(
            str(step.seq),
            step.kind,
            step.name + ("" if step.ok else " ✗"),
            (args + "\n" if args else "") + summary,
            f"{step.input_tokens}/{step.output_tokens}" if step.kind == "model" else "",
            _cost(step.cost_usd) if step.kind == "model" else "",
            "" if step.latency_ms is None else f"{step.latency_ms:.0f}",
        )
    parts: list[Any] = [header, Panel(plan, title="Plan"), steps]
    refused = [a for a in view.audit if a.decision != "allow"]
    if refused:
        audit = Table(title=f"Tool policy: {len(refused)} of {len(view.audit)} decisions refused", expand=True)
        for column in ("tool", "decision", "reason"):
            audit.add_column(column, overflow="fold")
        for row in refused:
            audit.add_row(row.tool, row.decision, escape(row.reason))
        parts.append(audit)
    if view.approvals:
        parts.append(approvals_table(view.approvals, title="Human approval", show_run=False))
    if run.review:
        parts.append(review_panel(run.review))
    if run.report:
        parts.append(report_panel(run.report))
    elif run.partial:
        parts.append(Panel(escape(str(run.partial)), title="Partial findings"))
    return Group(*parts)


class LiveProgress:
    """Collects progress events and renders a compact live panel for `ask`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lines: list[str] = []
        self.plan: list[str] = []
        self.tokens = 0
        self.cost = Decimal(0)
        self.status = "starting"

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "plan":
            self.plan = event.detail
        elif event.kind in ("search", "fetch", "tool_error", "resume"):
            self.lines.append(event.message)
        if event.kind in ("model", "status"):
            self.tokens = event.input_tokens + event.output_tokens
            self.cost = event.cost_usd
            self.status = event.message

    def __rich__(self) -> Panel:
        body = Text()
        if self.plan:
            body.append("Plan\n", style="bold")
            for number, question in enumerate(self.plan, start=1):
                body.append(f"  {number}. {question}\n")
        for line in self.lines[-8:]:
            body.append(f"• {line}\n")
        body.append(f"{self.status} · {self.tokens} tokens · ${self.cost:.4f}", style="dim")
        return Panel(body, title="research-agent")
