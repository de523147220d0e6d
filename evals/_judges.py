"""`python -m evals judges`: how well the critic agrees with hand-labelled judgements (issue 12).

Every item of `datasets/judgements.yaml` (a question, an answer, its cited quotes and a person's verdict:
`correct`, `partial`, `wrong` or `abstain`) is graded by a critic, and the critic *passes* it when its
score is at or above the run's default critic threshold (`Settings.critic_threshold`). Two figures:

- **wrong caught**: share of `wrong` items the critic fails (scores below the threshold);
- **correct passed**: share of `correct` items the critic passes.

The critic is the offline one by default (`offline_critique`, i.e. `grade_answer` over the citations'
quotes, plus its handling of an empty answer and of an honest "could not find"), or, given a model
name, the run's critic agent (`critic_agent`, the shared rubric) with that model. The grading runs as a
pydantic-evals experiment: a `CriticOutcome` evaluator labels each case `passed`/`failed`, and
pydantic-evals' `ConfusionMatrixEvaluator` counts labelled verdict x outcome. That evaluator builds a
square matrix over the union of both label sets; the table here keeps its verdict rows and its
`passed`/`failed` columns (the other cells are zero by construction).

Exit codes: 0 both figures meet their targets in `datasets/gate.yaml` (`judges:`), 1 one is below,
2 usage error (a malformed judgements file, an unknown model, a critic that could not grade).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_ai.models import Model
from pydantic_evals import Case, Dataset
from pydantic_evals.evaluators import ConfusionMatrixEvaluator, Evaluator, EvaluatorContext
from pydantic_evals.reporting import EvaluationReport
from pydantic_evals.reporting.analyses import ConfusionMatrix
from rich.console import Console
from rich.table import Table

from agent import Citation, ResearchReport, Settings
from agent.citations import quote_section
from agent.errors import ResearchAgentError
from agent.models import resolve_model, retrying_http_client
from agent.offline.critic import Cited, offline_critique
from agent.review import Critique, critic_agent
from agent.review.critic import critique_request
from evals._datasets import default_datasets_dir
from evals._gate import load_gate_config
from evals._suite import UsageError
from tools import FetchedPage, build_python_docs

__all__ = [
    "CRITIC_THRESHOLD",
    "OFFLINE_JUDGE",
    "JudgeTargets",
    "JudgedItem",
    "JudgementCitation",
    "JudgementItem",
    "JudgementSet",
    "JudgesResult",
    "judge_targets",
    "judges_main",
    "load_judgements",
    "run_judges",
]

Verdict = Literal["correct", "partial", "wrong", "abstain"]
VERDICTS: Final[tuple[str, ...]] = get_args(Verdict)
OUTCOMES: Final = ("passed", "failed")
OFFLINE_JUDGE: Final = "offline"
CRITIC_THRESHOLD: Final[float] = Settings.model_fields["critic_threshold"].default
"""The run's default critic threshold (`Settings.critic_threshold`, `RESEARCH_AGENT_CRITIC_THRESHOLD`):
a report scored below it is revised; here, an item scored below it is one the critic failed."""

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# --- the judgement file ---------------------------------------------------------------------------


class JudgementCitation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1)
    quote: str = Field(min_length=1)


class JudgementItem(BaseModel):
    """One labelled answer: what a person decided the answer is worth, and why (`note`)."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    answer: str
    citations: list[JudgementCitation] = Field(default_factory=list)
    verdict: Verdict
    note: str
    subject: str | None = None


class JudgementSet(BaseModel):
    """`datasets/judgements.yaml`: `{version: 1, items: [...]}`; items are validated one by one."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    items: list[dict[str, Any]] = Field(min_length=1)


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())


def _item_label(number: int, raw: dict[str, Any]) -> str:
    question = raw.get("question")
    return f"item {number}" + (f" ({' '.join(question.split())[:60]!r})" if isinstance(question, str) else "")


def load_judgements(path: Path) -> list[JudgementItem]:
    """The file's items; `UsageError` naming the file (and the item, numbered from 1) on bad input."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the judgements file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from exc
    try:
        judgement_set = JudgementSet.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{path}: {_errors(exc)}") from exc
    items: list[JudgementItem] = []
    for number, raw in enumerate(judgement_set.items, start=1):
        try:
            items.append(JudgementItem.model_validate(raw))
        except ValidationError as exc:
            raise UsageError(f"{path}: {_item_label(number, raw)}: {_errors(exc)}") from exc
    return items


