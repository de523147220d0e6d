"""One regression decision for a family of evaluators: paired sign-flip p-values, Holm–Bonferroni.

Testing five evaluators each at one-sided 95 % raises a false alarm on unchanged code far more often
than one time in twenty (issue 13 measured 18 % at 49 cases). `compare` tests every evaluator the two
runs share, each with the gate's `paired_bootstrap` on its per-case differences (repeats averaged
per case: an exact sign-flip p-value, a bootstrap interval), and controls the family-wise false-alarm
rate with Holm's step-down procedure:
sort the p-values, compare the k-th smallest with alpha / (m - k), stop at the first that is not below.
Why Holm: it needs no assumption about how evaluators correlate (they do, strongly) and is uniformly
more powerful than plain Bonferroni (docs/decisions/0020-family-wise-gate.md). An evaluator whose every
paired difference is exactly zero cannot reject at any level, so it is reported but not counted in the
family (Tarone's refinement): a deterministic evaluator does not cost the others power.

Each evaluator also gets its minimum detectable drop: the true drop this test would catch in 80 % of runs
with this many cases and this spread of paired differences, by the normal approximation to the bootstrap
at the family's strictest level (decision 0021). The spread is never taken as smaller than the one the drop
itself would bring, so a run whose differences are all zero does not claim to see every drop beyond the
tolerance; with fewer than two cases there is no spread to estimate and the drop is unknown (None), and
with so few that 2^-n is above the level no drop can be significant (None too).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from math import sqrt
from statistics import NormalDist, fmean, pstdev

from evals._gate import CaseScores, GateConfig, PairedTest, case_means, paired_bootstrap

__all__ = [
    "Comparison",
    "EvaluatorComparison",
    "combine",
    "compare",
    "detectable_drop_text",
    "holm",
    "mdd_unknown_reason",
    "min_detectable_drop",
]

TARGET_POWER = 0.8
MIN_CASES_FOR_MDD = 2
"""A spread of paired differences needs two cases; with fewer the minimum detectable drop is unknown."""


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
    min_detectable_drop: float | None
    """The drop in this evaluator's mean caught in 80 % of runs like this one (same cases, same spread);
    None when it cannot be estimated (fewer than two cases: see `detectable_drop_text`)."""
    tested: bool = True
    """False when both sides scored every case identically: nothing to test, not counted in the family."""

    @property
    def min_detectable_drop_unknown(self) -> str | None:
        """Why the minimum detectable drop is unknown; None when it is known."""
        return None if self.min_detectable_drop is not None else mdd_unknown_reason(self.cases)


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


def min_detectable_drop(diffs: Sequence[float], *, level: float, tolerance: float) -> float | None:
    """The true mean drop the one-sided test at `level` catches with TARGET_POWER probability:
    tolerance + (z(1 - level) + z(power)) * sd / sqrt(n). None below MIN_CASES_FOR_MDD cases, and when
    no drop could be significant at `level` (2^-n above it: every case would have to drop, and even that
    is not enough).

    sd is the spread of these per-case differences, but never less than the spread the drop itself brings:
    differences in [-1, 0] with mean -d have variance at most d(1 - d) (Bhatia–Davis; the binomial
    variance when the drop is d of the cases losing a full point). Without that floor, scores that did not
    move at all (a deterministic model) would claim to catch any drop beyond the tolerance, however few
    the cases; with it, the claim is the drop caught wherever among the cases it falls.
    """
    n = len(diffs)
    if n < MIN_CASES_FOR_MDD or 0.5**n > level:  # the sign-flip test's smallest p-value is 2^-n
        return None
    c = (NormalDist().inv_cdf(1 - level) + NormalDist().inv_cdf(TARGET_POWER)) / sqrt(n)
    observed = tolerance + c * pstdev(diffs)
    # The smallest d with d = tolerance + c * sqrt(d (1 - d)): the larger root of
    # (1 + c²) d² - (2 tolerance + c²) d + tolerance² = 0.
    b = 2 * tolerance + c * c
    floor = (b + sqrt(max(0.0, b * b - 4 * (1 + c * c) * tolerance**2))) / (2 * (1 + c * c))
    return max(observed, floor)


def mdd_unknown_reason(cases: int) -> str:
    """Why a minimum detectable drop could not be estimated from `cases` paired cases."""
    if cases >= MIN_CASES_FOR_MDD:
        return f"none: with {cases} cases in common no drop is significant (the smallest p-value is 2^-{cases})"
    return f"unknown: {cases} case{'' if cases == 1 else 's'} in common, a spread needs at least {MIN_CASES_FOR_MDD}"


def detectable_drop_text(value: float | None, *, cases: int) -> str:
    """A minimum detectable drop as reports print it: `0.123`, or `unknown (…)` with the reason."""
    if value is not None:
        return f"{value:.3f}"
    return f"{'none' if cases >= MIN_CASES_FOR_MDD else 'unknown'} ({cases} case{'' if cases == 1 else 's'})"


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
