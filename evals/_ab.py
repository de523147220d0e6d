"""A/B in one job: the base and the change on the same cases, the same repeats, at the same time.

`--against REF` checks `REF` out in a temporary git worktree and runs its own evals there (`CheckoutSide`);
`--against-model OTHER` runs this code with another model (`InProcessSide`). Round r of both sides runs
concurrently, round after round, so provider drift during the job falls on both sides alike, and the
per-case differences are tested as one family with `evals.compare` (decision 0021). No stored baseline is
involved: a prompt, tool or model-setting change is judged against the code it would replace, today.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from pydantic_evals.evaluators import Evaluator

from agent.models import ModelSpec, model_label
from evals._compare import Comparison, combine, compare
from evals._cost import CostCap
from evals._datasets import default_datasets_dir
from evals._evaluators import critic_for, critic_version
from evals._gate import CaseScores, load_gate_config
from evals._sides import CheckoutSide, InProcessSide, Round, Side, SideCase, SideInfo
from evals._suite import (
    SuiteOptions,
    UsageError,
    changed_prompts,
    check_models,
    load_datasets,
    prompt_note,
    run_failures,
)
from evals._task import eval_server
from evals._types import CaseMetadata, EvalInputs, EvalOutput

__all__ = ["ABDataset", "ABOptions", "ABResult", "resolve_revision", "run_ab", "worktree"]


@dataclass(frozen=True, kw_only=True)
class ABOptions:
    model: ModelSpec = "offline"
    against: str | None = None
    """A git revision: its own code is the base side (`CheckoutSide`)."""
    against_model: ModelSpec | None = None
    """Another model on this code as the base side (`InProcessSide`)."""
    datasets: Sequence[Path] = ()
    repeat: int = 1
    max_concurrency: int = 4
    judge_model: str | None = None
    critic: Evaluator[EvalInputs, EvalOutput, CaseMetadata] | None = None
    """The `critic` evaluator for both in-process sides (default: `critic_for` the model)."""
    gate_config: Path | None = None
    server_url: str | None = None
    max_cost: Decimal | None = None
    """Dollars for the whole A/B (both sides); each side may spend half."""
    per_run: Decimal = Decimal(0)
    """A case run's worst case (`worst_case_per_run`), reserved against the cap before it starts."""
    judge_per_run: Decimal = Decimal(0)
    require_live: bool = False
    repo: Path | None = None
    """The git repository `against` is resolved in (default: the one this code is in)."""


@dataclass(kw_only=True)
class ABDataset:
    name: str
    base: dict[str, SideCase]
    current: dict[str, SideCase]

    def scores(self, side: str) -> CaseScores:
        cases = self.current if side == "current" else self.base
        return {name: case.scores for name, case in cases.items() if case.scores}


@dataclass(kw_only=True)
class ABResult:
    base: SideInfo
    current: SideInfo
    datasets: list[ABDataset]
    family: Comparison
    repeat: int
    duration_seconds: float
    notes: list[str] = field(default_factory=list)
    require_live: bool = False
    max_cost: Decimal | None = None

    @property
    def prompt_note(self) -> str | None:
        """Set when any prompt differs but a side's model never reads prompts: the change was not evaluated."""
        return prompt_note(
            before=self.base.versions,
            after=self.current.versions,
            reads_prompt=self.base.reads_prompt and self.current.reads_prompt,
        )

    @property
    def prompt_unevaluated(self) -> bool:
        return self.prompt_note is not None

    @property
    def unevaluated_prompts(self) -> list[str]:
        """The prompts that differ between the sides when that difference was not evaluated."""
        return changed_prompts(self.base.versions, self.current.versions) if self.prompt_unevaluated else []

    @property
    def not_run(self) -> list[str]:
        return [
            f"{side}:{d.name}/{c.name} ×{c.not_run}"
            for d in self.datasets
            for side, cases in (("base", d.base), ("current", d.current))
            for c in cases.values()
            if c.not_run
        ]

    @property
    def errors(self) -> list[str]:
        """Runs or evaluators that failed: `side:dataset/case: error`. Their scores are 0 on that side."""
        return [
            f"{side}:{d.name}/{c.name}: {error}"
            for d in self.datasets
            for side, cases in (("base", d.base), ("current", d.current))
            for c in cases.values()
            for error in c.errors
        ]

    @property
    def failures(self) -> list[str]:
        reasons = [
            f"{e.name} regressed {e.mean_diff:+.3f} ({e.baseline:.3f} → {e.current:.3f}) over {e.cases} cases,"
            f" 90% interval [{e.lower_bound:+.3f}, {e.upper_bound:+.3f}], p={e.p_value:.4f} ≤ {e.level:.4f}"
            for e in self.family.evaluators
            if e.regressed
        ]
        if self.errors:  # e.g. a judge that is down on both sides scores 0 vs 0: no difference, nothing judged
            reasons.append(
                f"{len(self.errors)} run(s) or evaluator(s) failed, so those cases were not judged; first: "
                + self.errors[0][:300]
            )
        return reasons + run_failures(
            not_run=self.not_run,
            cost_limit=self.max_cost,
            require_live=self.require_live,
            prompt_unevaluated=self.prompt_unevaluated,
            prompts=self.unevaluated_prompts,
        )

    @property
    def passed(self) -> bool:
        return not self.failures


