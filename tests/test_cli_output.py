"""What people read, at 80 columns (issue 11, point 6), and the app's own options (point 7).

A real run with realistic data (a long question, long arguments, a failed fetch, many steps, stopped by
its turns cap with partial findings) is rendered by the real `runs list` and `runs show` in a fresh
interpreter with COLUMNS=80: no line may be wider than 80 cells, and the texts people look for must be
there (compact JSON arguments, not Python reprs; partial findings as text; money as `$0.0123`). The table
of runs is also rendered into fixed-width consoles directly, to see which columns give way and when.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.metadata import version

import pytest
from rich.cells import cell_len
from rich.console import Console

from agent.api import ResearchResult, Runtime
from agent.cli.render import RunsTable, partial_panel
from agent.durable.store import RunRecord
from agent.money import money, plain_money
from agent.settings import Settings
from budgets import Budget
from tests._cli import run_cli as cli
from tests._http_server import LocalHTTPServer
from tests._processes import ROOT, worker_env
from tests._web import install_web
from tests.scripted import scripted_calls
from tests.test_cli_startup import COMMANDS_PROBE

QUESTION = (
    "Compare how HTTP/3 over QUIC and HTTP/2 over TCP behave under packet loss: head-of-line blocking, "
    "connection setup and the TLS handshake, stream prioritisation, and what each means for a page "
    "that loads two hundred small resources over a lossy mobile link"
)
SLUG = "an-unusually-long-article-slug-about-quic-streams-and-head-of-line-blocking-in-practice"
PAGES = {
    f"/articles/{n}/{SLUG}-{n}": (f"QUIC article {n}", f"QUIC stream {n} is independent of the others. " * 4)
    for n in range(1, 4)
}
WIDTH = 80


def _lines_fit(text: str, width: int = WIDTH) -> None:
    wide = [line for line in text.splitlines() if cell_len(line) > width]
    assert wide == [], "\n".join(wide)


async def _stopped_run(runtime: Runtime, http_server: LocalHTTPServer) -> ResearchResult:
    """Plan, one long search, fetches of long URLs (one of them a 404), stopped by its turns cap."""
    urls = install_web(http_server, pages=PAGES)
    missing = http_server.url(f"/articles/404/{SLUG}?utm_source=newsletter&utm_campaign=" + "x" * 80)
    calls: list[tuple[str, dict[str, object]]] = [
        ("record_plan", {"sub_questions": [f"{QUESTION} (part {n})" for n in range(1, 4)]}),
        ("web_search", {"query": QUESTION[:380], "max_results": 5}),
        *[("fetch_url", {"url": url}) for url in urls],
        ("fetch_url", {"url": missing}),
        ("fetch_url", {"url": urls[0] + "#again"}),
    ]
    result = await runtime.research(QUESTION, model=scripted_calls(calls), budget=Budget(max_turns=6))
    assert (result.status, result.stop_reason) == ("budget_exceeded", "turns"), result.error
    assert result.partial is not None and len(result.partial.sources) == 3
    return result


def _probe(settings: Settings, commands: list[list[str]]) -> dict[str, dict[str, object]]:
    probe = subprocess.run(
        [sys.executable, "-c", COMMANDS_PROBE, json.dumps(commands)],
        cwd=ROOT,
        env=worker_env(settings, COLUMNS=str(WIDTH)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert "Warning" not in probe.stderr, probe.stderr
    return {" ".join(r["args"]): r for r in json.loads(probe.stdout)}


async def test_runs_list_and_show_fit_80_columns_with_long_args_and_many_steps(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer
) -> None:
    result = await _stopped_run(runtime, http_server)
    view = await runtime.get_run(result.run_id)
    assert len(view.steps) >= 12 and any(not s.ok for s in view.steps if s.name == "fetch_url")
    run_id = result.run_id

    results = _probe(settings, [["runs", "list"], ["runs", "show", run_id], ["runs", "show", run_id, "--json"]])
    listed = str(results["runs list"]["stdout"])
    _lines_fit(listed)
    for expected in (run_id[:8], "budget_exceeded", "(turns)", "Compare how HTTP/3 over", "…", "s ago", "$0.0"):
        assert expected in listed, listed
    assert QUESTION[:60] not in listed  # cut to what fits

    shown = str(results[f"runs show {run_id}"]["stdout"])
    _lines_fit(shown)
    for expected in ('{"query":"Compare how', '{"url":"http://', "fetch_url ✗", "record_plan", "…"):
        assert expected in shown, shown
    assert "{'" not in shown and "Decimal(" not in shown  # no Python reprs
    partial = shown[shown.index("Partial findings") :]
    assert "Plan" in partial and "Sources" in partial and "1. Compare how HTTP/3" in partial
    assert partial.count("/articles/") >= 3  # each source on a line of its own
    costs = re.findall(r"\$\d[\d,]*\.\d+", shown)
    assert costs and all(re.fullmatch(r"\$\d[\d,]*\.\d{4,8}", c) for c in costs), costs
    assert not re.search(r"\dE-\d", shown)

    detail = json.loads(str(results[f"runs show {run_id} --json"]["stdout"]))
    assert detail["cost_usd"] == format(view.run.cost_usd, "f") and "E" not in detail["cost_usd"]
    assert detail["partial"]["sources"] == result.partial.sources  # the JSON keeps its shape


async def test_ask_prints_partial_findings_as_text_and_money_as_dollars(
    settings: Settings, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    env = worker_env(settings)
    asked = cli(env, "ask", "What is QUIC?", "--model", "factory:tests.scripted:crash_model", "--max-turns", "3")
    assert asked.returncode == 3, asked.stderr
    assert "Partial findings" in asked.stdout and "Sources" in asked.stdout and "Plan" in asked.stdout
    assert "{'plan'" not in asked.stdout and "'sources':" not in asked.stdout
    summary = asked.stdout.strip().splitlines()[-1]
    assert re.search(r"· \$0\.\d{4,8}$", summary), summary


def _records(record: RunRecord, now: datetime) -> list[RunRecord]:
    """Variations on a stored run: the widest status, long and short questions, recent and older."""
    return [
        replace(
            record, status="awaiting_approval", stop_reason="approval_required", created_at=now - timedelta(seconds=42)
        ),
        replace(record, created_at=now - timedelta(minutes=3, seconds=30)),
        replace(
            record, status="completed", stop_reason="completed", question="Short?", created_at=now - timedelta(hours=5)
        ),
        replace(
            record,
            status="failed",
            stop_reason="provider_error",
            question="x" * 300,
            created_at=now - timedelta(days=2),
        ),
    ]


def _rendered(runs: list[RunRecord], *, width: int, now: datetime) -> tuple[list[str], str]:
    console = Console(width=width, record=True)
    console.print(RunsTable(runs, now=now))
    text = console.export_text()
    _lines_fit(text, width)
    return text.splitlines()[1].split(), text


async def test_the_runs_table_gives_the_question_what_the_console_leaves(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    result = await _stopped_run(runtime, http_server)
    record = (await runtime.get_run(result.run_id)).run
    now = datetime.now(UTC)
    runs = _records(record, now)

    header, text = _rendered(runs, width=WIDTH, now=now)
    assert header == ["id", "status", "question", "tokens", "cost", "created"]  # duration and turns gave way
    for expected in (
        "awaiting_approval",
        "(turns)",
        "(provider_error)",
        "Short?",
        "42s ago",
        "3m ago",
        "5h ago",
        "2d ago",
    ):
        assert expected in text, text
    assert "(approval_required)" not in text and "(completed)" not in text  # the status says it
    assert "x" * 20 + "…" in text and "x" * 60 not in text and "Compare how HTTP/3" in text

    header, text = _rendered(runs, width=200, now=now)
    assert header == ["id", "status", "question", "turns", "tokens", "cost", "duration", "created"]
    assert "x" * 59 + "…" in text and QUESTION[:59] + "…" in text  # up to 60 characters of a question

    # Wider values leave less room: tokens give way too, and the question still gets its minimum.
    old = replace(record, cost_usd=Decimal("1234.5"), elapsed_seconds=3599.95, created_at=now - timedelta(days=45))
    header, text = _rendered([*runs, old], width=WIDTH, now=now)
    assert header == ["id", "status", "question", "cost", "created"]
    assert f"{old.created_at.astimezone():%Y-%m-%d}" in text and "$1,234.5000" in text
    assert QUESTION[: RunsTable.QUESTION_MIN - 1] in text  # the minimum, cut with `…`, at least


async def test_costs_read_as_amounts_in_records_results_and_for_people(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    queued = await runtime.submit("What is QUIC?", model="test")
    assert queued.cost_usd == 0 and "cost_usd=$0.0000," in repr(queued)  # was Decimal('0E-8')
    result = await _stopped_run(runtime, http_server)
    stored = (await runtime.get_run(result.run_id)).run
    assert result.cost_usd == stored.cost_usd > 0
    assert f"cost_usd={money(result.cost_usd)}," in repr(result) and "E" not in str(result.cost_usd)
    assert f"cost_usd={money(stored.cost_usd)}," in repr(stored)
    assert str(result.cost_usd) == format(result.cost_usd, "f") and not str(result.cost_usd).endswith("0")

    assert [plain_money(Decimal(v)) for v in ("0E-8", "0.00210000", "100.00000000", "12.34500000")] == [
        Decimal("0"),
        Decimal("0.0021"),
        Decimal("100"),
        Decimal("12.345"),
    ]
    assert repr(plain_money(Decimal("100.00000000"))) == "Decimal('100')"
    assert [money(v) for v in (Decimal("0E-8"), Decimal("0.01234567"), Decimal("0.00002125"), None)] == [
        "$0.0000",
        "$0.0123",
        "$0.00002125",
        "-",
    ]
    assert money(Decimal("1234.5")) == "$1,234.5000"


def test_partial_findings_render_as_text() -> None:
    console = Console(width=WIDTH, record=True)
    console.print(
        partial_panel({"plan": ["What is QUIC?", "Why UDP?"], "sources": ["https://example.org/quic"], "notes": []})
    )
    text = console.export_text()
    assert "1. What is QUIC?" in text and "2. Why UDP?" in text and "- https://example.org/quic" in text
    assert "Notes" not in text and "{" not in text
    empty = Console(width=WIDTH, record=True)
    empty.print(partial_panel({"plan": [], "sources": [], "notes": []}))
    assert "nothing gathered" in empty.export_text()


async def test_runs_list_filters_by_status_and_refuses_unknown_ones(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer
) -> None:
    stopped = await _stopped_run(runtime, http_server)
    queued = await runtime.submit("What is QUIC?", model="test")
    env = worker_env(settings)

    only = cli(env, "runs", "list", "--status", "budget_exceeded", "--json")
    assert only.returncode == 0, only.stderr
    assert [r["run_id"] for r in json.loads(only.stdout)] == [stopped.run_id]
    both = cli(env, "runs", "list", "-s", "queued", "-s", "budget_exceeded", "--limit", "5", "--json")
    assert [r["run_id"] for r in json.loads(both.stdout)] == [queued.id, stopped.run_id]
    limited = cli(env, "runs", "list", "-n", "1", "--json")
    assert [r["run_id"] for r in json.loads(limited.stdout)] == [queued.id]
    none = cli(env, "runs", "list", "--status", "killed")
    assert none.returncode == 0 and "no runs" in none.stdout

    bad = cli(env, "runs", "list", "--status", "done")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "unknown --status 'done'" in bad.stderr and "budget_exceeded" in bad.stderr


def test_version_debug_and_completion_options(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # typer asks shellingham which shell runs us, from the process tree: under pytest-xdist that is whatever
    # started the suite, and one run found none ("Shell  not supported"). A user types this in bash.
    import shellingham

    monkeypatch.setattr(shellingham, "detect_shell", lambda: ("bash", "/bin/bash"))
    env = worker_env(settings)
    shown = cli(env, "--version")
    assert (shown.returncode, shown.stdout) == (0, f"research-agent {version('research-agent')}\n")

    plain = cli(env, "runs", "show", "0123456789")
    debug = cli(env, "--debug", "runs", "show", "0123456789")
    assert plain.returncode == debug.returncode == 2
    assert "no run with id" in plain.stderr and "Traceback" not in plain.stderr
    assert "no run with id" in debug.stderr and "Traceback" in debug.stderr and "RunNotFoundError" in debug.stderr

    helped = cli(env, "--help")
    for option in ("--version", "--debug", "--install-completion", "--show-completion"):
        assert option in helped.stdout, helped.stdout
    completion = cli(env, "--show-completion", "bash")
    assert completion.returncode == 0 and "complete" in completion.stdout and "COMP_WORDS" in completion.stdout


async def test_a_run_waiting_for_approval_shows_at_80_columns(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer
) -> None:
    from agent.cli.render import run_detail
    from tools import ToolPolicyOverrides

    install_web(http_server, pages=PAGES)
    policy = ToolPolicyOverrides(tools={"fetch_url": "require_approval"})
    rt = Runtime(pool=runtime.pool, settings=settings.model_copy(update={"tool_policy": policy}))
    parked = await rt.research(QUESTION, model="factory:tests.scripted:crash_model")
    assert parked.status == "awaiting_approval"
    [pending] = await rt.approvals.find(run_id=parked.run_id)

    console = Console(width=WIDTH, record=True)
    console.print(run_detail(await rt.get_run(parked.run_id)))
    text = console.export_text()
    _lines_fit(text)
    for expected in ("Human approval", pending.id, "fetch_url", "pending", "awaiting_approval", "web_search"):
        assert expected in text, text
