"""The A/B gate on noisy models of known quality, through the whole suite (issue 13).

Each side is a seeded `FunctionModel` that researches like a real agent (plan → search → fetch → answer)
and then quotes the right sentence of the page with probability p, or a wrong-but-real sentence from the
same page otherwise. Which runs are right is a hash of (seed, question, attempt), so the outcome does
not depend on how the event loop happens to schedule concurrent cases. Every run goes through the real
runner, the real store, the real corpus search and the dataset's real evaluators; `run_ab` then tests
the paired differences as one family.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from evals import ABOptions, ABResult, OfflineCritic, render_ab_markdown, run_ab
from tests.scripted import read_history, search_results

CASES = 60
REPEATS = 3


def _page(i: int) -> tuple[str, str]:
    right = f"Service {i} listens on port {7000 + i} by default."
    wrong = f"Before release two, service {i} listened on port {9000 + i} instead."
    return right, wrong


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cases = []
    for i in range(CASES):
        right, wrong = _page(i)
        cases.append(
            {
                "name": f"port-{i:02d}",
                "inputs": {
                    "question": f"Which port does service {i} listen on by default?",
                    "collection": f"noisy-{i:02d}",
                    "documents": [
                        {
                            "url": f"corpus://noisy-{i:02d}/service.md",
                            "title": f"Service {i}",
                            "body": f"{right} {wrong}",
                        }
                    ],
                },
                "metadata": {"key_facts": [f"port {7000 + i}"], "must_not_say": [f"port {9000 + i}"]},
            }
        )
    data = {
        "name": "noisy_ports",
        "evaluators": ["AnswerOutcome", "CitationGrounding", "KeyFactRecall", "Trajectory"],
        "cases": cases,
    }
    path = tmp_path_factory.mktemp("datasets") / "noisy_ports.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


class NoisyResearcher:
    """Answers right with probability `p`; the draw is a hash of (seed, question, attempt)."""

    def __init__(self, *, p: float, seed: int) -> None:
        self.p = p
        self.seed = seed
        self.attempts: Counter[str] = Counter()
        self.right = 0
        self.wrong = 0

    def model(self) -> FunctionModel:
        return FunctionModel(self, model_name=f"noisy-p{self.p:.2f}-s{self.seed}")

    def _is_right(self, question: str) -> bool:
        self.attempts[question] += 1
        key = f"{self.seed}|{question}|{self.attempts[question]}".encode()
        draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
        return draw < self.p

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        state = read_history(messages)
        if not state.planned:
            return _call("record_plan", {"sub_questions": [state.question]})
        if not state.searched:
            return _call("web_search", {"query": state.question, "max_results": 3})
        if not state.fetched:
            found = _CORPUS_URL.findall(search_results(messages))
            return _call("fetch_url", {"url": found[0] if found else "corpus://missing"})
        url, text = next(iter(state.fetched.items()))
        right, wrong = (s.strip() + "." for s in text.split(".")[:2])
        correct = self._is_right(state.question)
        self.right += correct
        self.wrong += not correct
        quote = right if correct else wrong
        citation = {"url": url, "title": "", "quote": quote}
        return _call(info.output_tools[0].name, {"answer": quote, "citations": [citation], "unresolved": []})


_CORPUS_URL = re.compile(r"corpus://[^\s\"'\\]+")


def _call(tool: str, args: dict[str, object]) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(tool_name=tool, args=args)])


PRICES = {"function:*": {"input_per_mtok": 1.0, "output_per_mtok": 4.0}}


@pytest.fixture(autouse=True)
def _scripted_models_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No run reviews its own report (the eval grades it), so the scripted model is only asked to research; and
    scripted models get a price, as a real model has, so the runs' dollar caps apply."""
    monkeypatch.setenv("RESEARCH_AGENT_CRITIC_MODEL", "off")
    monkeypatch.setenv("RESEARCH_AGENT_MODEL_PRICES", json.dumps(PRICES))
    yield


