"""`python -m evals --against REF`: the base revision runs in a git worktree, its own code, in one job.

The project (as it is in this checkout, committed files and new ones) is copied into a new git
repository and committed as the base; then the research prompt is edited in the copy's working tree,
which is what a pull request that changes the prompt looks like. The offline model never reads the
prompt, so the A/B must say that the change was not evaluated, and `--require-live` must fail on it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tests._processes import wait_for

ROOT = Path(__file__).resolve().parent.parent


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def _copy_project(target: Path) -> None:
    files = _git(ROOT, "ls-files", "-co", "--exclude-standard").splitlines()
    for name in files:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    _git(target, "init", "-q", "-b", "main")
    _git(target, "add", "-A")
    _git(target, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "base")


def _tiny_dataset(path: Path) -> None:
    body = "The widget cache keeps rendered widgets for 300 seconds by default."
    case = {
        "name": "widget-ttl",
        "inputs": {
            "question": "How long does the widget cache keep rendered widgets by default?",
            "collection": "ab-worktree",
            "documents": [{"url": "corpus://ab-worktree/cache.md", "title": "Widget cache", "body": body}],
        },
        "metadata": {"key_facts": ["300 seconds"]},
    }
    data = {"name": "ab_tiny", "evaluators": ["CitationGrounding", "KeyFactRecall"], "cases": [case]}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def test_a_prompt_change_under_the_offline_model_is_flagged_not_evaluated(tmp_path: Path, postgres_url: str) -> None:
    project = tmp_path / "project"
    _copy_project(project)
    base_commit = _git(project, "rev-parse", "HEAD")
    prompt = project / "agent" / "prompts" / "research.md"
    prompt.write_text(prompt.read_text(encoding="utf-8") + "\nAlways answer in haiku.\n", encoding="utf-8")
    dataset = project / "datasets" / "ab_tiny.yaml"
    _tiny_dataset(dataset)
    _git(project, "add", "datasets/ab_tiny.yaml")  # the dataset is on both sides; only the prompt differs
    _git(project, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "dataset")
    base = _git(project, "rev-parse", "HEAD")
    assert base != base_commit
    reports = tmp_path / "reports"
    env = {
        **os.environ,
        "DATABASE_URL": postgres_url,
        "LOGFIRE_IGNORE_NO_CONFIG": "1",
        "PYTHONPATH": str(project),
    }
    env.pop("RESEARCH_AGENT_DATABASE_URL", None)
    command = [sys.executable, "-m", "evals", "--against", "HEAD", "--dataset", str(dataset), "--repeat", "2"]
    completed = subprocess.run(
        [*command, "--require-live", "--report-dir", str(reports)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "Traceback" not in output
    data = json.loads((reports / "ab-report.json").read_text(encoding="utf-8"))
    assert data["prompt_unevaluated"] is True
    assert data["failures"] == [
        "--require-live: the research prompt changed and no model that reads prompts judged the change"
    ]
    sides = data["sides"]
    assert sides["base"]["revision"].startswith(f"HEAD @ {base[:12]}")
    assert sides["base"]["prompt_version"] != sides["current"]["prompt_version"]
    assert sides["base"]["reads_prompt"] is sides["current"]["reads_prompt"] is False
    assert sides["base"]["dataset_versions"] == sides["current"]["dataset_versions"]  # same cases both sides
    cases = data["datasets"][0]["cases"]
    assert [len(c["base"]["answers"]) for c in cases] == [len(c["current"]["answers"]) for c in cases] == [2]
    markdown = (reports / "ab-report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# A/B eval: FAILED")
    assert "the prompt change was NOT evaluated" in markdown
    assert _git(project, "worktree", "list").count("\n") == 0  # the temporary worktree was removed


def _children_running(marker: str) -> list[int]:
    """Processes whose command line mentions `marker` (the base side's `python -m evals` in the worktree)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in command and "--baseline-dir" in command:
                found.append(int(entry.name))
    return found


def test_ctrl_c_stops_both_sides_and_removes_the_worktree(tmp_path: Path, postgres_url: str) -> None:
    project = tmp_path / "project"
    _copy_project(project)
    env = {**os.environ, "DATABASE_URL": postgres_url, "LOGFIRE_IGNORE_NO_CONFIG": "1", "PYTHONPATH": str(project)}
    env.pop("RESEARCH_AGENT_DATABASE_URL", None)
    dataset = project / "datasets" / "python_reference.yaml"
    process = subprocess.Popen(
        [sys.executable, "-m", "evals", "--against", "HEAD", "--dataset", str(dataset), "--repeat", "3"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
    )
    wait_for(  # the base revision's eval has started (or the A/B ended early: the assertions below say why)
        lambda: bool(_children_running("ra-evals-worktree-")) or process.poll() is not None,
        timeout=120,
        what="the base side to start",
    )
    assert process.poll() is None, "the A/B ended before its base side started"
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "interrupted: the eval stopped" in output and "Traceback" not in output
    assert _children_running("ra-evals-worktree-") == []  # the base side did not outlive it
    assert _git(project, "worktree", "list").count("\n") == 0  # and its worktree is gone
