"""One regression decision for a family of evaluators: paired bootstrap p-values, Holm–Bonferroni.

Testing five evaluators each at one-sided 95 % raises a false alarm on unchanged code far more often
than one time in twenty (issue 13 measured 18 % at 49 cases). `compare` tests every evaluator the two
runs share, each with the gate's `paired_bootstrap` on its per-case differences (repeats averaged
per case), and controls the family-wise false-alarm rate with Holm's step-down procedure:
sort the p-values, compare the k-th smallest with alpha / (m - k), stop at the first that is not below.
Why Holm: it needs no assumption about how evaluators correlate (they do, strongly) and is uniformly
more powerful than plain Bonferroni (docs/decisions/0020-family-wise-gate.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from statistics import fmean

from evals._gate import CaseScores, GateConfig, PairedTest, case_means, paired_bootstrap

__all__ = ["Comparison", "EvaluatorComparison", "compare", "holm"]


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
    p_value: float
    """How often a resampled mean difference is no regression (at least -tolerance)."""
    level: float
    """The level Holm's procedure held this p-value to (alpha / (m - rank)); 0 when it stopped before it."""
    regressed: bool


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """The family's decision: `regressed` when Holm rejects "no regression" for any evaluator."""

    evaluators: list[EvaluatorComparison]
    alpha: float

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
    levels = holm([test.p_value for *_, test in tests], alpha=alpha)
    evaluators = [
        EvaluatorComparison(
            name=name,
            cases=test.cases,
            current=fmean(now.values()),
            baseline=fmean(before.values()),
            mean_diff=test.mean_diff,
            upper_bound=test.upper_bound,
            p_value=test.p_value,
            level=level,
            regressed=level > 0 and test.p_value <= level,
        )
        for (name, now, before, test), level in zip(tests, levels, strict=True)
    ]
    return Comparison(evaluators=evaluators, alpha=alpha)
