"""`runs resume RUN_ID --max-*` (issue 11, point 7): a stopped run continues under larger caps.

The new caps are recorded on the run (its frozen `config.budget`, replaced in the statement that queues
it) with an event step noting the old and new caps; the run then continues from its last committed turn,
so nothing done before the stop is done again, and what it used before still counts.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from agent.api import Runtime
from agent.errors import RunNotFoundError
from agent.settings import Settings
from budgets import Budget
from tests._cli import run_cli as cli
from tests._http_server import LocalHTTPServer
from tests._processes import worker_env
from tests._web import install_web

MODEL = "factory:tests.scripted:crash_model"  # plan, search, fetch, fetch, answer: 5 model requests


def test_a_run_stopped_at_its_turns_cap_resumes_with_more_turns_and_completes(
    settings: Settings, http_server: LocalHTTPServer
) -> None:
    urls = install_web(http_server)
    env = worker_env(settings)
    asked = cli(env, "ask", "What changed in HTTP/3?", "--model", MODEL, "--max-turns", "3", "--json")
    assert asked.returncode == 3, asked.stderr
    stopped = json.loads(asked.stdout)
    run_id = stopped["run_id"]
    assert (stopped["status"], stopped["stop_reason"], stopped["usage"]["requests"]) == ("budget_exceeded", "turns", 3)
    assert stopped["config"]["budget"]["max_turns"] == 3

    # Bad caps are refused before anything changes.
    for bad in (["--max-turns", "0"], ["--max-cost", "lots"], ["--max-cost", "-1"]):
        refused = cli(env, "runs", "resume", run_id, *bad)
        assert refused.returncode == 2, (bad, refused.stdout, refused.stderr)
    unchanged = json.loads(cli(env, "runs", "show", run_id, "--json").stdout)
    assert unchanged["status"] == "budget_exceeded" and unchanged["config"] == stopped["config"]

    resumed = cli(env, "runs", "resume", run_id[:8], "--max-turns", "10")
    assert resumed.returncode == 0, resumed.stderr
    assert f"queued {run_id}" in resumed.stdout and "max_turns 3 → 10" in resumed.stdout

    worked = cli(env, "worker", "--exit-when-idle")
    assert worked.returncode == 0, worked.stderr

    final = json.loads(cli(env, "runs", "show", run_id, "--json").stdout)
    assert (final["status"], final["stop_reason"], final["error"]) == ("completed", "completed", None)
    assert final["config"]["budget"] == {**stopped["config"]["budget"], "max_turns": 10}  # only that cap changed
    assert {k: v for k, v in final["config"].items() if k != "budget"} == {
        k: v for k, v in stopped["config"].items() if k != "budget"
    }
    assert final["usage"]["requests"] == 5 and final["attempts"] == 2  # 3 before the stop, 2 after
    assert {c["url"] for c in final["report"]["citations"]} == set(urls)
    assert [http_server.hits[urlsplit(url).path] for url in urls] == [1, 1]  # nothing fetched twice

    [changed] = [s for s in final["steps"] if s["name"] == "budget_changed"]
    assert changed["kind"] == "event" and changed["ok"] is True
    assert changed["args"] == {"old": {"max_turns": 3}, "new": {"max_turns": 10}}
    assert changed["summary"] == "caps changed on resume: max_turns 3 → 10"
    seqs = [s["seq"] for s in final["steps"]]
    stop_steps = [s["seq"] for s in stopped["steps"]]
    assert seqs[: len(stop_steps)] == stop_steps and changed["seq"] == max(stop_steps) + 1
    assert [s["kind"] for s in final["steps"] if s["seq"] > changed["seq"]].count("model") == 2

    done = cli(env, "runs", "resume", run_id, "--max-turns", "20")
    assert done.returncode == 2 and "is completed; only stopped runs can be resumed" in done.stderr
    shown = cli(env, "runs", "show", run_id)
    assert "budget_changed" in shown.stdout and "turns 5/10" in shown.stdout


def test_resuming_at_an_unchanged_cap_says_which_option_raises_it(
    settings: Settings, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    env = worker_env(settings)
    stopped = json.loads(cli(env, "ask", "What is QUIC?", "--model", MODEL, "--max-turns", "2", "--json").stdout)
    resumed = cli(env, "runs", "resume", stopped["run_id"])
    assert resumed.returncode == 0, resumed.stderr
    assert "stopped at its turns cap, which is unchanged: pass --max-turns" in resumed.stderr


async def test_new_caps_and_the_requeue_are_one_change(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    queued = await runtime.submit("What is QUIC?", model="test", budget=Budget(max_turns=3))
    with pytest.raises(RunNotFoundError, match="is queued; only stopped runs can be resumed"):
        await runtime.resume(queued.id, budget=Budget(max_turns=9))
    view = await runtime.get_run(queued.id)
    assert view.run.config.budget.max_turns == 3 and view.steps == []  # neither the caps nor a step changed

    install_web(http_server)
    from tests.scripted import research_model

    model, _ = research_model()
    result = await runtime.research("What is QUIC?", model=model, budget=Budget(max_turns=2))
    assert result.status == "budget_exceeded"
    same = await runtime.resume(result.run_id, budget=Budget(max_turns=2))  # the caps it has: nothing to note
    assert same.status == "queued" and same.config.budget == Budget(max_turns=2)
    assert [s.name for s in (await runtime.get_run(result.run_id)).steps if s.name == "budget_changed"] == []
