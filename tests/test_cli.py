"""The command line, as a user runs it: real database, the fixture web.

Commands run in this process through typer's `CliRunner` (tests/_cli.py): the same arguments,
environment, output and exit codes as the installed `research-agent`, without importing the whole stack
again for every command. Whether the embedded server is reused needs real processes, and has them.
"""

from __future__ import annotations

import json
import os
import re
import signal
from decimal import Decimal
from pathlib import Path

from agent.settings import Settings
from tests._cli import run_cli as cli
from tests._cli import run_cli_process
from tests._http_server import LocalHTTPServer
from tests._processes import worker_env
from tests._web import install_web

MODEL = "factory:tests.scripted:crash_model"


def test_ask_json_prints_a_cited_report_and_runs_show_lists_every_step(
    settings: Settings, http_server: LocalHTTPServer
) -> None:
    urls = install_web(http_server)
    env = worker_env(settings)

    asked = cli(env, "ask", "What changed in HTTP/3?", "--model", MODEL, "--json")
    assert asked.returncode == 0, asked.stderr
    data = json.loads(asked.stdout)
    assert data["status"] == "completed" and data["stop_reason"] == "completed"
    assert {c["url"] for c in data["report"]["citations"]} == set(urls)
    assert data["usage"]["requests"] == 5 and data["cost_usd"] is not None
    assert [s["kind"] for s in data["steps"]].count("model") == 5

    shown = cli(env, "runs", "show", data["run_id"][:8], "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["run_id"] == data["run_id"]
    assert detail["plan"] and detail["steps"] == data["steps"]
    fetch = next(s for s in detail["steps"] if s["name"] == "fetch_url")
    assert fetch["args"]["url"] in urls and fetch["latency_ms"] is not None

    human = cli(env, "runs", "show", data["run_id"])
    assert human.returncode == 0
    for expected in ("Plan", "Steps", "record_plan", "web_search", "fetch_url", "completed"):
        assert expected in human.stdout

    listed = cli(env, "runs", "list", "--json")
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [data["run_id"]]


def test_submit_then_worker_processes_the_queue(settings: Settings, http_server: LocalHTTPServer) -> None:
    install_web(http_server)
    env = worker_env(settings)
    submitted = cli(env, "submit", "What is QUIC?", "--model", MODEL)
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    assert len(run_id) == 36

    worked = cli(env, "worker", "--concurrency", "8", "--exit-when-idle")
    assert worked.returncode == 0, worked.stderr
    # A job runner's log: one line when the run is claimed, one when it is done (status, duration, cost).
    cost = Decimal(json.loads(cli(env, "runs", "show", run_id, "--json").stdout)["cost_usd"])
    log = worked.stderr.splitlines()
    assert f'claimed   {run_id[:8]}  "What is QUIC?"  running  attempt 1  $0.0000' in log, worked.stderr
    [finished] = [line for line in log if line.startswith("finished")]
    expected = rf'finished  {run_id[:8]}  "What is QUIC\?"  completed  attempt 1  \d+\.\ds  \${cost:.4f}'
    assert cost > 0 and re.fullmatch(expected, finished), worked.stderr

    listed = cli(env, "runs", "list")
    assert run_id[:8] in listed.stdout and "completed" in listed.stdout


def test_bad_input_gets_a_clear_error_and_an_exit_code(settings: Settings) -> None:
    env = worker_env(settings)
    empty = cli(env, "ask", "   ", "--model", MODEL)
    assert empty.returncode == 5 and "the question is empty" in empty.stderr

    unknown = cli(env, "runs", "show", "0123456789")
    assert unknown.returncode == 2 and "no run with id" in unknown.stderr

    bad_setting = cli({**env, "RESEARCH_AGENT_FETCH_MAX_BYTES": "lots"}, "runs", "list")
    assert bad_setting.returncode == 2 and "RESEARCH_AGENT_FETCH_MAX_BYTES" in bad_setting.stderr

    # A model that cannot be resolved is a configuration error before any run exists (it used to fail a run).
    bad_model = cli(env, "ask", "What is QUIC?", "--model", "factory:no.such.module:thing", "--json")
    assert bad_model.returncode == 2, bad_model.stderr
    assert "error: --model 'factory:no.such.module:thing': cannot import" in bad_model.stderr
    assert bad_model.stdout == "" and json.loads(cli(env, "runs", "list", "--json").stdout) == []


def test_embedded_postgres_starts_once_under_the_data_dir_and_is_reused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_AGENT_") and k != "DATABASE_URL"}
    env.update({"RESEARCH_AGENT_DATA_DIR": str(tmp_path / "data"), "LOGFIRE_IGNORE_NO_CONFIG": "1"})
    pid_file = tmp_path / "data" / "pgdata" / "postmaster.pid"
    try:
        first = run_cli_process(env, "submit", "Is the embedded server reused?")
        assert first.returncode == 0, first.stderr
        server_pid = pid_file.read_text().splitlines()[0]

        second = run_cli_process(env, "runs", "list", "--json")
        assert second.returncode == 0, second.stderr
        assert [r["run_id"] for r in json.loads(second.stdout)] == [first.stdout.strip()]
        assert pid_file.read_text().splitlines()[0] == server_pid  # the same server answered
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGINT)


def test_runs_export_writes_a_replayable_trace(settings: Settings, http_server: LocalHTTPServer) -> None:
    from agent.replay import RunTrace

    install_web(http_server)
    env = worker_env(settings)
    asked = json.loads(cli(env, "ask", "What is QUIC?", "--model", MODEL, "--json").stdout)
    exported = cli(env, "runs", "export", asked["run_id"])
    assert exported.returncode == 0, exported.stderr
    trace = RunTrace.model_validate_json(exported.stdout)
    assert trace.run_id == asked["run_id"] and trace.question == "What is QUIC?"
    assert [c.tool_name for c in trace.tool_calls][:2] == ["record_plan", "web_search"]
    assert len(trace.responses()) == asked["usage"]["requests"]
