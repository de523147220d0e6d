"""One eval invocation: run each dataset through pydantic-evals, then gate it against its baseline."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import yaml
from pydantic_evals.evaluators import Evaluator
from pydantic_evals.reporting import EvaluationReport

import agent
from agent.errors import ConfigurationError, ResearchAgentError
from agent.models import ModelSpec, check_model
from agent.prompts import Prompt, research_prompt
from agent.review import critic_rubric
from agent.settings import Settings, is_offline_model
from evals._compare import Comparison
from evals._cost import NOT_RUN, CostCap
from evals._datasets import ResearchDataset, dataset_version, default_datasets_dir, load_dataset
from evals._evaluators import LLMCritic, critic_for, critic_version
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
from evals._verdict import DatasetScores, GateResult, judge_suite

__all__ = [
    "CaseResult",
    "DatasetResult",
    "SuiteOptions",
    "SuiteResult",
    "UsageError",
    "changed_prompts",
    "check_models",
    "default_dataset_paths",
    "evaluate_dataset",
    "load_datasets",
    "parse_prompt_versions",
    "prompt_note",
    "prompt_versions",
    "run_failures",
    "run_suite",
]

OFFLINE_DATASETS = (
    "python_reference.yaml",
    "adversarial.yaml",
    "python_newcomer.yaml",
    "python_newcomer_unseen.yaml",
)
ONLINE_DATASETS = (*OFFLINE_DATASETS, "web_research.yaml")
NOT_RUN_SHOWN = 10
"""Cases a failure line names before "… and N more" (the JSON report's `not_run` has them all)."""


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
    max_cost: Decimal | None = None
    """Dollars the whole eval may spend; runs that would pass it are not started (`evals._cost`)."""
    require_live: bool = False
    """Fail when a prompt changed but the model does not read it (the offline model)."""


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
    not_run: int = 0
    """Repeats the cost cap did not let start: not scored, and the gate fails."""

    def add(self, name: str, value: float, reason: str) -> None:
        self.scores.setdefault(name, []).append(value)
        self.reasons.setdefault(name, []).append(reason)


@dataclass(kw_only=True)
class DatasetResult:
    name: str
    path: Path
    version: str = ""
    """`dataset_version` of the file that ran."""
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
    """The research prompt's version (what runs record); `prompt_versions` has every prompt's."""
    judge_version: str
    git_revision: str | None
    repeat: int
    datasets: list[DatasetResult]
    duration_seconds: float
    blessed: bool = False
    family: Comparison | None = None
    """The one regression test over every (dataset, evaluator) pair that has a baseline."""
    notes: list[str] = field(default_factory=list)
    """What the run did not judge (a prompt change the model does not read) and similar."""
    require_live: bool = False
    prompt_unevaluated: bool = False
    unevaluated_prompts: list[str] = field(default_factory=list)
    """The prompts that changed since a baseline but that the model does not read (`prompt_unevaluated`)."""
    prompt_versions: dict[str, str] = field(default_factory=dict)
    """name → `name@hash` of every prompt a run reads (`prompt_versions()`)."""
    cost: CostCap | None = None

    @property
    def not_run(self) -> list[str]:
        return [f"{d.name}/{c.name} ×{c.not_run}" for d in self.datasets for c in d.cases if c.not_run]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[str]:
        return [reason for d in self.datasets for reason in d.gate.failures] + run_failures(
            not_run=self.not_run,
            cost_limit=self.cost.limit if self.cost else None,
            require_live=self.require_live,
            prompt_unevaluated=self.prompt_unevaluated,
            prompts=self.unevaluated_prompts,
        )


def run_failures(
    *,
    not_run: Sequence[str],
    cost_limit: Decimal | None,
    require_live: bool,
    prompt_unevaluated: bool,
    prompts: Sequence[str] = (),
) -> list[str]:
    """What fails any gate run besides its scores: cases the cost cap did not run (the first NOT_RUN_SHOWN
    named; reports' JSON lists them all), and (with --require-live) a change to `prompts` that no model that
    reads prompts has judged."""
    reasons: list[str] = []
    if not_run:
        shown = ", ".join(not_run[:NOT_RUN_SHOWN])
        more = len(not_run) - NOT_RUN_SHOWN
        reasons.append(
            f"the cost cap (${cost_limit}) stopped the eval: {len(not_run)} case(s) not run in full"
            f" ({shown}{f' … and {more} more (see the JSON report)' if more > 0 else ''})"
        )
    if require_live and prompt_unevaluated:
        names = ", ".join(prompts) if prompts else "a"
        plural = "s" if len(prompts) > 1 else ""
        reasons.append(
            f"--require-live: the {names} prompt{plural} changed and no model that reads prompts judged the change"
        )
    return reasons


def check_models(models: Mapping[str, ModelSpec | None]) -> None:
    """UsageError unless every named model resolves (`agent.models.check_model`: the resolution a run uses,
    with keys from this process, nothing sent), so a typo fails before any estimate, server or run.
    `models` maps the flag that named it (`--model`) to the spec; `Model` instances and None are skipped."""
    settings: Settings | None = None
    for source, spec in models.items():
        if not isinstance(spec, str) or is_offline_model(spec):
            continue
        if spec == "auto":  # baselines and reports are per model: the gate must know which one ran
            raise UsageError(f"{source} auto: name the model the gate is about (`offline` or `provider:NAME`)")
        try:
            settings = settings or Settings.load()
            check_model(spec, settings=settings, source=source)
        except ConfigurationError as exc:
            raise UsageError(str(exc)) from exc


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
        if NOT_RUN in failed.error_message:
            result.not_run += 1
            continue
        result.errors.append(f"run failed: {failed.error_message}")
        for name in names:
            result.add(name, 0.0, f"run failed: {failed.error_message}")
    return sorted(by_name.values(), key=lambda c: c.name)


async def evaluate_dataset(
    dataset: ResearchDataset,
    env: EvalEnvironment,
    *,
    critic: Evaluator[EvalInputs, EvalOutput, CaseMetadata],
    label: str,
    repeat: int = 1,
    max_concurrency: int = 4,
    cap: CostCap | None = None,
    progress: bool = False,
) -> list[CaseResult]:
    """The dataset's own evaluators plus `critic`; with `cap`, a run starts only if its worst case fits."""
    evaluated = dataset.model_copy(update={"evaluators": [*dataset.evaluators, critic]})
    report = await evaluated.evaluate(
        _capped(env.research, cap),
        name=f"{dataset.name} · {label}",
        max_concurrency=max_concurrency,
        repeat=repeat,
        progress=progress,
    )
    return collect(report)


def _capped(
    research: Callable[[EvalInputs], Awaitable[EvalOutput]], cap: CostCap | None
) -> Callable[[EvalInputs], Awaitable[EvalOutput]]:
    if cap is None:
        return research

    async def task(inputs: EvalInputs) -> EvalOutput:
        cap.reserve()  # NotRun: collected as "not run", not as a failure
        cost: Decimal | None = None
        try:
            output = await research(inputs)
            cost = Decimal(str(output.cost_usd))
            return output
        finally:
            cap.settle(cost)

    return task


PROMPTS_ROOT = Path(agent.__file__).resolve().parent.parent
"""Where this code's `agent` package is: the root `prompt_versions` reads by default."""


def prompt_versions(root: Path = PROMPTS_ROOT) -> dict[str, str]:
    """name → `name@hash` of every prompt a run reads: each `agent/prompts/*.md` (research, critic, revise...)
    and the critic's rubric (`agent/review/rubric.md`), in the code at `root` (another revision's checkout,
    or by default this code). Hashed as `agent.prompts.Prompt.version` hashes them, from the files, so a base
    revision's prompts are read from its checkout whatever its own evals report."""
    files = {path.stem: path for path in sorted((root / "agent" / "prompts").glob("*.md"))}
    rubric = root / "agent" / "review" / "rubric.md"
    if rubric.is_file():
        files[critic_rubric().name] = rubric
    return {
        name: Prompt(name=name, text=files[name].read_text(encoding="utf-8").strip()).version
        for name in sorted(files, key=_research_first)
    }


def _research_first(name: str) -> tuple[bool, str]:
    return (name != "research", name)


def parse_prompt_versions(text: str) -> dict[str, str]:
    """A single recorded `name@hash` (what a baseline or report knew before every prompt was recorded) as
    {name: version}: an older baseline's `research@…` is {"research": …}."""
    return {version.partition("@")[0]: version for version in text.split()}


def changed_prompts(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The names of the prompts that differ, research first; a prompt only one side has changed too."""
    return sorted(
        (name for name in set(before) | set(after) if before.get(name) != after.get(name)), key=_research_first
    )


def prompt_note(*, before: Mapping[str, str], after: Mapping[str, str], reads_prompt: bool) -> str | None:
    """Say so when a prompt changed but the model never reads prompts: the change was not evaluated.
    `before`/`after`: name → version of each side's prompts."""
    changes = [f"{before.get(name, '(none)')} → {after.get(name, '(none)')}" for name in changed_prompts(before, after)]
    if not changes or reads_prompt:
        return None
    return (
        f"the prompts changed ({'; '.join(changes)}) but the offline model does not read prompts:"
        " the prompt change was NOT evaluated (gate it with a real model: --model ... --against origin/main)"
    )


def load_datasets(options: SuiteOptions) -> list[tuple[Path, ResearchDataset]]:
    """The datasets the options name (default: those for the model), validated; UsageError otherwise."""
    paths = list(options.datasets) or default_dataset_paths(options.model, default_datasets_dir())
    return _load(paths, options.model)


async def run_suite(options: SuiteOptions, *, cap: CostCap | None = None) -> SuiteResult:
    """Run every dataset on one fresh database, gate them against their baselines as one family, bless
    if asked. `cap` bounds the spend (`evals._cost`); runs it refuses are reported as not run."""
    if options.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    if options.max_concurrency < 1:
        raise UsageError("--max-concurrency must be at least 1")
    started = time.perf_counter()
    datasets_dir = default_datasets_dir()
    loaded = load_datasets(options)
    baselines_dir = options.baseline_dir or datasets_dir / "baselines"
    config: GateConfig = load_gate_config(options.gate_config or datasets_dir / "gate.yaml")
    judge_version = critic_version(options.model, judge_model=options.judge_model)
    prompt_version = research_prompt().version
    prompts = prompt_versions()
    revision = git_revision(datasets_dir.parent)
    critic = critic_for(options.model, judge_model=options.judge_model)
    check_models({"--model": options.model, "--judge-model": critic.model if isinstance(critic, LLMCritic) else None})

    runs: list[tuple[Path, ResearchDataset, list[CaseResult], Path, Baseline | None]] = []
    async with open_environment(options.model, server_url=options.server_url) as env:
        for path, dataset in loaded:
            cases = await evaluate_dataset(
                dataset,
                env,
                critic=critic,
                label=options.model,
                repeat=options.repeat,
                max_concurrency=options.max_concurrency,
                cap=cap,
                progress=options.progress,
            )
            file = baseline_path(baselines_dir, dataset.name, options.model)
            runs.append((path, dataset, cases, file, load_baseline(file)))
    gates, family = judge_suite(
        [
            DatasetScores(name=dataset.name, current={c.name: c.scores for c in cases}, baseline=baseline)
            for _, dataset, cases, _, baseline in runs
        ],
        config=config,
        judge_version=judge_version,
    )
    results: list[DatasetResult] = []
    for (path, dataset, cases, file, baseline), gate in zip(runs, gates, strict=True):
        result = DatasetResult(
            name=dataset.name,
            path=path,
            version=dataset_version(path),
            cases=cases,
            gate=gate,
            baseline=baseline,
            baseline_file=file,
        )
        if options.bless:
            save_baseline(
                file,
                new_baseline(
                    dataset=dataset.name,
                    model=options.model,
                    prompt_version=prompt_version,
                    prompt_versions=prompts,
                    judge_version=judge_version,
                    repeat=options.repeat,
                    scores={case.name: case.scores for case in cases},
                    revision=revision,
                    dataset_version=dataset_version(path),
                    answers={case.name: case.outputs[0].answer for case in cases if case.outputs},
                ),
            )
            result.blessed = True
        results.append(result)
    notes: set[str] = set()
    unevaluated: set[str] = set()
    unrecorded: dict[str, list[str]] = {}
    reads_prompt = not is_offline_model(options.model)
    for _, dataset, _, _, baseline in runs:
        if baseline is None:
            continue
        # A baseline blessed before every prompt was recorded knows only the research prompt's version.
        recorded = baseline.prompt_versions or parse_prompt_versions(baseline.prompt_version)
        now = {name: version for name, version in prompts.items() if name in recorded}
        note = prompt_note(before=recorded, after=now, reads_prompt=reads_prompt)
        if note:
            notes.add(note)
            unevaluated.update(changed_prompts(recorded, now))
        for name in sorted(set(prompts) - set(recorded)):
            unrecorded.setdefault(name, []).append(dataset.name)
    if unrecorded and not reads_prompt:
        notes.add(
            f"the baselines record no version of the {', '.join(unrecorded)} prompt(s)"
            f" ({', '.join(sorted({d for names in unrecorded.values() for d in names}))}):"
            " a change to them since the baseline cannot be seen here (--bless records them)"
        )
    return SuiteResult(
        model=options.model,
        prompt_version=prompt_version,
        judge_version=judge_version,
        git_revision=revision,
        repeat=options.repeat,
        datasets=results,
        duration_seconds=time.perf_counter() - started,
        blessed=options.bless,
        family=family,
        notes=sorted(notes, key=lambda note: ("NOT evaluated" not in note, note)),
        require_live=options.require_live,
        prompt_unevaluated=bool(unevaluated),
        unevaluated_prompts=sorted(unevaluated, key=_research_first),
        prompt_versions=prompts,
        cost=cap,
    )
