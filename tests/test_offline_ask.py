"""The README's first command, as a new user runs it: no API key, no network, embedded defaults.

The README command itself runs as a real process on an empty database, with the network guard loaded at
start-up (tests/_no_network): that first question indexes the Python reference, as on a new install. The
other commands run in process (tests/_cli.py) under the same guard; those of the other tests run on clones
of the session's template in which the Python reference is already indexed (tests/conftest.py), as after
a user's first question.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests._cli import CliResult, run_cli
from tests._no_network.sitecustomize import refused_network
from tests._processes import ROOT

README_QUESTION = "What does the nonlocal statement do?"


def _offline_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RESEARCH_AGENT_", "OPENAI_", "ANTHROPIC_", "LOGFIRE_")) and k != "DATABASE_URL"
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "RESEARCH_AGENT_DATA_DIR": str(tmp_path / "data"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "_no_network"), str(ROOT)]),
            "RA_NETWORK_LOG": str(tmp_path / "network.log"),
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
        }
    )
    return env


def _offline_cli(env: dict[str, str], tmp_path: Path, *args: str) -> CliResult:
    with refused_network(tmp_path / "network.log"):
        return run_cli(env, *args)


def test_readme_command_answers_offline_with_verified_citations(database_url: str, tmp_path: Path) -> None:
    env = _offline_env(database_url, tmp_path)
    command = [sys.executable, "-m", "agent", "ask", README_QUESTION]

    human = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert human.returncode == 0, human.stderr
    assert "offline model" in human.stdout
    assert "corpus://python-docs/topics/nonlocal" in human.stdout and "nonlocal" in human.stdout.lower()

    machine = _offline_cli(env, tmp_path, "ask", README_QUESTION, "--json")  # same database, now indexed
    assert machine.returncode == 0, machine.stderr
    data = json.loads(machine.stdout)
    assert data["status"] == "completed" and data["model"] == "offline"
    assert data["config"]["search_backend"] == "corpus"
    citations = data["report"]["citations"]
    assert citations and all(c["url"].startswith("corpus://python-docs/") for c in citations)
    assert any(c["url"] == "corpus://python-docs/topics/nonlocal" for c in citations)
    assert all(c["see_also"].startswith("https://docs.python.org/") for c in citations)
    assert any("nonlocal" in c["quote"].lower() for c in citations)
    assert data["usage"]["input_tokens"] > 0 and data["cost_usd"] == "0"
    assert data["cost_known"] is True
    # Nothing tried to leave the machine.
    network_log = tmp_path / "network.log"
    assert not network_log.exists(), network_log.read_text()


def test_the_network_guard_really_blocks(tmp_path: Path) -> None:
    env = _offline_env("postgresql://unused", tmp_path)
    # A name lookup (refused before any packet is sent; `.invalid` never resolves anyway).
    probe = (
        "import socket\ntry:\n    socket.getaddrinfo('docs.example.invalid', 443)\nexcept OSError as e:\n    print(e)"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=30)
    assert "network disabled" in result.stdout
    assert "docs.example.invalid" in (tmp_path / "network.log").read_text()


def test_corpus_add_then_ask_offline_about_my_own_docs(docs_database_url: str, tmp_path: Path) -> None:
    env = _offline_env(docs_database_url, tmp_path)
    docs = tmp_path / "my-docs"
    (docs / "guides").mkdir(parents=True)
    (docs / "guides" / "deploy.md").write_text(
        "# Deploying Frobnicator\n\nThe frobnicator service is deployed with the blue-green strategy. "
        "Each release is rolled out to the idle colour first and switched over after health checks pass.\n"
    )
    (docs / "notes.txt").write_text("Lunch is served at noon on Fridays in the big kitchen.\n")
    (docs / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (docs / "broken.html").write_bytes(b"\xff\xfe\x00<html>\x00\x00")

    def run(*args: str) -> CliResult:
        return _offline_cli(env, tmp_path, *args)

    added = run("corpus", "add", str(docs))
    assert added.returncode == 1  # the broken file is reported, and the rest is indexed
    assert "2 added" in added.stdout and "broken.html" in added.stderr
    again = run("corpus", "add", str(docs))
    assert "0 added" in again.stdout and "2 unchanged" in again.stdout

    listed = json.loads(run("corpus", "list", "--json").stdout)
    assert {c["name"]: c["documents"] for c in listed}["my-docs"] == 2

    asked = run("ask", "How is the frobnicator service deployed?", "--json")
    assert asked.returncode == 0, asked.stderr
    report = json.loads(asked.stdout)["report"]
    assert report["citations"][0]["url"] == "corpus://my-docs/guides/deploy.md"
    assert "blue-green" in report["citations"][0]["quote"]
    assert not (tmp_path / "network.log").exists()


def test_off_topic_question_gets_an_honest_answer_offline(docs_database_url: str, tmp_path: Path) -> None:
    env = _offline_env(docs_database_url, tmp_path)
    asked = _offline_cli(env, tmp_path, "ask", "Who won the 1987 Tour de France cycling race?", "--json")
    assert asked.returncode == 0, asked.stderr
    report = json.loads(asked.stdout)["report"]
    assert report["citations"] == []
    assert "could not find" in report["answer"].lower()
    assert not (tmp_path / "network.log").exists()
