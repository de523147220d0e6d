"""An instant CLI (issue 11, point 2): `--help` and the read-only commands import only what they use.

Each check runs the real entry point (`agent.cli:main`, what `research-agent` calls) in a fresh interpreter
and reads `sys.modules` there afterwards: `--help` of every command must not have imported pydantic-ai,
a provider SDK or logfire (nor our other modules, asyncpg or pydantic-settings: only the commands do);
`runs list|show`, `approvals list`, `kill-switch` and `spend` run against this test's real database
without importing pydantic-ai, a provider SDK or logfire. The timing goal is measured side by side by
bench/cli_startup.py, not here. Also here: the lazy public API (`agent`, `tools`, `budgets`) still gives
every name of its `__all__`, and the usage JSON the light path prints equals pydantic-ai's own.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from pydantic_ai.usage import RunUsage

import agent
import budgets
import tools
from agent.api import Runtime
from agent.durable.store import stored_usage, usage_from_json, usage_to_json
from agent.durable.store.records import USAGE_DEFAULTS
from agent.settings import Settings
from tests._http_server import LocalHTTPServer
from tests._processes import ROOT, worker_env
from tests._web import install_web
from tools import ToolPolicyOverrides

AGENT_STACK = ("pydantic_ai", "openai", "anthropic", "logfire")
"""What only the commands that run the agent may import."""
DATABASE_STACK = ("asyncpg", "pydantic_settings")
"""What `--help` has no use for either (typer itself imports pydantic to convert parameters)."""

HELP_PROBE = """
import json, sys
import typer.main
from agent.cli import app, main

def paths(command, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from paths(sub, (*prefix, name))

helped = []
for path in paths(typer.main.get_command(app)):
    sys.argv = ["research-agent", *path, "--help"]
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None), (path, exc.code)
    helped.append(" ".join(path))
print("PROBE " + json.dumps({"helped": helped, "modules": sorted(sys.modules)}), file=sys.stderr)
"""

COMMANDS_PROBE = """
import contextlib, io, json, sys
from agent.cli import main

results = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["research-agent", *args]
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    results.append({"args": args, "exit": int(code), "stdout": captured.getvalue(), "modules": sorted(sys.modules)})
print(json.dumps(results))
"""


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_help_of_every_command_imports_neither_the_agent_nor_the_database_stack() -> None:
    probe = _python(HELP_PROBE)
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stderr.rsplit("PROBE ", 1)[1])
    helped = set(report["helped"])
    expected = {"", "ask", "submit", "worker", "spend", "runs", "runs list", "runs show", "runs export"}
    expected |= {"approvals list", "approvals approve", "corpus add", "kill-switch on", "kill-switch status"}
    assert expected <= helped, sorted(helped)
    assert probe.stdout.count("Usage:") == len(helped)  # each `--help` really printed its help
    loaded = [name for name in (*AGENT_STACK, *DATABASE_STACK) if name in report["modules"]]
    assert loaded == [], f"`--help` imported {loaded}"
    ours = sorted(name for name in report["modules"] if name.split(".")[0] in ("agent", "tools", "budgets"))
    # Of ours: the CLI, plus the packages' lazy-export machinery (`tools.lazy`), which imports no module it exports.
    allowed = ("agent", "agent.cli", "tools", "tools.lazy")
    assert all(name in allowed or name.startswith("agent.cli.") for name in ours), ours
    assert "agent.cli.render" not in ours, "rendering is for commands that ran"


NEEDS_APPROVAL = ToolPolicyOverrides(tools={"fetch_url": "require_approval"})


async def test_read_only_commands_run_against_the_database_without_the_agent_stack(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    rt = Runtime(pool=runtime.pool, settings=settings.model_copy(update={"tool_policy": NEEDS_APPROVAL}))
    parked = await rt.research("What changed in HTTP/3 compared to HTTP/2?", model="factory:tests.scripted:crash_model")
    assert parked.status == "awaiting_approval"  # steps, policy audit and a pending approval to show
    [pending] = await rt.approvals.find(run_id=parked.run_id)
    run_id = parked.run_id

    commands = [
        ["runs", "list"],
        ["runs", "list", "--json"],
        ["runs", "show", run_id],
        ["runs", "show", run_id[:8], "--json"],
        ["approvals", "list"],
        ["approvals", "list", "--json"],
        ["spend"],
        ["spend", "--json"],
        ["kill-switch", "status"],
        ["kill-switch", "on", "--reason", "drill"],
        ["kill-switch", "status", "--json"],
        ["kill-switch", "off"],
    ]
    env = worker_env(settings, RESEARCH_AGENT_DAILY_CAP_USD="5", COLUMNS="200")  # tables unwrapped
    probe = _python(COMMANDS_PROBE, json.dumps(commands), env=env)
    assert probe.returncode == 0, probe.stderr
    results = {" ".join(r["args"]): r for r in json.loads(probe.stdout)}
    assert "Traceback" not in probe.stderr, probe.stderr

    for command, result in results.items():
        loaded = [name for name in AGENT_STACK if name in result["modules"]]
        assert loaded == [], f"`{command}` imported {loaded}"
    # They did their work: the same answers the full runtime gives.
    assert [r["run_id"] for r in json.loads(results["runs list --json"]["stdout"])] == [run_id]
    assert run_id[:8] in results["runs list"]["stdout"] and "awaiting_approval" in results["runs list"]["stdout"]
    shown = results[f"runs show {run_id}"]["stdout"]
    for expected in ("Steps", "record_plan", "web_search", "Human approval", pending.id):
        assert expected in shown, shown
    detail = json.loads(results[f"runs show {run_id[:8]} --json"]["stdout"])
    view = await rt.get_run(run_id)
    assert detail["run_id"] == run_id and len(detail["steps"]) == len(view.steps) > 0
    assert detail["usage"] == usage_to_json(view.run.usage) and detail["usage"]["requests"] > 0
    assert [a["id"] for a in detail["approvals"]] == [pending.id]
    assert [a["id"] for a in json.loads(results["approvals list --json"]["stdout"])] == [pending.id]
    assert pending.id in results["approvals list"]["stdout"]
    assert "of the $5 daily cap" in results["spend"]["stdout"]
    assert json.loads(results["spend --json"]["stdout"])["daily_cap_usd"] == "5"
    assert results["kill-switch status"]["exit"] == 0 and "off" in results["kill-switch status"]["stdout"]
    switched = json.loads(results["kill-switch status --json"]["stdout"])
    assert results["kill-switch status --json"]["exit"] == 5 and switched["on"] and switched["reason"] == "drill"
    assert results["kill-switch off"]["exit"] == 0 and "off" in results["kill-switch off"]["stdout"]


# --- the lazy public API ---------------------------------------------------------------------------


@pytest.mark.parametrize("package", [agent, tools, budgets], ids=lambda p: p.__name__)
def test_every_public_name_resolves_to_what_it_names(package: ModuleType) -> None:
    names = list(package.__all__)
    assert names and set(names) <= set(dir(package))
    for name in names:
        value = getattr(package, name)
        assert not isinstance(value, ModuleType), f"{package.__name__}.{name} is a module"
        if isinstance(value, type) or inspect.isfunction(value):  # not aliases and constants
            assert value.__name__ == name, f"{package.__name__}.{name} resolves to {value.__name__}"
    with pytest.raises(AttributeError, match="no_such_name"):
        package.no_such_name  # noqa: B018  (the attribute access is the test)


def test_importing_the_public_api_loads_nothing_until_a_name_is_used() -> None:
    probe = _python(
        "import json, sys, agent, tools, budgets\n"
        "before = sorted(sys.modules)\n"
        "import agent.replay\n"  # binds the submodule on the package: the function `agent.replay` must win
        "from agent import *\n"
        "from agent import replay, research\n"
        "print(json.dumps({'before': before, 'replay': replay.__module__ + '.' + replay.__name__,"
        " 'research': research.__module__ + '.' + research.__name__}))"
    )
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)
    loaded = [name for name in (*AGENT_STACK, *DATABASE_STACK) if name in report["before"]]
    assert loaded == [], f"`import agent, tools, budgets` imported {loaded}"
    assert report["replay"] == "agent.replay.replay" and report["research"] == "agent.api.research"


# --- the usage JSON the light path prints ------------------------------------------------------------


def test_stored_usage_matches_pydantic_ai_run_usage() -> None:
    assert list(USAGE_DEFAULTS) == [f.name for f in dataclasses.fields(RunUsage)], "RunUsage changed: update it"
    assert stored_usage({}) == usage_to_json(RunUsage())  # a queued run stores `{}`
    assert list(stored_usage({})) == list(usage_to_json(RunUsage()))  # same order: the same JSON text

    full = RunUsage(requests=3, tool_calls=2, input_tokens=1200, output_tokens=340, details={"reasoning": 7})
    full.cost = Decimal("0.00215")
    assert stored_usage(usage_to_json(full)) == usage_to_json(full)
    old_row: dict[str, Any] = {"requests": 2, "input_tokens": 10, "cost": 0.5, "retired_field": 1}
    assert stored_usage(old_row) == usage_to_json(usage_from_json(old_row))


ON_DEMAND = ("openai", "anthropic", "trafilatura")
"""A provider SDK is imported when a model of that provider is built, the HTML extractor at the first page:
together about a second that an offline worker or `ask` does not pay (bench/cli_startup.py times it)."""


def test_a_worker_process_imports_no_provider_sdk_and_no_extractor_until_it_needs_one() -> None:
    probe = _python(
        "import json, sys\n"
        "import agent.durable.worker, agent.cli.research\n"
        "from agent.models import resolve_model, retrying_http_client\n"
        "from agent.settings import Settings\n"
        "before = sorted(sys.modules)\n"
        "resolve_model('offline', settings=Settings(), http_client=retrying_http_client(Settings()))\n"
        "offline = sorted(sys.modules)\n"
        "from tools import extract_main_text\n"
        "extract_main_text('<html><body><article><p>' + 'QUIC runs over UDP. ' * 20 + '</p></article></body></html>',"
        " url='https://example.org/')\n"
        "print(json.dumps({'before': before, 'offline': offline, 'after': sorted(sys.modules)}))\n"
    )
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    for stage in ("before", "offline"):
        loaded = [name for name in ON_DEMAND if name in report[stage]]
        assert loaded == [], f"{stage}: {loaded}"
    assert "trafilatura" in report["after"], "extracting a page imports the extractor"