def resolve_revision(repo: Path, ref: str) -> str:
    """The commit `ref` names in `repo`; UsageError when it names none (checked before anything starts)."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError as exc:
        raise UsageError(f"--against {ref}: not a revision of the git repository at {repo}") from exc


@contextmanager
def worktree(repo: Path, ref: str) -> Iterator[tuple[Path, str]]:
    """`ref` checked out (detached) in a temporary git worktree, removed afterwards; yields (path, commit)."""
    commit = resolve_revision(repo, ref)
    with tempfile.TemporaryDirectory(prefix="ra-evals-worktree-") as tmp:
        path = Path(tmp) / "base"
        _git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
        try:
            yield path, commit
        finally:
            _git(repo, "worktree", "remove", "--force", str(path))


def _git(repo: Path, *args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=120
        ).stdout.strip()
    except FileNotFoundError as exc:
        raise UsageError("--against needs git on PATH") from exc


def _merge(into: dict[str, dict[str, SideCase]], scored: Round) -> None:
    for dataset, cases in scored.items():
        merged = into.setdefault(dataset, {})
        for name, case in cases.items():
            if name in merged:
                merged[name].extend(case)
            else:
                merged[name] = case


async def _rounds(base: Side, current: Side, repeat: int) -> tuple[Round, Round]:
    """Round r of both sides at the same time, r = 1..repeat."""
    before: Round = {}
    after: Round = {}
    for _ in range(repeat):
        base_round, current_round = await asyncio.gather(base.run_round(), current.run_round())
        _merge(before, base_round)
        _merge(after, current_round)
    return before, after


def _half(limit: Decimal | None) -> Decimal | None:
    return None if limit is None else limit / 2


PROJECT_ROOT = Path(__file__).resolve().parent.parent


async def run_ab(options: ABOptions) -> ABResult:
    """Run both sides, round by round, and decide once for every (dataset, evaluator) they share.
    Both sides get fresh databases on one server (`DATABASE_URL`'s, or one embedded for the job)."""
    check_models({"--model": options.model, "--against-model": options.against_model})
    if options.against is not None:
        resolve_revision(options.repo or PROJECT_ROOT, options.against)  # a typo fails before a server starts
    async with eval_server(options.server_url) as server_url:
        return await _run_ab(replace(options, server_url=server_url))


async def _run_ab(options: ABOptions) -> ABResult:
    if (options.against is None) == (options.against_model is None):
        raise UsageError("an A/B run needs exactly one of --against REF or --against-model MODEL")
    if options.repeat < 1 or options.max_concurrency < 1:
        raise UsageError("--repeat and --max-concurrency must be at least 1")
    started = time.perf_counter()
    label = model_label(options.model)
    loaded = load_datasets(SuiteOptions(model=label, datasets=options.datasets))
    config = load_gate_config(options.gate_config or default_datasets_dir() / "gate.yaml")
    critic = options.critic or critic_for(label, judge_model=options.judge_model)
    judge_version = critic_version(label, judge_model=options.judge_model)

    def cap() -> CostCap | None:
        share = _half(options.max_cost)
        if share is None:
            return None
        return CostCap(limit=share, per_run=options.per_run, judge_per_run=options.judge_per_run)

    current = InProcessSide(
        label="current",
        model=options.model,
        datasets=loaded,
        critic=critic,
        judge_version=judge_version,
        max_concurrency=options.max_concurrency,
        cap=cap(),
        server_url=options.server_url,
    )
    notes: list[str] = []
    try:
        if options.against_model is not None:
            other = model_label(options.against_model)
            base: Side = InProcessSide(
                label="base",
                model=options.against_model,
                datasets=loaded,
                critic=options.critic or critic_for(other, judge_model=options.judge_model),
                judge_version=critic_version(other, judge_model=options.judge_model),
                max_concurrency=options.max_concurrency,
                cap=cap(),
                server_url=options.server_url,
            )
            before, after = await _rounds(base, current, options.repeat)
            await base.aclose()
        else:
            assert options.against is not None
            repo = options.repo or PROJECT_ROOT
            with worktree(repo, options.against) as (checkout, commit):
                paths = [_in_checkout(path, repo, checkout) for path, _ in loaded]
                side = CheckoutSide(
                    label="base",
                    checkout=checkout,
                    revision=f"{options.against} @ {commit[:12]}",
                    model=label,
                    dataset_paths=[p for p in paths if p is not None],
                    judge_model=options.judge_model,
                    max_concurrency=options.max_concurrency,
                    max_cost=_half(options.max_cost),
                    server_url=options.server_url,
                )
                try:
                    runs = sum(len(d.cases) for p, (_, d) in zip(paths, loaded, strict=True) if p) * options.repeat
                    await _check_base_cap(side, options, worst_case=options.per_run * runs)
                    before, after = await _rounds(side, current, options.repeat)
                finally:
                    await side.aclose()
                base = side
    finally:
        await current.aclose()
    datasets = [
        ABDataset(name=name, base=before.get(name, {}), current=after[name]) for name in after if name in before
    ]
    notes += [
        f"{name}: not run on the base side (no such dataset there): not compared"
        for name in after
        if name not in before
    ]
    skip: set[str] = set()
    if base.info.judge_version != current.info.judge_version:
        skip = {f"{d.name}/critic" for d in datasets}
        notes.append(
            f"the judges differ ({base.info.judge_version} vs {current.info.judge_version}): critic not compared"
        )
    for d in datasets:
        if base.info.dataset_versions.get(d.name) != current.info.dataset_versions.get(d.name):
            notes.append(f"{d.name}: the dataset differs between the sides; only cases both ran are compared")
    family = compare(
        combine({d.name: d.scores("current") for d in datasets}),
        combine({d.name: d.scores("base") for d in datasets}),
        config=config,
        skip=skip,
    )
    result = ABResult(
        base=base.info,
        current=current.info,
        datasets=datasets,
        family=family,
        repeat=options.repeat,
        duration_seconds=time.perf_counter() - started,
        notes=notes,
        require_live=options.require_live,
        max_cost=options.max_cost,
    )
    if result.prompt_note:
        result.notes.insert(0, result.prompt_note)
    return result


def _in_checkout(path: Path, repo: Path, checkout: Path) -> Path | None:
    """The same dataset file in the base checkout (None: missing there); a file outside the repository
    is used by both sides as it is."""
    try:
        relative = path.resolve().relative_to(repo.resolve())
    except ValueError:
        return path  # a dataset outside the repository: both sides run the very same file
    there = checkout / relative
    return there if there.is_file() else None


async def _check_base_cap(side: CheckoutSide, options: ABOptions, *, worst_case: Decimal) -> None:
    """A base revision without --max-cost cannot stop itself: start only when its worst case fits its half."""
    share = _half(options.max_cost)
    if share is None or worst_case <= share or await side.supports_cost_cap():
        return
    raise UsageError(
        f"the base revision has no --max-cost, and its worst case (${worst_case:.2f}) exceeds its half of the"
        f" cap (${share:.2f}): raise --max-cost, run fewer cases or repeats, or gate against a newer revision"
    )