# --- targets --------------------------------------------------------------------------------------


class JudgeTargets(BaseModel):
    """Minimum figures for one critic, from `judges:` in `datasets/gate.yaml` (by judge name, else `default`)."""

    model_config = ConfigDict(extra="forbid")

    wrong_caught: float = Field(ge=0, le=1)
    correct_passed: float = Field(ge=0, le=1)


def judge_targets(gate_path: Path, judge: str, *, judgements: str = "judgements") -> JudgeTargets | None:
    """The targets for `judge` on the `judgements` file (by stem) in the gate config's `judges:` section:
    `<judge>:<stem>`, else `<judge>`, else `default`."""
    try:
        section = load_gate_config(gate_path).judges
        raw = section.get(f"{judge}:{judgements}", section.get(judge, section.get("default")))
        return None if raw is None else JudgeTargets.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise UsageError(f"{gate_path}: {exc}") from exc


# --- grading --------------------------------------------------------------------------------------

Grader = Callable[[JudgementItem], Awaitable[Critique]]


@cache
def reference_pages() -> dict[str, tuple[str, str]]:
    """The bundled Python docs as the corpus indexes them, url -> (title, text), built once per process
    (no database): the pages a run would have fetched under the items' URLs."""
    documents, _ = build_python_docs()
    return {doc.url: (doc.title, doc.body) for doc in documents}


def _page(url: str, quotes: Sequence[str], pages: Mapping[str, tuple[str, str]]) -> FetchedPage:
    """The page a run would have fetched at `url`; for a URL outside the corpus, the quoted text only."""
    title, text = pages.get(url, ("", "\n\n".join(quotes)))
    return FetchedPage(
        url=url,
        final_url=url,
        status_code=200,
        content_type="text/plain",
        title=title,
        text=text,
        fetched_at=datetime.now(UTC),
    )


def _report(item: JudgementItem) -> tuple[ResearchReport, dict[str, FetchedPage]]:
    """The item as the critic sees a run's report: each cited URL counts as fetched."""
    citations = [Citation.model_construct(url=c.url, title="", quote=c.quote) for c in item.citations]
    report = ResearchReport.model_construct(answer=item.answer, citations=citations, unresolved=[])
    pages = reference_pages()
    fetched = {
        url: _page(url, [c.quote for c in item.citations if c.url == url], pages)
        for url in dict.fromkeys(c.url for c in item.citations)
    }
    return report, fetched


async def _offline_grade(item: JudgementItem) -> Critique:
    _, pages = _report(item)
    cited = [Cited(c.quote, quote_section(pages[c.url].title, pages[c.url].text, c.quote)) for c in item.citations]
    return offline_critique(item.question, item.answer, cited)


def llm_grader(model: Model) -> Grader:
    """The run's critic agent (its prompt and the shared rubric) with `model`."""

    async def grade(item: JudgementItem) -> Critique:
        report, pages = _report(item)
        result = await critic_agent().run(critique_request(item.question, report, pages), model=model)
        return result.output

    return grade


@dataclass(repr=False)
class CriticOutcome(Evaluator[JudgementItem, Critique, dict[str, str]]):
    """Labels a case `passed` (score at or above the threshold) or `failed`, and reports the score."""

    threshold: float = CRITIC_THRESHOLD

    def evaluate(self, ctx: EvaluatorContext[JudgementItem, Critique, dict[str, str]]) -> dict[str, str | float]:
        return {"critic": "passed" if ctx.output.score >= self.threshold else "failed", "score": ctx.output.score}


@dataclass(frozen=True, kw_only=True)
class JudgedItem:
    number: int
    """Position in the file, from 1."""
    item: JudgementItem
    critique: Critique
    passed: bool

    @property
    def disagrees(self) -> bool:
        """A `wrong` answer the critic passed, or a `correct` one it failed."""
        return (self.item.verdict == "wrong" and self.passed) or (self.item.verdict == "correct" and not self.passed)


