"""`--max-cost`: the worst case is printed before anything runs, a cap below it is refused without
`--yes`, and a cap that is reached stops the eval with a partial report that fails the gate."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from budgets import Budget
from evals import CostCap, NotRun, worst_case_per_run
from evals.__main__ import main

MODEL = "openai:gpt-4.1-mini"  # genai-prices knows it; no request is ever sent in these tests


def _dataset(path: Path, cases: int) -> Path:
    data = {
        "name": "cost_tiny",
        "evaluators": ["KeyFactRecall"],
        "cases": [
            {
                "name": f"case-{i}",
                "inputs": {
                    "question": f"What is fact {i}?",
                    "collection": "cost-tiny",
                    "documents": [{"url": "corpus://cost-tiny/facts.md", "title": "Facts", "body": f"Fact {i}."}],
                },
                "metadata": {"key_facts": [f"Fact {i}"]},
            }
            for i in range(cases)
        ],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_a_runs_worst_case_is_its_budget_cap_plus_the_judges_call() -> None:
    research_only = worst_case_per_run(MODEL, budget=Budget(), judge_model=None)
    judged = worst_case_per_run(MODEL, budget=Budget(), judge_model=MODEL)
    assert research_only == Decimal("0.50")
    assert judged is not None and Decimal("0.50") < judged < Decimal("0.60")
    assert worst_case_per_run("offline", budget=Budget(), judge_model=MODEL) == 0
    assert worst_case_per_run("openai:no-such-model-x", budget=Budget(max_cost_usd=None), judge_model=None) is None


async def test_reservations_keep_concurrent_runs_under_the_cap() -> None:
    cap = CostCap(limit=Decimal("1.00"), per_run=Decimal("0.30"))
    rng = random.Random(3)
    started = 0

    async def run() -> None:
        nonlocal started
        try:
            cap.reserve()
        except NotRun:
            return
        started += 1
        assert cap.spent + cap.reserved <= cap.limit  # never more in flight than the cap allows
        await asyncio.sleep(0)  # let the others interleave (a yield, not a wait for time)
        cap.settle(Decimal(str(round(rng.uniform(0.05, 0.30), 2))))

    await asyncio.gather(*(run() for _ in range(20)))
    assert cap.spent <= cap.limit
    assert cap.reached and started + cap.refused == 20 and started >= 3


def test_a_cap_below_the_worst_case_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = _dataset(tmp_path / "cost_tiny.yaml", cases=3)
    code = main(["--model", MODEL, "--dataset", str(dataset), "--max-cost", "1", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2
    assert "worst case: $1.53 (3 runs × $0.5090" in out  # 3 × ($0.50 budget + the judge's 20k in / 600 out)
    assert "exceeds --max-cost $1" in out and "--yes" in out
    assert not (tmp_path / "eval-report.json").exists()


def test_a_reached_cap_stops_cleanly_with_a_partial_report_that_fails(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    dataset = _dataset(tmp_path / "cost_tiny.yaml", cases=3)
    argv = ["--model", MODEL, "--dataset", str(dataset), "--max-cost", "0.30", "--yes", "--report-dir", str(tmp_path)]
    code = main([*argv, "--baseline-dir", str(tmp_path / "baselines")])
    out = capsys.readouterr().out
    assert code == 1, out
    report = json.loads((tmp_path / "eval-report.json").read_text(encoding="utf-8"))
    assert report["cost"] == {"limit": 0.3, "spent": 0.0, "not_run": 3}
    assert [case["not_run"] for case in report["datasets"][0]["cases"]] == [1, 1, 1]
    assert any("cost cap ($0.30) stopped the eval: 3 case(s) not run" in f for f in report["failures"])
    markdown = (tmp_path / "eval-report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Eval report: FAILED") and "cost_tiny/case-0 ×1" in markdown
