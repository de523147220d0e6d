"""Rendering runs for people (rich) and for machines (JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.markup import escape
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent.money import money, money_text

if TYPE_CHECKING:  # records are rendered, never built, here: reading them needs no import (nor pydantic-ai)
    from agent.durable.approvals import Approval
    from agent.durable.run_view import RunView
    from agent.durable.store import AuditRecord, RunEvent, RunRecord, StepRecord
    from agent.events import ProgressEvent


def cut(text: str, limit: int) -> str:
    """`text` on one line (whitespace runs become one space), cut to `limit` characters with `…`."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compact_json(value: Any, *, limit: int = 200, value_limit: int = 100) -> str:
    """Arguments as people read them: `{"query":"nonlocal statement","max_results":5}`, every string value cut
    to `value_limit` characters and the whole to `limit` (both with `…`)."""

    def shorten(item: Any) -> Any:
        if isinstance(item, str):
            return cut(item, value_limit)
        if isinstance(item, Mapping):
            return {key: shorten(inner) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return [shorten(inner) for inner in item]
        return item

    return cut(json.dumps(shorten(value), ensure_ascii=False, separators=(",", ":"), default=str), limit)


def ago(moment: datetime, now: datetime) -> str:
    """How long before `now`: `45s ago`, `3m ago`, `5h ago`, `2d ago`; the local date after 30 days."""
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds >= 30 * 86_400:
        return f"{moment.astimezone():%Y-%m-%d}"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


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
        f"cost {money(run.cost_usd)}/" + ("no cap" if budget.max_cost_usd is None else money(budget.max_cost_usd)),
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
    events: list[RunEvent] | None = None,
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
        "report": report_json(run.report),
        "partial": run.partial,
        "review": run.review,
        "usage": run.usage_json,
        "cost_usd": money_text(run.cost_usd),
        "cost_known": run.cost_known,
        "elapsed_seconds": round(run.elapsed_seconds, 3),
        "attempts": run.attempts,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }
    if approvals is not None:
        data["approvals"] = [approval_json(a) for a in approvals]
    if events is not None:
        data["events"] = [{"name": e.name, "at": e.created_at.isoformat(), "attributes": e.attributes} for e in events]
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
                "cost_usd": None if s.cost_usd is None else money_text(s.cost_usd),
                "latency_ms": None if s.latency_ms is None else round(s.latency_ms, 2),
            }
            for s in steps
        ]
    return data


_COMPACT: dict[str, Any] = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False, "collapse_padding": True}
"""Tables with a rule under the header and two spaces between columns: more room for the text at 80 columns."""
_GAP = 2
_SAID_BY_STATUS = {("completed", "completed"), ("awaiting_approval", "approval_required")}
"""Stop reasons `runs list` leaves out: their status says it already."""


class RunsTable:
    """`runs list`: a line per run (two when its stop reason says more than its status), as wide as the console.

    At 80 columns the question is cut with `…` to what is left of the line; should that be under
    `QUESTION_MIN` characters, the columns in `DROPPABLE` give way first, in that order (`--json` has them all).
    """

    COLUMNS = ("id", "status", "question", "turns", "tokens", "cost", "duration", "created")
    DROPPABLE = ("duration", "turns", "tokens")
    QUESTION_MIN = 24
    QUESTION_MAX = 60

    def __init__(self, runs: Sequence[RunRecord], *, title: str = "Recent runs", now: datetime | None = None) -> None:
        self.runs = runs
        self.title = title
        self.now = now

    def cells(self, run: RunRecord, now: datetime) -> dict[str, Text]:
        usage = run.usage_json
        status = Text(run.status)
        if run.stop_reason and (run.status, run.stop_reason) not in _SAID_BY_STATUS:
            status.append(f"\n({run.stop_reason})", style="dim")
        if run.report and not report_answered(run.report):
            status.append("\n(not answered)", style="yellow")
        return {
            "id": Text(run.id[:8]),
            "status": status,
            "question": Text(" ".join(run.question.split())),
            "turns": Text(str(usage["requests"])),
            "tokens": Text(f"{usage['input_tokens'] + usage['output_tokens']:,}"),
            "cost": Text(money(run.cost_usd)),
            "duration": Text(f"{run.elapsed_seconds:.1f}s"),
            "created": Text(ago(run.created_at, now)),
        }

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        now = self.now or datetime.now(UTC)
        rows = [self.cells(run, now) for run in self.runs]
        width = {
            name: max([cell_len(name)] + [max(cell_len(line) for line in row[name].plain.split("\n")) for row in rows])
            for name in self.COLUMNS
        }
        columns = list(self.COLUMNS)

        def room() -> int:  # what is left of the line for the question
            return options.max_width - sum(width[c] for c in columns if c != "question") - _GAP * (len(columns) - 1)

        wanted = min(width["question"], self.QUESTION_MAX)
        for name in self.DROPPABLE:
            if room() >= min(wanted, self.QUESTION_MIN):
                break
            columns.remove(name)
        table = Table(title=self.title, **_COMPACT)
        for name in columns:
            if name == "question":
                table.add_column(name, width=max(1, min(wanted, room())), no_wrap=True, overflow="ellipsis")
            else:
                table.add_column(name, no_wrap=True, justify="left" if name in ("id", "status") else "right")
        for row in rows:
            table.add_row(*(row[name] for name in columns))
        yield table