async def _ab(dataset: Path, postgres_url: str, *, base_p: float, current_p: float, repeat: int) -> ABResult:
    base, current = NoisyResearcher(p=base_p, seed=1), NoisyResearcher(p=current_p, seed=2)
    result = await run_ab(
        ABOptions(
            model=current.model(),
            against_model=base.model(),
            datasets=[dataset],
            repeat=repeat,
            critic=OfflineCritic(),
            server_url=postgres_url,
            max_concurrency=4,
        )
    )
    cases = len(result.datasets[0].current)
    for side in (base, current):
        assert side.right + side.wrong == cases * repeat  # every run answered
        assert 0 < side.wrong < side.right  # noisy, not scripted to be perfect
    assert {len(case.answers) for case in result.datasets[0].current.values()} == {repeat}
    return result


async def test_unchanged_quality_passes(dataset: Path, postgres_url: str, tmp_path: Path) -> None:
    # Any number of cases: the family-wise false-alarm rate is at most 5 % whatever the sample size.
    data = yaml.safe_load(dataset.read_text(encoding="utf-8"))
    data["cases"] = data["cases"][:30]
    half = tmp_path / "noisy_ports.yaml"
    half.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    same = await _ab(half, postgres_url, base_p=0.8, current_p=0.8, repeat=2)
    assert same.passed, same.failures
    key_facts = same.family["noisy_ports/key_facts"]
    assert key_facts.tested and key_facts.cases == 30
    assert key_facts.lower_bound <= key_facts.mean_diff <= key_facts.upper_bound
    assert key_facts.min_detectable_drop is not None and 0.02 < key_facts.min_detectable_drop < 0.5


async def test_a_20_point_drop_fails(dataset: Path, postgres_url: str) -> None:
    # 60 cases × 3 repeats: by the normal approximation a 20-point drop in a pass/fail score is caught
    # with about 90 % probability at the family's strictest level, before the run.
    worse = await _ab(dataset, postgres_url, base_p=0.8, current_p=0.6, repeat=REPEATS)
    assert not worse.passed
    regressed = {e.name for e in worse.family.evaluators if e.regressed}
    assert "noisy_ports/key_facts" in regressed
    assert "noisy_ports/grounding" not in regressed  # the wrong answers still quote the page verbatim
    drop = worse.family["noisy_ports/key_facts"]
    assert drop.upper_bound < -0.02 and -0.35 < drop.mean_diff < -0.05
    assert drop.min_detectable_drop is not None
    assert drop.min_detectable_drop < 0.2  # this run could see the drop it was given


async def test_a_cost_cap_stops_both_sides_with_a_partial_report(dataset: Path, postgres_url: str) -> None:
    # Each run reserves $0.01 (its assumed worst case) before it starts; a scripted run really costs a
    # fraction of a cent at PRICES. $0.06 for the whole A/B is $0.03 a side: some runs, never all 60.
    base, current = NoisyResearcher(p=0.8, seed=1), NoisyResearcher(p=0.8, seed=2)
    result = await run_ab(
        ABOptions(
            model=current.model(),
            against_model=base.model(),
            datasets=[dataset],
            repeat=1,
            critic=OfflineCritic(),
            server_url=postgres_url,
            max_concurrency=2,
            max_cost=Decimal("0.06"),
            per_run=Decimal("0.01"),
        )
    )
    for side, model in ((result.base, base), (result.current, current)):
        ran = model.right + model.wrong
        assert 0 < ran < CASES
        assert 0 < side.spent_usd <= 0.03  # its half of the cap, with the reservations of runs in flight
    assert not result.passed
    assert len(result.not_run) == 2 * CASES - (base.right + base.wrong + current.right + current.wrong)
    assert any("the cost cap ($0.06) stopped the eval" in failure for failure in result.failures)
    markdown = render_ab_markdown(result)
    assert markdown.startswith("# A/B eval: FAILED") and "not run in full" in markdown
