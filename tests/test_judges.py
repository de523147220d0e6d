"""`python -m evals judges`: the critic's agreement with labelled judgements, its figures and exit codes."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from rich.console import Console

from agent import Settings
from agent.review import Critique, critic_rubric
from evals import CRITIC_THRESHOLD, JudgementItem, JudgeTargets, judges_main, load_judgements, run_judges
from evals.__main__ import main as evals_main
from evals._suite import UsageError

NONLOCAL = (
    "The nonlocal statement causes the listed identifiers to refer to previously bound variables in the "
    "nearest enclosing scope excluding globals."
)

# Clear-cut items for the offline critic: the correct one is a verbatim quote that names the subject; the
# wrong ones make claims no cited quote supports; the abstention is an honest "could not find".
FIXTURE_ITEMS: list[dict[str, Any]] = [
    {
        "question": "What does the nonlocal statement do?",
        "answer": NONLOCAL,
        "citations": [{"url": "corpus://python-docs/topics/nonlocal", "quote": NONLOCAL}],
        "verdict": "correct",
        "note": "the definition, verbatim",
        "subject": "nonlocal",
    },
    {
        "question": "What is the walrus operator?",
        "answer": "The walrus operator raises its left argument to the power of its right argument.",
        "citations": [
            {
                "url": "corpus://python-docs/topics/power",
                "quote": "The power operator binds more tightly than unary operators on its left.",
            }
        ],
        "verdict": "wrong",
        "note": "describes the power operator",
    },
    {
        "question": "How do I make a dataclass immutable?",
        "answer": "Use is_dataclass() to check whether an object is a dataclass.",
        "citations": [
            {
                "url": "corpus://python-docs/modules/dataclasses",
                "quote": "Return True if its parameter is a dataclass or an instance of one, otherwise return False.",
            }
        ],
        "verdict": "wrong",
        "note": "never says frozen=True",
    },
    {
        "question": "What is the capital of Australia?",
        "answer": "I could not find an answer to this in the sources.",
        "citations": [],
        "verdict": "abstain",
        "note": "off-topic for the Python docs",
    },
]


def _write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def judgements(tmp_path: Path) -> Path:
    return _write(tmp_path / "judgements.yaml", {"version": 1, "items": FIXTURE_ITEMS})


def _gate(tmp_path: Path, wrong_caught: float = 0.9, correct_passed: float = 0.9) -> Path:
    targets = {"wrong_caught": wrong_caught, "correct_passed": correct_passed}
    return _write(tmp_path / "gate.yaml", {"tolerance": 0.02, "judges": {"offline": targets, "default": targets}})


def _run(argv: list[str], model: FunctionModel | None = None) -> tuple[int, str]:
    out = StringIO()
    code = judges_main(argv, console=Console(file=out, width=200), model=model)
    return code, out.getvalue()


def test_threshold_is_the_runs_default() -> None:
    assert CRITIC_THRESHOLD == Settings.model_fields["critic_threshold"].default == 0.7


# --- figures --------------------------------------------------------------------------------------


def _item(verdict: str, question: str) -> JudgementItem:
    return JudgementItem.model_validate({"question": question, "answer": "a", "verdict": verdict, "note": ""})


async def test_figures_and_matrix_are_counted_against_the_threshold() -> None:
    scores = {
        # wrong: 0.2, 0.5 and 0.69 are below 0.7 (caught); 0.7 is at the threshold, so it passes
        "w1": 0.2,
        "w2": 0.5,
        "w3": 0.69,
        "w4": 0.7,
        # correct: 0.7 and 1.0 pass, 0.4 fails
        "c1": 0.7,
        "c2": 1.0,
        "c3": 0.4,
        "p1": 0.8,
        "a1": 0.1,
    }
    verdicts = {"w": "wrong", "c": "correct", "p": "partial", "a": "abstain"}
    items = [_item(verdicts[name[0]], name) for name in scores]

    async def grader(item: JudgementItem) -> Critique:
        return Critique(score=scores[item.question], issues=[f"scripted {item.question}"])

    result = await run_judges(
        items,
        grader=grader,
        judge="scripted",
        path=Path("x.yaml"),
        targets=JudgeTargets(wrong_caught=0.9, correct_passed=0.5),
    )
    assert result.matrix == {
        "correct": {"passed": 2, "failed": 1},
        "partial": {"passed": 1, "failed": 0},
        "wrong": {"passed": 1, "failed": 3},
        "abstain": {"passed": 0, "failed": 1},
    }
    assert result.wrong_caught == pytest.approx(3 / 4)
    assert result.correct_passed == pytest.approx(2 / 3)
    assert result.shortfalls() == ["wrong caught 0.75 < 0.90"]
    assert [(j.number, j.item.question) for j in result.judged if j.disagrees] == [(4, "w4"), (7, "c3")]
    data = result.to_json()
    assert data["confusion_matrix"]["matrix"] == [[2, 1], [1, 0], [1, 3], [0, 1]]
    assert [d["reasons"] for d in data["disagreements"]] == [["scripted w4"], ["scripted c3"]]


async def test_a_verdict_with_no_items_has_no_figure_and_misses_its_target() -> None:
    async def grader(item: JudgementItem) -> Critique:
        return Critique(score=1.0)

    result = await run_judges(
        [_item("correct", "c")],
        grader=grader,
        judge="x",
        path=Path("x"),
        targets=JudgeTargets(wrong_caught=0, correct_passed=0),
    )
    assert result.wrong_caught is None and result.correct_passed == 1.0
    assert result.shortfalls() == ["wrong caught n/a < 0.00"]


# --- the command, offline critic ------------------------------------------------------------------


def test_offline_json(judgements: Path, tmp_path: Path) -> None:
    code, out = _run(["--judgements", str(judgements), "--gate-config", str(_gate(tmp_path)), "--json"])
    data = json.loads(out)
    assert code == 0
    assert data["items"] == 4 and data["judge"] == "offline" and data["threshold"] == 0.7
    # both wrong answers are unsupported by their quotes (scored below 0.7); the verbatim definition passes
    assert data["wrong_caught"] == 1.0 and data["correct_passed"] == 1.0
    assert data["counts"] == {"correct": 1, "partial": 0, "wrong": 2, "abstain": 1}
    assert data["confusion_matrix"] == {
        "rows": ["correct", "partial", "wrong", "abstain"],
        "columns": ["passed", "failed"],
        "matrix": [[1, 0], [0, 0], [0, 2], [1, 0]],
    }
    assert data["targets"] == {"wrong_caught": 0.9, "correct_passed": 0.9}
    assert data["passed"] is True and data["shortfalls"] == [] and data["disagreements"] == []


def test_offline_table_through_python_m_evals(
    judgements: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = evals_main(["judges", "--judgements", str(judgements), "--gate-config", str(_gate(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0
    assert "critic offline vs labelled verdict" in out
    assert "wrong caught:   1.00 (target ≥ 0.90) of 2 wrong items" in out
    assert "correct passed: 1.00 (target ≥ 0.90) of 1 correct items" in out


def test_exit_1_below_target(judgements: Path, tmp_path: Path) -> None:
    # one more `correct` item the offline critic fails (the unsupported dataclass answer): correct passed 1/2
    data = {"version": 1, "items": [*FIXTURE_ITEMS, {**FIXTURE_ITEMS[2], "verdict": "correct", "note": "mislabel"}]}
    path = _write(tmp_path / "more.yaml", data)
    code, out = _run(["--judgements", str(path), "--gate-config", str(_gate(tmp_path))])
    assert code == 1
    assert "below target: correct passed 0.50 < 0.90" in out
    # the failure is shown with its question, verdict, score and the critic's reasons
    assert "How do I make a dataclass immutable?" in out
    assert "0.40" in out and "The answer does not address: immutable." in out


# --- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"version": 1, "items": [FIXTURE_ITEMS[0], {**FIXTURE_ITEMS[1], "verdict": "maybe"}]}, "item 2 ("),
        ({"version": 1, "items": [{k: v for k, v in FIXTURE_ITEMS[0].items() if k != "note"}]}, "item 1 ("),
        ({"version": 1, "items": [{**FIXTURE_ITEMS[0], "citations": [{"url": "u"}]}]}, "citations.0.quote"),
        ({"version": 2, "items": FIXTURE_ITEMS}, "version"),
        ({"items": FIXTURE_ITEMS}, "version"),
        ([1, 2], "(top level)"),
        ("version: [1\n", "not valid YAML"),
    ],
)
def test_exit_2_on_a_malformed_file(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "bad.yaml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        _write(path, content)
    with pytest.raises(UsageError, match=str(path)) as raised:
        load_judgements(path)
    assert message in str(raised.value)
    code, out = _run(["--judgements", str(path), "--gate-config", str(_gate(tmp_path))])
    assert code == 2 and "error:" in out and "bad.yaml" in out


def test_exit_2_on_a_missing_file(tmp_path: Path) -> None:
    code, out = _run(["--judgements", str(tmp_path / "nope.yaml")])
    assert code == 2 and "nope.yaml" in out


# --- the LLM critic -------------------------------------------------------------------------------


def _scripted_critic(seen: list[str], score_for: dict[str, float]) -> FunctionModel:
    """Grades by the question in the critic's request; records the instructions it was given."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        request = messages[-1]
        assert isinstance(request, ModelRequest)
        seen.append(request.instructions or "")
        prompt = next(p.content for p in request.parts if isinstance(p, UserPromptPart))
        assert isinstance(prompt, str)
        question = next(q for q in score_for if q in prompt)
        critique = {"score": score_for[question], "issues": [f"LLM says {score_for[question]}"]}
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, critique)])

    return FunctionModel(respond, model_name="scripted-critic")