def report_answered(report: Mapping[str, Any]) -> bool:
    """A stored report's `answered`; reports stored before the field existed were answers."""
    return bool(report.get("answered", True))


def report_json(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The stored report with `answered` always present, so scripts need not know its default."""
    return None if report is None else {"answered": report_answered(report), **report}


def _append_citations(body: Text, citations: Sequence[Mapping[str, Any]]) -> None:
    for number, citation in enumerate(citations, start=1):
        body.append(f"\n\n[{number}] {citation.get('title') or citation.get('url')}\n", style="bold")
        body.append(f"    {citation.get('url')}\n", style="cyan")
        if citation.get("see_also"):
            body.append(f"    see also: {citation['see_also']}\n", style="cyan")
        body.append(f"    “{citation.get('quote')}”", style="italic")


def _append_unresolved(body: Text, items: Sequence[str], heading: str) -> None:
    if items:
        body.append(f"\n\n{heading}", style="bold yellow")
        for item in items:
            body.append(f"\n  - {item}")


def report_panel(report: Mapping[str, Any] | None, *, label: str | None = None) -> Panel:
    """The report for a person. One the agent could not answer from its sources is titled "Not answered",
    in yellow, with what is missing right under it: it must not be read as an answer."""
    if not report:
        return Panel("(no report)", title="Report")
    answered = report_answered(report)
    title = ("Answer" if answered else "Not answered") + (f" · {label}" if label else "")
    unresolved = [str(item) for item in report.get("unresolved") or []]
    body = Text(str(report.get("answer", "")))
    if not answered:
        _append_unresolved(body, unresolved, "Missing from the sources:")
    _append_citations(body, report.get("citations") or [])
    if answered:
        _append_unresolved(body, unresolved, "Could not establish:")
    style = "" if answered else "yellow"
    return Panel(body, title=Text(title, style=f"bold {style}".strip()), border_style=style or "none")


def kept_critique(review: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The critique of the report the run kept: the revision's when the revision was kept."""
    critique = review.get("second") if review.get("kept") == "revision" else review.get("first")
    return critique if isinstance(critique, Mapping) else None


def critique_reasons(critique: Mapping[str, Any]) -> list[str]:
    """Why the critic scored as it did: its issues, then what is missing, then the unsupported claims."""
    reasons = [str(issue) for issue in critique.get("issues") or []]
    reasons += [f"missing: {item}" for item in critique.get("missing") or []]
    reasons += [f"unsupported: {claim}" for claim in critique.get("unsupported_claims") or []]
    return reasons


def _critique_lines(label: str, critique: Mapping[str, Any] | None) -> list[str]:
    if not critique:
        return [f"{label}: not graded"]
    lines = [f"{label}: score {float(critique.get('score', 0)):.2f}"]
    return lines + [f"  - {reason}" for reason in critique_reasons(critique)]


def review_panel(review: Mapping[str, Any]) -> Panel:
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


def critic_verdict(review: Mapping[str, Any]) -> str:
    """One line: the kept report's score against the threshold, and what became of the revision."""
    critique = kept_critique(review)
    line = f"score {float(critique.get('score', 0)):.2f}" if critique else "not graded"
    line += f" (threshold {float(review.get('threshold', 0)):.2f})"
    first = review.get("first")
    if review.get("revision") == "revised" and isinstance(first, Mapping):
        line += f" · revised from {float(first.get('score', 0)):.2f}, kept the {review.get('kept')} report"
    elif review.get("revision") in ("skipped", "stopped"):
        line += f" · revision {review['revision']}"
    if review.get("skip_reason"):
        line += f": {review['skip_reason']}"
    return line


def critic_brief(review: Mapping[str, Any]) -> Panel:
    """`ask`'s view of the critic: the kept report's score and the reasons for it (`runs show` has both)."""
    critique = kept_critique(review)
    reasons = critique_reasons(critique) if critique else []
    parts: list[Any] = [Text(critic_verdict(review))]
    if reasons:
        parts.append(listing(reasons, numbered=False))
    return Panel(Group(*parts), title=f"Critic · {escape(str(review.get('critic_model')))}")


def steps_table(steps: Sequence[StepRecord]) -> Table:
    """`runs show`'s steps, readable at 80 columns: the step's name over its kind; its arguments as compact
    JSON over its result, both cut with `…`; tokens, cost and latency stacked in the last column."""
    table = Table(title="Steps", expand=True, **_COMPACT)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("step", max_width=18, overflow="fold")
    table.add_column("details", ratio=1, overflow="fold")
    table.add_column("usage", justify="right", no_wrap=True)
    for step in steps:
        name = Text(step.name + ("" if step.ok else " ✗"))
        name.append(f"\n{step.kind}", style="dim")
        details = Text()
        if step.args is not None:
            details.append(compact_json(step.args) + "\n", style="cyan")
        details.append(cut(step.summary, 160))
        usage: list[str] = []
        if step.kind == "model":
            usage += [f"{step.input_tokens:,}/{step.output_tokens:,} tok", money(step.cost_usd)]
        if step.latency_ms is not None:
            usage.append(f"{step.latency_ms:,.0f} ms")
        table.add_row(str(step.seq), name, details, "\n".join(usage))
    return table


def listing(items: Sequence[str], *, numbered: bool, style: str = "") -> Table:
    """`1. item` or `- item` lines whose wrapped text (long questions, URLs) stays indented under itself."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(overflow="fold")
    for number, item in enumerate(items, start=1):
        grid.add_row(f"{number}." if numbered else "-", Text(item, style=style))
    return grid


def partial_panel(partial: Mapping[str, Any]) -> Panel:
    """What a run that stopped without a report had gathered (`PartialFindings`): its plan, sources, notes."""
    parts: list[Any] = []
    sections = (("Plan", "plan", True), ("Sources", "sources", False), ("Notes", "notes", False))
    for title, key, numbered in sections:
        items = [str(item) for item in partial.get(key) or []]
        if items:
            style = "cyan" if key == "sources" else ""
            parts += [Text("") if parts else None, Text(title, style="bold")]
            parts.append(Padding(listing(items, numbered=numbered, style=style), (0, 0, 0, 2)))
    for key, value in partial.items():  # anything a later version adds, shown rather than lost
        if key not in ("plan", "sources", "notes") and value:
            parts += [Text("") if parts else None, Text(f"{key}: {compact_json(value, limit=500)}")]
    shown = [part for part in parts if part is not None]
    return Panel(Group(*shown) if shown else Text("(nothing gathered before it stopped)"), title="Partial findings")


def events_table(events: Sequence[RunEvent], *, since: datetime) -> Table:
    """The run's named events: seconds after it was created, name, what it recorded."""
    table = Table(title="Events", expand=True, **_COMPACT)
    table.add_column("t", justify="right", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=1)
    for event in events:
        at = f"+{(event.created_at - since).total_seconds():.1f}s"
        style = "bold" if event.terminal else ("yellow" if event.name in _WARNING_EVENTS else "")
        table.add_row(at, Text(event.name, style=style), escape(_event_detail(event)))
    return table


_WARNING_EVENTS = frozenset({"budget.warning", "tool.blocked", "loop.halted"})


def _event_detail(event: RunEvent) -> str:
    a = event.attributes
    if event.name == "cost.recorded":
        cost = "price unknown" if a.get("cost_usd") is None else money(Decimal(str(a["cost_usd"])))
        latency = "" if a.get("latency_ms") is None else f", {float(str(a['latency_ms'])):.0f} ms"
        return f"{a.get('model')}: {a.get('input_tokens')} in / {a.get('output_tokens')} out, {cost}{latency}"
    if event.name in ("run.started", "run.resumed"):
        return f"attempt {a.get('attempt')} by {a.get('worker')}"
    if event.terminal:
        cost = money(Decimal(str(a.get("cost_usd") or 0)))
        return f"stop_reason={a.get('stop_reason')}, {a.get('requests')} turns, {cost}"
    return compact_json(a, limit=160)


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
        f"{usage['requests']} turns, {usage['input_tokens']:,} in / {usage['output_tokens']:,} out tokens, "
        f"{usage['tool_calls']} tool calls, {money(run.cost_usd)}{'' if run.cost_known else ' (price unknown)'}, "
        f"{_duration(run)}, attempts {run.attempts}",
    )
    plan = listing(run.plan, numbered=True) if run.plan else Text("(no plan recorded)")
    steps = steps_table(view.steps)
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
    if view.events:
        parts.append(events_table(view.events, since=run.created_at))
    if run.review:
        parts.append(review_panel(run.review))
    if run.report:
        parts.append(report_panel(run.report))
    elif run.partial:
        parts.append(partial_panel(run.partial))
    return Group(*parts)


