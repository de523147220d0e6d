"""Each dataset's verdict: every evaluator's mean against its threshold and, as ONE family across all the
datasets of a gate run, against the committed baselines (`evals.compare` on `combine`d scores).

Only the baseline comparison is a statistical test under family-wise control. The thresholds
(`datasets/gate.yaml`) sit outside it on purpose: each is a floor declared before the run, checked on the
observed mean, a guard that says "never ship below this" rather than a test of "worse than before". It has no
false-alarm rate to control; a noisy mean just under its floor fails, and that is the floor's meaning
(decision 0021)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean

from evals._compare import Comparison, combine, compare
from evals._gate import Baseline, CaseScores, GateConfig, PairedTest, case_means

__all__ = ["DatasetScores", "EvaluatorVerdict", "GateResult", "judge_scores", "judge_suite"]


@dataclass(frozen=True, kw_only=True)
class EvaluatorVerdict:
    name: str
    cases: int
    current: float
    baseline: float | None
    threshold: float | None
    test: PairedTest | None
    below_threshold: bool
    note: str = ""
    min_detectable_drop: float | None = None
    """The drop the family's test would catch in 80 % of runs like this one; None without a comparison."""

    @property
    def regressed(self) -> bool:
        return self.test is not None and self.test.regressed

    @property
    def passed(self) -> bool:
        return not (self.below_threshold or self.regressed)


@dataclass(frozen=True, kw_only=True)
class GateResult:
    dataset: str
    verdicts: list[EvaluatorVerdict]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    @property
    def failures(self) -> list[str]:
        reasons: list[str] = []
        for v in self.verdicts:
            if v.below_threshold:
                reasons.append(f"{self.dataset}: {v.name} {v.current:.3f} is below its threshold {v.threshold:.2f}")
            if v.regressed and v.test is not None and v.baseline is not None:
                reasons.append(
                    f"{self.dataset}: {v.name} regressed {v.test.mean_diff:+.3f} vs baseline {v.baseline:.3f}"
                    f" over {v.test.cases} cases (95% upper bound {v.test.upper_bound:+.3f})"
                )
        return reasons


@dataclass(frozen=True, kw_only=True)
class DatasetScores:
    """One dataset's scores in a gate run, and the baseline they are held to (None: thresholds only)."""

    name: str
    current: CaseScores
    baseline: Baseline | None


def judge_suite(
    datasets: Sequence[DatasetScores], *, config: GateConfig, judge_version: str
) -> tuple[list[GateResult], Comparison | None]:
    """Every dataset against its thresholds, and all of them against their baselines as one family, so
    the false-alarm rate is controlled for the gate run as a whole (decision 0021)."""
    compared = [d for d in datasets if d.baseline is not None]
    skip = {
        f"{d.name}/critic" for d in compared if d.baseline is not None and d.baseline.judge_version != judge_version
    }
    family = (
        compare(
            combine({d.name: d.current for d in compared}),
            combine({d.name: d.baseline.cases for d in compared if d.baseline is not None}),
            config=config,
            skip=skip,
        )
        if compared
        else None
    )
    results = [_judge_one(d, family, config=config, judge_version=judge_version) for d in datasets]
    return results, family


def judge_scores(
    dataset: str,
    current: CaseScores,
    baseline: Baseline | None,
    *,
    config: GateConfig,
    judge_version: str,
) -> GateResult:
    """One dataset on its own: its evaluators are the whole family."""
    results, _ = judge_suite(
        [DatasetScores(name=dataset, current=current, baseline=baseline)], config=config, judge_version=judge_version
    )
    return results[0]


def _judge_one(
    scores: DatasetScores, family: Comparison | None, *, config: GateConfig, judge_version: str
) -> GateResult:
    dataset, current, baseline = scores.name, scores.current, scores.baseline
    thresholds = config.thresholds_for(dataset)
    notes: list[str] = []
    if baseline is None:
        notes.append("no baseline for this dataset and model: thresholds only (run with --bless to record one)")
    names = sorted({name for values in current.values() for name in values} | set(thresholds))
    judge_changed = baseline is not None and baseline.judge_version != judge_version
    prefix = f"{dataset}/"
    tested = (
        {e.name.removeprefix(prefix): e for e in family.evaluators if e.name.startswith(prefix)}
        if family is not None and baseline is not None
        else {}
    )
    verdicts: list[EvaluatorVerdict] = []
    for name in names:
        now = case_means(current, name)
        if not now:
            continue
        threshold = thresholds.get(name)
        current_mean = fmean(now.values())
        before = case_means(baseline.cases, name) if baseline is not None else {}
        test: PairedTest | None = None
        note = ""
        detectable: float | None = None
        if name == "critic" and judge_changed and baseline is not None:
            note = f"judge changed ({baseline.judge_version} → {judge_version}): thresholds only"
        elif name in tested:
            one = tested[name]
            test = PairedTest(
                cases=one.cases,
                mean_diff=one.mean_diff,
                upper_bound=one.upper_bound,
                lower_bound=one.lower_bound,
                regressed=one.regressed,
                p_value=one.p_value,
            )
            detectable = one.min_detectable_drop
        common = set(now) & set(before)
        verdicts.append(
            EvaluatorVerdict(
                name=name,
                cases=len(now),
                current=current_mean,
                baseline=fmean(before[c] for c in common) if common else None,
                threshold=threshold,
                test=test,
                below_threshold=threshold is not None and current_mean < threshold - 1e-9,
                note=note,
                min_detectable_drop=detectable,
            )
        )
    if baseline is not None:
        added = sorted(set(current) - set(baseline.cases))
        removed = sorted(set(baseline.cases) - set(current))
        if added:
            notes.append(f"{len(added)} case(s) not in the baseline: {', '.join(added[:5])}")
        if removed:
            notes.append(f"{len(removed)} baseline case(s) not run: {', '.join(removed[:5])}")
    return GateResult(dataset=dataset, verdicts=verdicts, notes=notes)
