"""One regression decision for a family of evaluators: paired bootstrap p-values, Holm–Bonferroni.

Testing five evaluators each at one-sided 95 % raises a false alarm on unchanged code far more often
than one time in twenty (issue 13 measured 18 % at 49 cases). `compare` tests every evaluator the two
runs share, each on its paired per-case differences (repeats averaged per case, as in
`paired_bootstrap`), and controls the family-wise false-alarm rate with Holm's step-down procedure:
sort the p-values, compare the k-th smallest with alpha / (m - k), stop at the first that is not below.
Why Holm: it needs no assumption about how evaluators correlate (they do, strongly) and is uniformly
more powerful than plain Bonferroni (docs/decisions/0020-family-wise-gate.md).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from statistics import fmean

from evals._gate import CaseScores, GateConfig, case_means

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


def _bootstrap(
    diffs: Sequence[float], *, tolerance: float, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """(upper bound, p-value) of the mean of `diffs` against "the mean is at least -tolerance"."""
    mean = fmean(diffs)
    if all(d == diffs[0] for d in diffs):  # no spread: the bootstrap would only return the mean
        return mean, 0.0 if mean < -tolerance else 1.0
    rng = random.Random(seed)
    means = sorted(fmean(rng.choices(diffs, k=len(diffs))) for _ in range(resamples))
    upper = means[min(resamples - 1, int(confidence * resamples))]
    not_worse = sum(1 for m in means if m >= -tolerance)
    return upper, (1 + not_worse) / (1 + resamples)


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
    rows: list[tuple[str, dict[str, float], dict[str, float], float, float]] = []
    for name in names:
        if name in skip:
            continue
        now, before = case_means(current, name), case_means(baseline, name)
        common = sorted(set(now) & set(before))
        if not common:
            continue
        diffs = [now[c] - before[c] for c in common]
        upper, p_value = _bootstrap(
            diffs,
            tolerance=config.tolerance,
            confidence=config.confidence,
            resamples=config.resamples,
            seed=config.seed,
        )
        rows.append((name, {c: now[c] for c in common}, {c: before[c] for c in common}, upper, p_value))
    levels = holm([row[4] for row in rows], alpha=alpha)
    evaluators = [
        EvaluatorComparison(
            name=name,
            cases=len(now),
            current=fmean(now.values()),
            baseline=fmean(before.values()),
            mean_diff=fmean(now[c] - before[c] for c in now),
            upper_bound=upper,
            p_value=p_value,
            level=level,
            regressed=level > 0 and p_value <= level,
        )
        for (name, now, before, upper, p_value), level in zip(rows, levels, strict=True)
    ]
    return Comparison(evaluators=evaluators, alpha=alpha)
