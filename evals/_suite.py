"""One eval invocation: run each dataset through pydantic-evals, then gate it against its baseline."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic_evals.reporting import EvaluationReport

from agent.errors import ResearchAgentError
from agent.prompts import research_prompt
from agent.settings import is_offline_model
from evals._datasets import ResearchDataset, default_datasets_dir, load_dataset
from evals._evaluators import critic_for, critic_version
from evals._gate import (
    Baseline,
    GateConfig,
    baseline_path,
    git_revision,
    load_baseline,
    load_gate_config,
    new_baseline,
    save_baseline,
)
from evals._task import EvalEnvironment, open_environment
from evals._types import CaseMetadata, EvalInputs, EvalOutput
from evals._verdict import GateResult, judge_scores

__all__ = [
    "CaseResult",
    "DatasetResult",
    "SuiteOptions",
    "SuiteResult",
    "UsageError",
    "default_dataset_paths",
    "run_suite",
]

OFFLINE_DATASETS = (
    "python_reference.yaml",
    "adversarial.yaml",
    "python_newcomer.yaml",
    "python_newcomer_unseen.yaml",
)
ONLINE_DATASETS = (*OFFLINE_DATASETS, "web_research.yaml")


class UsageError(ResearchAgentError):
    """A request the suite cannot honour (bad path, a web dataset with the offline model...): exit 2."""


@dataclass(frozen=True, kw_only=True)
class SuiteOptions:
    model: str = "offline"
    datasets: Sequence[Path] = ()
    """Empty: the defaults for the model (`default_dataset_paths`)."""
    repeat: int = 1
    bless: bool = False
    max_concurrency: int = 4
    judge_model: str | None = None
    baseline_dir: Path | None = None
    """Default: `datasets/baselines`."""
    gate_config: Path | None = None
    """Default: `datasets/gate.yaml`."""
    server_url: str | None = None
    """A PostgreSQL server to create the fresh eval database on (default: DATABASE_URL or embedded)."""
    progress: bool = False


@dataclass(kw_only=True)
class CaseResult:
    """A case over its repeats: one output per successful run, scores and reasons per evaluator."""

    name: str
    inputs: EvalInputs
    metadata: CaseMetadata | None
    outputs: list[EvalOutput] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, reason: str) -> None:
        self.scores.setdefault(name, []).append(value)
        self.reasons.setdefault(name, []).append(reason)


@dataclass(kw_only=True)
class DatasetResult:
    name: str
    path: Path
    cases: list[CaseResult]
    gate: GateResult
    baseline: Baseline | None
    baseline_file: Path
    blessed: bool = False

    def scores(self) -> dict[str, dict[str, list[float]]]:
        return {case.name: case.scores for case in self.cases}


@dataclass(kw_only=True)
class SuiteResult:
    model: str
    prompt_version: str
    judge_version: str
    git_revision: str | None
    repeat: int
    datasets: list[DatasetResult]
    duration_seconds: float
    blessed: bool = False

    @property
    def passed(self) -> bool:
        return all(d.gate.passed for d in self.datasets)

    @property
    def failures(self) -> list[str]:
        return [reason for d in self.datasets for reason in d.gate.failures]


def default_dataset_paths(model: str, directory: Path | None = None) -> list[Path]:
    """The offline model runs the corpus datasets; a real model also researches the live web."""
    directory = directory or default_datasets_dir()
    names = OFFLINE_DATASETS if is_offline_model(model) else ONLINE_DATASETS
    return [directory / name for name in names]


def _load(paths: Sequence[Path], model: str) -> list[tuple[Path, ResearchDataset]]:
    loaded: list[tuple[Path, ResearchDataset]] = []
    for path in paths:
        if not path.is_file():
            raise UsageError(f"no dataset at {path}")
        try:
            dataset = load_dataset(path)
        except (ValueError, ExceptionGroup, yaml.YAMLError) as exc:
            raise UsageError(f"{path} is not a valid dataset: {exc}") from exc
        if is_offline_model(model) and any(case.inputs.search == "web" for case in dataset.cases):
            raise UsageError(f"{path.name} researches the live web: run it with a real model (--model provider:name)")
        loaded.append((path, dataset))
    return loaded


def collect(report: EvaluationReport[EvalInputs, EvalOutput, CaseMetadata]) -> list[CaseResult]:
    """Group report cases by their source case; a failed run or evaluator scores 0 so it cannot hide."""
    by_name: dict[str, CaseResult] = {}

    def case_for(name: str, inputs: EvalInputs, metadata: CaseMetadata | None) -> CaseResult:
        return by_name.setdefault(name, CaseResult(name=name, inputs=inputs, metadata=metadata))

    names: set[str] = set()
    for rc in report.cases:
        result = case_for(rc.source_case_name or rc.name, rc.inputs, rc.metadata)
        result.outputs.append(rc.output)
        for name, score in rc.scores.items():
            result.add(name, float(score.value), score.reason or "")
            names.add(name)
        for failure in rc.evaluator_failures:
            result.add(failure.name, 0.0, f"evaluator failed: {failure.error_message}")
            result.errors.append(f"{failure.name}: {failure.error_message}")
    for failed in report.failures:
        result = case_for(failed.source_case_name or failed.name, failed.inputs, failed.metadata)
        result.errors.append(f"run failed: {failed.error_message}")
        for name in names:
            result.add(name, 0.0, f"run failed: {failed.error_message}")
    return sorted(by_name.values(), key=lambda c: c.name)


async def evaluate_dataset(
    dataset: ResearchDataset,
    env: EvalEnvironment,
    *,
    model: str,
    repeat: int = 1,
    max_concurrency: int = 4,
    judge_model: str | None = None,
    progress: bool = False,
) -> list[CaseResult]:
    """The dataset's own evaluators plus the critic that fits the model."""
    dataset.evaluators = [*dataset.evaluators, critic_for(model, judge_model=judge_model)]
    report = await dataset.evaluate(
        env.research,
        name=f"{dataset.name} · {model}",
        max_concurrency=max_concurrency,
        repeat=repeat,
        progress=progress,
    )
    return collect(report)