def test_llm_critic_uses_the_runs_critic_agent_and_rubric(judgements: Path, tmp_path: Path) -> None:
    seen: list[str] = []
    scores = {
        "nonlocal statement": 0.9,
        "walrus operator": 0.8,  # a wrong answer passed
        "dataclass immutable": 0.3,
        "capital of Australia": 0.95,
    }
    argv = ["--judgements", str(judgements), "--gate-config", str(_gate(tmp_path)), "--judge", "openai:x", "--json"]
    code, out = _run(argv, model=_scripted_critic(seen, scores))
    data = json.loads(out)
    assert code == 1
    assert data["judge"] == "openai:x" and data["items"] == 4
    assert data["wrong_caught"] == 0.5 and data["correct_passed"] == 1.0
    assert data["shortfalls"] == ["wrong caught 0.50 < 0.90"]
    assert data["disagreements"] == [
        {
            "item": 2,
            "question": "What is the walrus operator?",
            "verdict": "wrong",
            "score": 0.8,
            "passed": True,
            "reasons": ["LLM says 0.8"],
        }
    ]
    assert len(seen) == 4 and all(critic_rubric().text in instructions for instructions in seen)


def test_llm_critic_by_model_name_offline(judgements: Path, tmp_path: Path) -> None:
    """`--judge test` resolves through the run's model resolution to pydantic-ai's TestModel: no network."""
    code, out = _run(
        ["--judgements", str(judgements), "--gate-config", str(_gate(tmp_path, 0, 0)), "--judge", "test", "--json"]
    )
    data = json.loads(out)
    assert code == 0 and data["items"] == 4 and data["judge"] == "test"


def test_unknown_model_is_a_usage_error(judgements: Path, tmp_path: Path) -> None:
    code, out = _run(["--judgements", str(judgements), "--judge", "nosuchprovider:model"])
    assert code == 2 and "nosuchprovider" in out
