"""One regression decision for a family of evaluators: paired bootstrap p-values, Holm–Bonferroni.

Testing five evaluators each at one-sided 95 % raises a false alarm on unchanged code far more often
than one time in twenty (issue 13 measured 18 % at 49 cases). `compare` tests every evaluator the two
runs share, each with the gate's `paired_bootstrap` on its per-case differences (repeats averaged
per case), and controls the family-wise false-alarm rate with Holm's step-down procedure:
sort the p-values, compare the k-th smallest with alpha / (m - k), stop at the first that is not below.
Why Holm: it needs no assumption about how evaluators correlate (they do, strongly) and is uniformly
more powerful than plain Bonferroni (docs/decisions/0020-family-wise-gate.md). An evaluator whose every
paired difference is exactly zero cannot reject at any level, so it is reported but not counted in the
family (Tarone's refinement): a deterministic evaluator does not cost the others power.

Each evaluator also gets its minimum detectable drop: the true drop this test would catch in 80 % of runs
with this many cases and this spread of paired differences, by the normal approximation to the bootstrap
at the family's strictest level (decision 0021).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean, pstdev

from evals._gate import CaseScores, GateConfig, PairedTest, case_means, paired_bootstrap

__all__ = ["Comparison", "EvaluatorComparison", "combine", "compare", "holm", "min_detectable_drop"]

TARGET_POWER = 0.8


@dataclass(frozen=True, kw_only=True)
class EvaluatorComparison:
    """Current minus baseline for one evaluator over the cases both sides have."""

    name: str
    cases: int
    current: float
    baseline: float
    mean_diff: float
    upper_bound: float
    """The one-sided `confidence` upper bound of the mean difference (bootstrap percentile)."""
    lower_bound: float
    """With `upper_bound`, the two-sided interval at 2·confidence − 1 (90 % for the gate's 95 %)."""
    p_value: float
    """How often a resampled mean difference is no regression (at least -tolerance)."""
    level: float
    """The level Holm's procedure held this p-value to (alpha / (m - rank)); 0 when it stopped before it,
    or when the evaluator was not tested (every paired difference zero)."""
    regressed: bool
    min_detectable_drop: float
    """The drop in this evaluator's mean caught in 80 % of runs like this one (same cases, same spread)."""
    tested: bool = True
    """False when both sides scored every case identically: nothing to test, not counted in the family."""


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """The family's decision: `regressed` when Holm rejects "no regression" for any evaluator."""

    evaluators: list[EvaluatorComparison]
    alpha: float

    @property
    def family_size(self) -> int:
        """How many tests Holm's procedure shared the false-alarm rate among."""
        return sum(e.tested for e in self.evaluators)

    @property
    def regressed(self) -> bool:
        return any(e.regressed for e in self.evaluators)

    def __getitem__(self, name: str) -> EvaluatorComparison:
        return next(e for e in self.evaluators if e.name == name)


def holm(p_values: Sequence[float], *, alpha: float) -> list[float]:
    """The level each p-value is held to by Holm's step-down procedure, in input order; 0.0 for those
    after the first that failed (they are not rejected whatever their value)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    levels = [0.0] * len(p_values)
    for rank, index in enumerate(order):
        levels[index] = alpha / (len(p_values) - rank)
        if p_values[index] > levels[index]:
            break
    return levels


def min_detectable_drop(diffs: Sequence[float], *, level: float, tolerance: float) -> float:
    """The true mean drop the one-sided test at `level` catches with TARGET_POWER probability, given the
    spread of these per-case differences: tolerance + (z(1 - level) + z(power)) * sd / sqrt(n)."""
    if not diffs:
        return float("nan")
    z = NormalDist().inv_cdf
    standard_error = pstdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    return tolerance + (z(1 - level) + z(TARGET_POWER)) * standard_error


def combine(per_dataset: Mapping[str, CaseScores]) -> CaseScores:
    """Several datasets as one family: case `d/c` scores `d/e` for each evaluator `e` of dataset `d`, so
    `compare` tests every (dataset, evaluator) pair on that dataset's cases and decides once for all."""
    return {
        f"{dataset}/{case}": {f"{dataset}/{name}": values for name, values in per.items()}
        for dataset, scores in per_dataset.items()
        for case, per in scores.items()
    }


def compare(
    current: CaseScores,
    baseline: CaseScores,
    *,
    config: GateConfig | None = None,
    skip: Collection[str] = (),
) -> Comparison:
    """Test every evaluator both sides scored on common cases (but those in `skip`) as one family.

    `config` supplies the tolerance (drops smaller than it are never regressions), the confidence
    (1 - the family-wise false-alarm rate), the resamples and the seed; `GateConfig()` by default.
    """
    config = config or GateConfig()
    alpha = 1 - config.confidence
    names = sorted({n for per in current.values() for n in per} & {n for per in baseline.values() for n in per})
    tests: list[tuple[str, dict[str, float], dict[str, float], PairedTest]] = []
    for name in names:
        if name in skip:
            continue
        now, before = case_means(current, name), case_means(baseline, name)
        common = set(now) & set(before)
        now, before = {c: now[c] for c in common}, {c: before[c] for c in common}
        test = paired_bootstrap(
            now,
            before,
            tolerance=config.tolerance,
            confidence=config.confidence,
            resamples=config.resamples,
            seed=config.seed,
        )
        if test is not None:  # None: no case in common
            tests.append((name, now, before, test))
    informative = [i for i, (_, now, before, _) in enumerate(tests) if any(now[c] != before[c] for c in now)]
    held = holm([tests[i][3].p_value for i in informative], alpha=alpha)
    levels = dict(zip(informative, held, strict=True))
    strictest = alpha / max(1, len(informative))
    evaluators = [
        EvaluatorComparison(
            name=name,
            cases=test.cases,
            current=fmean(now.values()),
            baseline=fmean(before.values()),
            mean_diff=test.mean_diff,
            upper_bound=test.upper_bound,
            lower_bound=test.lower_bound,
            p_value=test.p_value,
            level=levels.get(index, 0.0),
            regressed=levels.get(index, 0.0) > 0 and test.p_value <= levels[index],
            min_detectable_drop=min_detectable_drop(
                [now[c] - before[c] for c in now], level=strictest, tolerance=config.tolerance
            ),
            tested=index in levels,
        )
        for index, (name, now, before, test) in enumerate(tests)
    ]
    return Comparison(evaluators=evaluators, alpha=alpha)
