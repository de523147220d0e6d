"""`--against REF --max-cost`: the base revision's share of the cap, and the prompts each side reads.

The base revision here is a small git repository whose `python -m evals` is a stub: it logs the arguments
it was started with, reports a fixed spend and a score per case, and says in `--help` whether it has
`--max-cost` (revisions older than the cost cap do not). So the test sees exactly what the A/B driver asks
of the base side (`evals._sides.CheckoutSide`, `evals._ab._check_base_cap`) without running a second
eval suite. The current side is this code with the offline model, on a fresh database.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

import evals.__main__
import evals._ab
from evals import ABOptions, UsageError, run_ab
from evals.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
STUB = """
import json, os, sys
from pathlib import Path

import yaml

args = sys.argv[1:]
with open(os.environ["AB_STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
caps = os.environ["AB_STUB_CAPS"] == "1"
if "--help" in args:
    print("usage: python -m evals [--model MODEL] [--dataset PATH]" + (" [--max-cost USD] [--yes]" if caps else ""))
    sys.exit(0)
value = lambda flag: args[args.index(flag) + 1]
spent = float(os.environ["AB_STUB_SPEND"])
datasets = []
for i, arg in enumerate(args):
    if arg == "--dataset":
        data = yaml.safe_load(Path(args[i + 1]).read_text(encoding="utf-8"))
        cases = [
            {
                "name": case["name"],
                "question": case["inputs"]["question"],
                "runs": [{"answer": "the stub's answer", "answered": True, "cost_usd": spent / len(data["cases"])}],
                "scores": {"key_facts": {"values": [1.0], "reasons": ["stub"]}},
            }
            for case in data["cases"]
        ]
        datasets.append({"name": data["name"], "path": args[i + 1], "cases": cases})
report = {"judge_version": "stub", "datasets": datasets}
if "--max-cost" in args:
    report["cost"] = {"limit": float(value("--max-cost")), "spent": spent, "not_run": 0}
out = Path(value("--report-dir"))
out.mkdir(parents=True, exist_ok=True)
(out / "eval-report.json").write_text(json.dumps(report), encoding="utf-8")
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def _base_repository(repo: Path, *, critic_suffix: str = "") -> Path:
    """A repository whose one commit is the base revision: the stub evals, this code's prompts (the critic's
    with `critic_suffix` appended) and a two-case dataset. Returns the dataset's path."""
    (repo / "evals").mkdir(parents=True)
    (repo / "evals" / "__init__.py").write_text("", encoding="utf-8")
    (repo / "evals" / "__main__.py").write_text(STUB, encoding="utf-8")
    shutil.copytree(ROOT / "agent" / "prompts", repo / "agent" / "prompts", ignore=shutil.ignore_patterns("*.py*"))
    (repo / "agent" / "review").mkdir(parents=True)
    shutil.copy2(ROOT / "agent" / "review" / "rubric.md", repo / "agent" / "review" / "rubric.md")
    critic = repo / "agent" / "prompts" / "critic.md"
    critic.write_text(critic.read_text(encoding="utf-8") + critic_suffix, encoding="utf-8")
    body = "The widget cache keeps rendered widgets for 300 seconds by default."
    cases = [
        {
            "name": f"widget-{i}",
            "inputs": {
                "question": f"How long does widget cache {i} keep rendered widgets by default?",
                "collection": "ab-base-cap",
                "documents": [{"url": "corpus://ab-base-cap/cache.md", "title": "Widget cache", "body": body}],
            },
            "metadata": {"key_facts": ["300 seconds"]},
        }
        for i in range(2)
    ]
    dataset = repo / "datasets" / "ab_stub.yaml"
    dataset.parent.mkdir()
    data = {"name": "ab_stub", "evaluators": ["KeyFactRecall"], "cases": cases}
    dataset.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "base")
    return dataset


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def _after(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def test_the_base_revision_gets_what_remains_of_its_half_of_the_cap_each_round(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    dataset = _base_repository(repo, critic_suffix="\nAlways grade in haiku.\n")
    log = tmp_path / "base.log"
    monkeypatch.setenv("AB_STUB_LOG", str(log))
    monkeypatch.setenv("AB_STUB_CAPS", "1")
    monkeypatch.setenv("AB_STUB_SPEND", "0.2")  # what each round of the base side reports it spent
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    # The CLI resolves and checks out `--against` in the repository this code is in: here, the stub's.
    monkeypatch.setattr(evals.__main__, "PROJECT_ROOT", repo)
    monkeypatch.setattr(evals._ab, "PROJECT_ROOT", repo)
    reports = tmp_path / "reports"

    argv = ["--against", "HEAD", "--dataset", str(dataset), "--repeat", "2", "--max-cost", "1.00"]
    code = main([*argv, "--require-live", "--report-dir", str(reports)])
    out = capsys.readouterr().out

    help_call, first, second = _calls(log)
    assert help_call == ["--help"]
    # $1.00 for the whole A/B is $0.50 a side; the base's first round may spend all of it, its second what
    # the first left ($0.50 - $0.20).
    assert (_after(first, "--max-cost"), _after(second, "--max-cost")) == ("0.50", "0.30")
    assert "--yes" in first and "--yes" in second
    assert [_after(call, "--repeat") for call in (first, second)] == ["1", "1"]  # one repeat per round
    data = json.loads((reports / "ab-report.json").read_text(encoding="utf-8"))
    assert data["sides"]["base"]["spent_usd"] == pytest.approx(0.4)
    assert data["sides"]["base"]["revision"] == f"HEAD @ {_git(repo, 'rev-parse', 'HEAD')[:12]}"
    # Every prompt's version is recorded on each side, read from each side's own files: only the critic's
    # differs, and the offline model reads none, so that change was not evaluated and --require-live fails.
    base, current = data["sides"]["base"]["prompt_versions"], data["sides"]["current"]["prompt_versions"]
    assert set(base) == set(current) >= {"research", "critic", "revise", "critic-rubric"}
    assert [name for name in base if base[name] != current[name]] == ["critic"]
    assert data["prompt_unevaluated"] is True and data["unevaluated_prompts"] == ["critic"]
    assert (
        "--require-live: the critic prompt changed and no model that reads prompts judged the change"
        in (data["failures"])
    )
    assert code == 1, out
    markdown = (reports / "ab-report.md").read_text(encoding="utf-8")
    assert f"**`{base['critic']}`**" in markdown and f"`{base['research']}`" in markdown
    assert f"{base['critic']} → {current['critic']}" in markdown and "NOT evaluated" in markdown
    assert _git(repo, "worktree", "list").count("\n") == 0  # the temporary worktree was removed


async def test_a_base_revision_without_a_cost_cap_runs_only_if_its_worst_case_fits_its_half(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    dataset = _base_repository(repo)
    log = tmp_path / "base.log"
    monkeypatch.setenv("AB_STUB_LOG", str(log))
    monkeypatch.setenv("AB_STUB_CAPS", "0")  # older than --max-cost: it cannot stop itself
    monkeypatch.setenv("AB_STUB_SPEND", "0.1")

    def options(per_run: str) -> ABOptions:
        return ABOptions(
            against="HEAD",
            repo=repo,
            datasets=[dataset],
            repeat=2,
            server_url=postgres_url,
            max_cost=Decimal("1.00"),
            per_run=Decimal(per_run),
        )

    # 2 cases × 2 repeats × $0.15 = $0.60 worst case, over its $0.50 half: refused before any round starts.
    with pytest.raises(UsageError) as refused:
        await run_ab(options("0.15"))
    assert str(refused.value).startswith(
        "the base revision has no --max-cost, and its worst case ($0.60) exceeds its half of the cap ($0.50)"
    )
    assert _calls(log) == [["--help"]]
    assert _git(repo, "worktree", "list").count("\n") == 0

    # At $0.10 a run its worst case, $0.40, fits: it runs, without a --max-cost it would not understand.
    log.unlink()
    result = await run_ab(options("0.10"))
    rounds = _calls(log)[1:]
    assert len(rounds) == 2 and not any("--max-cost" in call for call in rounds)
    assert result.base.spent_usd == pytest.approx(0.2) and result.not_run == []