@dataclass(kw_only=True)
class JudgesResult:
    judge: str
    threshold: float
    path: Path
    judged: list[JudgedItem]
    matrix: dict[str, dict[str, int]]
    """Labelled verdict → critic outcome (`passed`/`failed`) → items."""
    targets: JudgeTargets | None = None
    errors: list[str] = field(default_factory=list)
    """Items the critic could not grade (`item N: error`)."""

    def _share(self, verdict: str, outcome: str) -> float | None:
        row = self.matrix.get(verdict, {})
        total = sum(row.values())
        return row.get(outcome, 0) / total if total else None

    @property
    def wrong_caught(self) -> float | None:
        return self._share("wrong", "failed")

    @property
    def correct_passed(self) -> float | None:
        return self._share("correct", "passed")

    def shortfalls(self) -> list[str]:
        """Figures below their targets; a figure with no items to measure counts as below."""
        if self.targets is None:
            return []
        figures = {"wrong caught": (self.wrong_caught, self.targets.wrong_caught)}
        figures["correct passed"] = (self.correct_passed, self.targets.correct_passed)
        return [
            f"{name} {'n/a' if value is None else f'{value:.2f}'} < {target:.2f}"
            for name, (value, target) in figures.items()
            if value is None or value < target
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "wrong_caught": self.wrong_caught,
            "correct_passed": self.correct_passed,
            "items": len(self.judged),
            "judge": self.judge,
            "threshold": self.threshold,
            "judgements": str(self.path),
            "counts": {verdict: sum(row.values()) for verdict, row in self.matrix.items()},
            "confusion_matrix": {
                "rows": list(self.matrix),
                "columns": list(OUTCOMES),
                "matrix": [[row[outcome] for outcome in OUTCOMES] for row in self.matrix.values()],
            },
            "targets": None if self.targets is None else self.targets.model_dump(),
            "passed": not self.shortfalls(),
            "shortfalls": self.shortfalls(),
            "disagreements": [_item_json(j) for j in self.judged if j.disagrees],
        }


def _item_json(judged: JudgedItem) -> dict[str, Any]:
    return {
        "item": judged.number,
        "question": judged.item.question,
        "verdict": judged.item.verdict,
        "score": judged.critique.score,
        "passed": judged.passed,
        "reasons": judged.critique.issues,
    }


def _project(matrix: ConfusionMatrix) -> dict[str, dict[str, int]]:
    """pydantic-evals' square matrix (union of labels on both axes) → verdict rows x passed/failed columns."""
    index = {label: i for i, label in enumerate(matrix.class_labels)}
    return {
        verdict: {
            outcome: (matrix.matrix[index[verdict]][index[outcome]] if verdict in index and outcome in index else 0)
            for outcome in OUTCOMES
        }
        for verdict in VERDICTS
    }


def _confusion(report: EvaluationReport[JudgementItem, Critique, dict[str, str]]) -> ConfusionMatrix:
    matrices = [a for a in report.analyses if isinstance(a, ConfusionMatrix)]
    if not matrices:  # pydantic-evals records a failing report evaluator as a failure, not an analysis
        raise UsageError(f"the confusion matrix could not be computed: {report.report_evaluator_failures}")
    return matrices[0]


async def run_judges(
    items: Sequence[JudgementItem],
    *,
    grader: Grader,
    judge: str,
    path: Path,
    threshold: float = CRITIC_THRESHOLD,
    targets: JudgeTargets | None = None,
    max_concurrency: int = 4,
) -> JudgesResult:
    """Grade every item as a pydantic-evals experiment and count labelled verdict x critic outcome."""
    dataset = Dataset[JudgementItem, Critique, dict[str, str]](
        name="judgements",
        cases=[
            Case(name=f"item {n}", inputs=item, metadata={"verdict": item.verdict})
            for n, item in enumerate(items, start=1)
        ],
        evaluators=[CriticOutcome(threshold=threshold)],
        report_evaluators=[
            ConfusionMatrixEvaluator(
                predicted_from="labels",
                predicted_key="critic",
                expected_from="metadata",
                expected_key="verdict",
                title="Critic vs labelled verdict",
            )
        ],
    )
    report = await dataset.evaluate(grader, name=judge, max_concurrency=max_concurrency, progress=False)
    judged = [
        JudgedItem(
            number=int(case.name.removeprefix("item ")),
            item=case.inputs,
            critique=case.output,
            passed=case.output.score >= threshold,
        )
        for case in report.cases
    ]
    judged.sort(key=lambda j: j.number)
    return JudgesResult(
        judge=judge,
        threshold=threshold,
        path=path,
        judged=judged,
        matrix=_project(_confusion(report)),
        targets=targets,
        errors=[f"{failure.name}: {failure.error_message}" for failure in report.failures],
    )


