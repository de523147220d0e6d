"""A dataset's verdict: each evaluator's mean against its threshold and, as one family, against the
committed baseline (`evals.compare`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean

from evals._compare import compare
from evals._gate import Baseline, CaseScores, GateConfig, PairedTest, case_means

__all__ = ["EvaluatorVerdict", "GateResult", "judge_scores"]


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


def judge_scores(
    dataset: str,
    current: CaseScores,
    baseline: Baseline | None,
    *,
    config: GateConfig,
    judge_version: str,
) -> GateResult:
    """Compare `current` with the thresholds and, where comparable, with the baseline."""
    thresholds = config.thresholds_for(dataset)
    notes: list[str] = []
    if baseline is None:
        notes.append("no baseline for this dataset and model: thresholds only (run with --bless to record one)")
    names = sorted({name for values in current.values() for name in values} | set(thresholds))
    judge_changed = baseline is not None and baseline.judge_version != judge_version
    family = (
        compare(current, baseline.cases, config=config, skip={"critic"} if judge_changed else ()) if baseline else None
    )
    tested = {e.name: e for e in family.evaluators} if family is not None else {}
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
        if name == "critic" and judge_changed and baseline is not None:
            note = f"judge changed ({baseline.judge_version} → {judge_version}): thresholds only"
        elif name in tested:
            one = tested[name]
            test = PairedTest(
                cases=one.cases, mean_diff=one.mean_diff, upper_bound=one.upper_bound, regressed=one.regressed
            )
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