async def run_suite(options: SuiteOptions) -> SuiteResult:
    """Run every dataset on one fresh database, gate each against its baseline, bless if asked."""
    if options.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    if options.max_concurrency < 1:
        raise UsageError("--max-concurrency must be at least 1")
    started = time.perf_counter()
    datasets_dir = default_datasets_dir()
    paths = list(options.datasets) or default_dataset_paths(options.model, datasets_dir)
    loaded = _load(paths, options.model)
    baselines_dir = options.baseline_dir or datasets_dir / "baselines"
    config: GateConfig = load_gate_config(options.gate_config or datasets_dir / "gate.yaml")
    judge_version = critic_version(options.model, judge_model=options.judge_model)
    prompt_version = research_prompt().version
    revision = git_revision(datasets_dir.parent)

    results: list[DatasetResult] = []
    async with open_environment(options.model, server_url=options.server_url) as env:
        for path, dataset in loaded:
            cases = await evaluate_dataset(
                dataset,
                env,
                model=options.model,
                repeat=options.repeat,
                max_concurrency=options.max_concurrency,
                judge_model=options.judge_model,
                progress=options.progress,
            )
            file = baseline_path(baselines_dir, dataset.name, options.model)
            baseline = load_baseline(file)
            scores = {case.name: case.scores for case in cases}
            gate = judge_scores(dataset.name, scores, baseline, config=config, judge_version=judge_version)
            result = DatasetResult(
                name=dataset.name, path=path, cases=cases, gate=gate, baseline=baseline, baseline_file=file
            )
            if options.bless:
                save_baseline(
                    file,
                    new_baseline(
                        dataset=dataset.name,
                        model=options.model,
                        prompt_version=prompt_version,
                        judge_version=judge_version,
                        repeat=options.repeat,
                        scores=scores,
                        revision=revision,
                    ),
                )
                result.blessed = True
            results.append(result)
    return SuiteResult(
        model=options.model,
        prompt_version=prompt_version,
        judge_version=judge_version,
        git_revision=revision,
        repeat=options.repeat,
        datasets=results,
        duration_seconds=time.perf_counter() - started,
        blessed=options.bless,
    )