class LiveProgress:
    """Collects progress events and renders a compact live panel for `ask`.

    Indexing the Python reference (the first offline search, ~20 s) is a progress bar in the panel; a line
    above the panel says when it starts and ends, so that a pipe or a log (where no panel is drawn) also
    says why the first question takes a while.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lines: list[str] = []
        self.plan: list[str] = []
        self.tokens = 0
        self.cost = Decimal(0)
        self.status = "starting"
        self.indexing: ProgressEvent | None = None
        """The latest `index` event while indexing is under way (the bar), None otherwise."""
        self._index_started = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "plan":
            self.plan = event.detail
        elif event.kind in ("search", "fetch", "tool_error", "resume"):
            self.lines.append(event.message)
        elif event.kind == "index":
            self._index(event)
        if event.kind in ("model", "status"):
            self.tokens = event.input_tokens + event.output_tokens
            self.cost = event.cost_usd
            self.status = event.message

    def _index(self, event: ProgressEvent) -> None:
        import time

        if self.indexing is None:
            self._index_started = time.monotonic()
            self.console.print(f"{escape(event.message)}…", style="dim")
        self.indexing = event
        if event.total and event.done is not None and event.done >= event.total:
            self.indexing = None
            seconds = time.monotonic() - self._index_started
            self.console.print(f"{escape(event.message)}: done in {seconds:.1f}s", style="dim")

    @staticmethod
    def index_bar(message: str, done: int, total: int) -> Table:
        """`indexing the Python reference ━━━━━━━━━╸━━━━━━━  52%`: `ask`'s panel and `corpus add --python-docs`."""
        from rich.progress_bar import ProgressBar

        bar = Table.grid(padding=(0, 1))
        bar.add_column(no_wrap=True)
        bar.add_column(max_width=40)  # what the message leaves, up to 40 columns
        bar.add_column(no_wrap=True)
        bar.add_row(
            Text(message),
            ProgressBar(total=max(total, 1), completed=min(done, total)),
            Text(f"{100 * done // max(total, 1):>3}%"),
        )
        return bar

    def __rich__(self) -> Panel:
        body = Text()
        if self.plan:
            body.append("Plan\n", style="bold")
            for number, question in enumerate(self.plan, start=1):
                body.append(f"  {number}. {question}\n")
        for line in self.lines[-8:]:
            body.append(f"• {line}\n")
        status = Text(f"{self.status} · {self.tokens} tokens · ${self.cost:.4f}", style="dim")
        index = self.indexing
        if index is None or index.done is None or index.total is None:
            return Panel(body + status, title="research-agent")
        body.rstrip()
        bar = self.index_bar(index.message, index.done, index.total)
        return Panel(Group(*([body] if body else []), bar, status), title="research-agent")
