"""`--max-cost`: the worst case is printed before anything runs, a cap below it is refused without
`--yes`, and a cap that is reached stops the eval with a partial report that fails the gate. Bad input (an
unknown model, a revision that does not exist) is refused before the estimate, with one line and exit 2."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from budgets import Budget
from evals import CostCap, NotRun, worst_case_per_run
from evals.__main__ import main
from tests.scripted import read_history, search_results

MODEL = "openai:gpt-4.1-mini"  # genai-prices knows it; no request is ever sent in these tests
PRICED = "factory:tests.test_eval_cost_cap:priced_model"
OUTPUT_TOKENS = 750  # per request, at $100 per million output tokens: $0.075 a request, ~$0.30 a run
PRICES = {"function:*": {"input_per_mtok": 0, "output_per_mtok": 100}}
_CORPUS_URL = re.compile(r"corpus://[^\s\"'\\]+")


@pytest.fixture(autouse=True)
def _a_key_for_the_priced_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`--model openai:...` (and its default judge) must resolve before anything runs: a key, never used."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-never-sent")
    monkeypatch.delenv("RESEARCH_AGENT_OPENAI_BASE_URL", raising=False)
    yield


def priced_model() -> FunctionModel:
    """Plan → search → fetch the corpus page → answer quoting it; every request reports OUTPUT_TOKENS, so a
    run really costs most of its $0.50 budget cap at PRICES (scripted runs are otherwise nearly free)."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        state = read_history(messages)
        if not state.planned:
            response = _call("record_plan", {"sub_questions": [state.question]})
        elif not state.searched:
            response = _call("web_search", {"query": state.question, "max_results": 3})
        elif not state.fetched:
            found = _CORPUS_URL.findall(search_results(messages))
            response = _call("fetch_url", {"url": found[0] if found else "corpus://missing"})
        else:
            url, text = next(iter(state.fetched.items()))
            quote = text.strip().splitlines()[0]
            citation = {"url": url, "title": "", "quote": quote}
            response = _call(info.output_tools[0].name, {"answer": quote, "citations": [citation], "unresolved": []})
        response.usage = RequestUsage(input_tokens=100, output_tokens=OUTPUT_TOKENS)
        return response

    return FunctionModel(respond, model_name="scripted-priced")


def _call(tool: str, args: dict[str, object]) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(tool_name=tool, args=args)])


def _dataset(path: Path, cases: int, *, sentence: str = "Fact {i}.") -> Path:
    data = {
        "name": "cost_tiny",
        "evaluators": ["KeyFactRecall"],
        "cases": [
            {
                "name": f"case-{i}",
                "inputs": {
                    "question": f"What is fact {i}?",
                    "collection": "cost-tiny",
                    "documents": [
                        {"url": "corpus://cost-tiny/facts.md", "title": "Facts", "body": sentence.format(i=i)}
                    ],
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


def test_a_cap_reached_partway_fails_with_a_report_naming_every_case_not_run(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each run reserves its worst case, $0.50 (its budget cap; the offline judge is free), and really costs
    # about $0.30. Under $1.00 two runs start ($0.50 + $0.50 reserved); once they have cost ~$0.60, a third
    # would need $0.50 more: the other twelve cases are not run.
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("RESEARCH_AGENT_MODEL_PRICES", json.dumps(PRICES))
    monkeypatch.setenv("RESEARCH_AGENT_CRITIC_MODEL", "off")  # the run's own critic would be a third party
    dataset = _dataset(
        tmp_path / "cost_tiny.yaml", cases=14, sentence="Fact {i}: service {i} listens on port 70{i:02d}."
    )
    argv = ["--model", PRICED, "--judge-model", "offline", "--dataset", str(dataset), "--max-cost", "1.00", "--yes"]
    code = main([*argv, "--report-dir", str(tmp_path), "--baseline-dir", str(tmp_path / "baselines")])
    out = capsys.readouterr().out

    assert code == 1, out
    assert "worst case: $7.00 (14 runs × $0.5000" in out and "eval gate FAILED" in out
    report = json.loads((tmp_path / "eval-report.json").read_text(encoding="utf-8"))
    cases = report["datasets"][0]["cases"]
    ran = [case for case in cases if case["runs"]]
    assert len(ran) == 2 and all(case["not_run"] == 0 for case in ran)
    assert all(0.25 <= run["cost_usd"] <= 0.5 for case in ran for run in case["runs"])  # really spent
    not_run = sorted(f"cost_tiny/{case['name']} ×1" for case in cases if case["not_run"] == 1)
    assert len(not_run) == 12 and sorted(report["not_run"]) == not_run  # the JSON names every one
    assert report["cost"]["not_run"] == 12 and 0.5 <= report["cost"]["spent"] <= 1.0
    (failure,) = [f for f in report["failures"] if "cost cap" in f]
    assert failure.startswith("the cost cap ($1.00) stopped the eval: 12 case(s) not run in full (")
    assert failure.endswith(" … and 2 more (see the JSON report))")
    assert sum(name in failure for name in not_run) == 10
    markdown = (tmp_path / "eval-report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Eval report: FAILED") and failure in markdown


def test_an_unknown_model_is_refused_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--model", "--against-model"):
        code = main([flag, "nosuchmodel", "--report-dir", str(tmp_path)])
        out = capsys.readouterr().out
        assert code == 2, out
        assert out.startswith(f"error: {flag} 'nosuchmodel': Unknown model: nosuchmodel — expected `offline`")
        assert out.count("\n") == 1 and "Traceback" not in out  # one line
        assert "worst case" not in out  # refused before the estimate, so before any run
    code = main(["--model", MODEL, "--judge-model", "nosuchjudge", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2 and out.startswith("error: --judge-model 'nosuchjudge':")
    assert not (tmp_path / "eval-report.json").exists() and not (tmp_path / "ab-report.json").exists()


def test_a_revision_that_does_not_exist_is_refused_before_the_estimate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--against", "no-such-ref-h13", "--max-cost", "1", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2, out
    assert out.startswith("error: --against no-such-ref-h13: not a revision of the git repository at ")
    assert out.count("\n") == 1 and "worst case" not in out
    assert not (tmp_path / "ab-report.json").exists()