# --- output ---------------------------------------------------------------------------------------


def _figure(value: float | None, target: float | None) -> str:
    text = "n/a" if value is None else f"{value:.2f}"
    if target is None:
        return text
    ok = value is not None and value >= target
    return f"[{'green' if ok else 'red'}]{text}[/] (target ≥ {target:.2f})"


def _count(result: JudgesResult, verdict: str) -> str:
    return f"{sum(result.matrix[verdict].values())} {verdict} items"


def print_judges(result: JudgesResult, console: Console) -> None:
    matrix = Table(title=f"critic {result.judge} vs labelled verdict · threshold {result.threshold:.2f}")
    matrix.add_column("verdict")
    for outcome in OUTCOMES:
        matrix.add_column(f"critic {outcome}", justify="right")
    matrix.add_column("items", justify="right")
    for verdict, row in result.matrix.items():
        matrix.add_row(verdict, *(str(row[o]) for o in OUTCOMES), str(sum(row.values())))
    console.print(matrix)
    targets = result.targets
    wrong_target = None if targets is None else targets.wrong_caught
    correct_target = None if targets is None else targets.correct_passed
    console.print(f"wrong caught:   {_figure(result.wrong_caught, wrong_target)} of {_count(result, 'wrong')}")
    console.print(f"correct passed: {_figure(result.correct_passed, correct_target)} of {_count(result, 'correct')}")
    disagreements = [j for j in result.judged if j.disagrees]
    if disagreements:
        table = Table(title=f"{len(disagreements)} disagreements (wrong passed, correct failed)", show_lines=True)
        for column in ("#", "verdict", "score", "question", "critic's reasons"):
            table.add_column(column, overflow="fold")
        for j in disagreements:
            reasons = "; ".join(j.critique.issues) or "no issues"
            table.add_row(str(j.number), j.item.verdict, f"{j.critique.score:.2f}", j.item.question, reasons)
        console.print(table)


# --- command --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evals judges",
        description="Grade the labelled judgements with the critic; exit 1 when it misses its targets.",
    )
    parser.add_argument("--judgements", type=Path, default=None, help="default: datasets/judgements.yaml")
    parser.add_argument("--judge", default=OFFLINE_JUDGE, help="`offline` (default) or a pydantic-ai model name")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--gate-config", type=Path, default=None, help="default: datasets/gate.yaml")
    parser.add_argument("--max-concurrency", type=int, default=4)
    return parser


async def _grade(args: argparse.Namespace, path: Path, model: Model | None) -> JudgesResult:
    items = load_judgements(path)
    gate = args.gate_config or default_datasets_dir() / "gate.yaml"
    targets = judge_targets(gate, args.judge, judgements=path.stem)
    if args.judge == OFFLINE_JUDGE:
        return await run_judges(items, grader=_offline_grade, judge=args.judge, path=path, targets=targets)
    settings = Settings.load()  # a bad variable is named: ConfigurationError, exit 2
    async with retrying_http_client(settings) as client:
        resolved = model or resolve_model(args.judge, settings=settings, http_client=client)
        return await run_judges(
            items,
            grader=llm_grader(resolved),
            judge=args.judge,
            path=path,
            targets=targets,
            max_concurrency=args.max_concurrency,
        )


def judges_main(argv: Sequence[str], *, console: Console | None = None, model: Model | None = None) -> int:
    """The `judges` subcommand. `model` stands in for the `--judge` model name (tests pass a FunctionModel)."""
    args = _parser().parse_args(list(argv))
    console = console or Console()
    path: Path = args.judgements or default_datasets_dir() / "judgements.yaml"
    try:
        result = asyncio.run(_grade(args, path, model))
    except ResearchAgentError as exc:  # UsageError, ConfigurationError (an unknown model, a missing key)
        console.print(f"[red]error:[/red] {exc}")
        return EXIT_USAGE
    if result.errors:
        console.print(f"[red]error:[/red] the critic could not grade {len(result.errors)} items:")
        for error in result.errors:
            console.print(f"  - {error}")
        return EXIT_USAGE
    if args.json:
        console.print(json.dumps(result.to_json(), indent=2), markup=False, highlight=False, soft_wrap=True)
    else:
        print_judges(result, console)
        for shortfall in result.shortfalls():
            console.print(f"[bold red]below target:[/bold red] {shortfall}")
    return EXIT_FAILED if result.shortfalls() else EXIT_PASSED
