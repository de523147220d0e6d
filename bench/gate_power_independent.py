"""Independent check of the eval gate's false-alarm rate and power, with `evals.compare` as a black box.

Why a second estimate: a power study written next to the gate shares its author's assumptions, so an
error in its generating model would flatter the gate twice. This script draws scores from a different
model and only looks at what `compare` returns.

The generating model (all on the logit scale, p = sigmoid(latent)):

* Every case has an ease shared by all evaluators (weighted by each evaluator's loading), because a
  wrong answer scores low on key facts, outcome and critic together; a case × evaluator effect lets one
  evaluator find a case harder than the others do.
* Every repeat adds noise shared by the evaluators (a run that wanders off hurts every score) plus a
  smaller evaluator-specific part. Baseline and current score the same cases with fresh repeats.
* p becomes a pass/fail score (Bernoulli) or the fraction of k items met (Binomial(k, p) / k, k drawn
  per case: facts recalled, citations grounded, rubric points), one uniform per item.
* Each evaluator's offset is solved (bisection over Gaussian quadrature) so its expected mean hits a
  target (0.72–0.85, 0.78 over the five). A drop of D subtracts a logit shift solved the same way, so
  the expected mean falls by D exactly; middling cases lose more than very easy or very hard ones.

Conditions per trial: unchanged code (both sides from the same process: a gate alarm is a false alarm);
a drop of D in ONE evaluator (each evaluator in turn across trials, or --target); a drop of D in ALL
evaluators together. Every condition of a trial reuses the same draws (common random numbers), so a
larger drop never scores higher. A drop counts as caught when the family decision `.regressed` is true.

    python bench/gate_power_independent.py [--trials 200] [--seed 0] [--sizes 49x1,49x3,100x3]
        [--drops 0.10,0.15,0.20] [--resamples N] [--workers N] [--target NAME] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("LOGFIRE_IGNORE_NO_CONFIG", "1")

from evals import GateConfig, compare

Scores = dict[str, dict[str, list[float]]]
"""case → evaluator → score per repeat (what `compare` takes)."""

FALSE_ALARM_GOAL = 0.05
POWER_GOAL = 0.80
POWER_DROP = 0.15
POWER_SIZE = (100, 3)


# --- the generating model -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Evaluator:
    """One evaluator: its expected mean on unchanged code, how strongly it follows the shared case and
    repeat effects, and how many items a case has (1..1 is pass/fail)."""

    name: str
    target: float
    loading: float
    items: tuple[int, int] = (1, 1)

    @property
    def kind(self) -> str:
        low, high = self.items
        if high == 1:
            return "pass/fail"
        return f"{low} items" if low == high else f"{low}-{high} items"


DEFAULT_EVALUATORS = (
    Evaluator(name="key_facts", target=0.72, loading=1.0, items=(2, 5)),
    Evaluator(name="outcome", target=0.75, loading=1.0),
    Evaluator(name="critic", target=0.78, loading=0.9, items=(4, 4)),
    Evaluator(name="grounding", target=0.85, loading=0.6, items=(2, 8)),
    Evaluator(name="trajectory", target=0.80, loading=0.5),
)


@dataclass(frozen=True, kw_only=True)
class Model:
    """Standard deviations of the latent effects, on the logit scale."""

    evaluators: tuple[Evaluator, ...] = DEFAULT_EVALUATORS
    case_sd: float = 1.5
    case_evaluator_sd: float = 0.6
    repeat_sd: float = 0.8
    repeat_evaluator_sd: float = 0.4

    def latent_sd(self, evaluator: Evaluator) -> float:
        """The spread of one score's latent around its evaluator's offset (one case, one repeat)."""
        shared = evaluator.loading**2 * (self.case_sd**2 + self.repeat_sd**2)
        return math.sqrt(shared + self.case_evaluator_sd**2 + self.repeat_evaluator_sd**2)

    def latent_correlation(self, first: Evaluator, second: Evaluator) -> float:
        """Correlation of two evaluators' latents on the same case and repeat: only the shared effects."""
        shared = first.loading * second.loading * (self.case_sd**2 + self.repeat_sd**2)
        return shared / (self.latent_sd(first) * self.latent_sd(second))


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


def expected_mean(offset: float, sd: float, *, points: int = 801) -> float:
    """E[sigmoid(offset + sd·Z)], Z standard normal: the expected score, since a fraction of k items
    has mean p. Trapezoid over ±8 sd: the integrand is smooth, so the error is far below 1e-9."""
    half = 8.0
    step = 2 * half / (points - 1)
    total = 0.0
    for i in range(points):
        z = -half + i * step
        total += math.exp(-z * z / 2) * sigmoid(offset + sd * z)
    return total * step / math.sqrt(2 * math.pi)


def bisect(f: Callable[[float], float], goal: float, *, low: float = -20.0, high: float = 20.0) -> float:
    """x with f(x) = goal for an increasing f."""
    for _ in range(80):
        middle = (low + high) / 2
        if f(middle) < goal:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def offset_for(mean: float, sd: float) -> float:
    """The logit offset whose expected mean is `mean`."""
    if not 0 < mean < 1:
        raise ValueError(f"an expected mean must be inside (0, 1), got {mean}")
    return bisect(lambda offset: expected_mean(offset, sd), mean)


@dataclass(frozen=True, kw_only=True)
class Calibration:
    offsets: dict[str, float]
    shifts: dict[float, dict[str, float]]
    """drop → evaluator → the logit shift that lowers its expected mean by the drop."""


def calibrate(model: Model, *, drops: Sequence[float]) -> Calibration:
    """Offsets that hit each evaluator's target, and the shift for each drop (numerically, because a
    logit shift moves the mean by different amounts at different means)."""
    offsets: dict[str, float] = {}
    shifts: dict[float, dict[str, float]] = {drop: {} for drop in drops}
    for evaluator in model.evaluators:
        sd = model.latent_sd(evaluator)
        offsets[evaluator.name] = offset_for(evaluator.target, sd)
        for drop in drops:
            shifts[drop][evaluator.name] = offsets[evaluator.name] - offset_for(evaluator.target - drop, sd)
    return Calibration(offsets=offsets, shifts=shifts)


# --- drawing runs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Case:
    """What stays fixed between runs: the dataset's cases."""

    ease: float
    effects: dict[str, float]
    items: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class Run:
    """One run's latents and uniforms, so the same draws can be scored with and without a drop."""

    logits: dict[str, dict[str, list[float]]]
    uniforms: dict[str, dict[str, list[list[float]]]]

    def scores(self, shifts: Mapping[str, float]) -> Scores:
        """Score every repeat with each evaluator's latent lowered by its shift (0 when absent)."""
        scores: Scores = {}
        for case, per in self.logits.items():
            scores[case] = {}
            for name, logits in per.items():
                shift = shifts.get(name, 0.0)
                draws = self.uniforms[case][name]
                scores[case][name] = [score(logit - shift, u) for logit, u in zip(logits, draws, strict=True)]
        return scores


def score(logit: float, uniforms: Sequence[float]) -> float:
    """The fraction of items met: one uniform per item, so a lower latent never scores higher."""
    p = sigmoid(logit)
    return sum(1 for u in uniforms if u < p) / len(uniforms)


def draw_cases(model: Model, *, cases: int, rng: random.Random) -> dict[str, Case]:
    return {
        f"case-{i:03d}": Case(
            ease=rng.gauss(0, model.case_sd),
            effects={e.name: rng.gauss(0, model.case_evaluator_sd) for e in model.evaluators},
            items={e.name: rng.randint(*e.items) for e in model.evaluators},
        )
        for i in range(cases)
    }


def draw_run(
    model: Model, calibration: Calibration, *, cases: Mapping[str, Case], repeats: int, rng: random.Random
) -> Run:
    """Fresh repeat noise and item uniforms over the fixed cases."""
    logits: dict[str, dict[str, list[float]]] = {}
    uniforms: dict[str, dict[str, list[list[float]]]] = {}
    for name, case in cases.items():
        logits[name] = {e.name: [] for e in model.evaluators}
        uniforms[name] = {e.name: [] for e in model.evaluators}
        for _ in range(repeats):
            shared = case.ease + rng.gauss(0, model.repeat_sd)
            for e in model.evaluators:
                noise = case.effects[e.name] + rng.gauss(0, model.repeat_evaluator_sd)
                logits[name][e.name].append(calibration.offsets[e.name] + e.loading * shared + noise)
                uniforms[name][e.name].append([rng.random() for _ in range(case.items[e.name])])
    return Run(logits=logits, uniforms=uniforms)


# --- trials ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrialJob:
    model: Model
    calibration: Calibration
    config: GateConfig
    cases: int
    repeats: int
    drops: tuple[float, ...]
    target: str
    seed: str


@dataclass(frozen=True, kw_only=True)
class TrialResult:
    cases: int
    repeats: int
    target: str
    false_alarm: bool
    one: tuple[bool, ...]
    """Per drop: the gate failed with only `target` dropped."""
    one_flagged_target: tuple[bool, ...]
    """Per drop: ... and `target` itself was among the evaluators Holm rejected."""
    all: tuple[bool, ...]


def run_trial(job: TrialJob) -> TrialResult:
    """One dataset, one baseline run and one current run, judged under every condition."""
    rng = random.Random(job.seed)
    cases = draw_cases(job.model, cases=job.cases, rng=rng)
    baseline = draw_run(job.model, job.calibration, cases=cases, repeats=job.repeats, rng=rng).scores({})
    current = draw_run(job.model, job.calibration, cases=cases, repeats=job.repeats, rng=rng)
    alarm = compare(current.scores({}), baseline, config=job.config).regressed
    one, flagged, every = [], [], []
    for drop in job.drops:
        shifts = job.calibration.shifts[drop]
        single = compare(current.scores({job.target: shifts[job.target]}), baseline, config=job.config)
        one.append(single.regressed)
        flagged.append(single[job.target].regressed)
        every.append(compare(current.scores(shifts), baseline, config=job.config).regressed)
    return TrialResult(
        cases=job.cases,
        repeats=job.repeats,
        target=job.target,
        false_alarm=alarm,
        one=tuple(one),
        one_flagged_target=tuple(flagged),
        all=tuple(every),
    )


def run_trials(jobs: Sequence[TrialJob], *, workers: int) -> list[TrialResult]:
    """In processes when asked: each trial is seeded on its own, so the result does not depend on them."""
    if workers <= 1:
        return [run_trial(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run_trial, jobs, chunksize=max(1, len(jobs) // (workers * 16))))


# --- measuring -------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Rate:
    hits: int
    trials: int

    @property
    def value(self) -> float:
        return self.hits / self.trials

    def wilson(self, *, z: float = 1.959964) -> tuple[float, float]:
        """The 95 % Wilson interval: sensible at 0 or all hits, where the normal one is not."""
        n, p = self.trials, self.value
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    def as_json(self) -> dict[str, Any]:
        low, high = self.wilson()
        return {"hits": self.hits, "trials": self.trials, "rate": self.value, "ci95": [low, high]}


@dataclass(frozen=True, kw_only=True)
class Cell:
    """Everything measured at one cases × repeats."""

    cases: int
    repeats: int
    false_alarm: Rate
    one: dict[float, Rate]
    all: dict[float, Rate]
    one_flagged_target: dict[float, Rate]
    one_by_target: dict[float, dict[str, Rate]] = field(default_factory=dict)


def count(flags: Sequence[bool]) -> Rate:
    return Rate(hits=sum(flags), trials=len(flags))


def summarise(results: Sequence[TrialResult], *, cases: int, repeats: int, drops: Sequence[float]) -> Cell:
    mine = [r for r in results if (r.cases, r.repeats) == (cases, repeats)]
    targets = sorted({r.target for r in mine})
    one: dict[float, Rate] = {}
    every: dict[float, Rate] = {}
    flagged: dict[float, Rate] = {}
    by_target: dict[float, dict[str, Rate]] = {}
    for i, drop in enumerate(drops):
        one[drop] = count([r.one[i] for r in mine])
        every[drop] = count([r.all[i] for r in mine])
        flagged[drop] = count([r.one_flagged_target[i] for r in mine])
        by_target[drop] = {t: count([r.one[i] for r in mine if r.target == t]) for t in targets}
    return Cell(
        cases=cases,
        repeats=repeats,
        false_alarm=count([r.false_alarm for r in mine]),
        one=one,
        all=every,
        one_flagged_target=flagged,
        one_by_target=by_target,
    )


@dataclass(frozen=True, kw_only=True)
class Report:
    model: Model
    calibration: Calibration
    config: GateConfig
    trials: int
    seed: int
    drops: tuple[float, ...]
    cells: list[Cell]
    elapsed: float


def measure(
    *,
    sizes: Sequence[tuple[int, int]],
    drops: Sequence[float],
    trials: int,
    seed: int,
    config: GateConfig,
    model: Model | None = None,
    workers: int = 1,
    target: str | None = None,
) -> Report:
    """Run `trials` trials at every cases × repeats; the one-evaluator drop rotates through the
    evaluators unless `target` names one."""
    model = model or Model()
    names = [e.name for e in model.evaluators]
    if target is not None and target not in names:
        raise ValueError(f"unknown evaluator {target!r}; the model has {', '.join(names)}")
    start = time.perf_counter()
    calibration = calibrate(model, drops=drops)
    jobs = [
        TrialJob(
            model=model,
            calibration=calibration,
            config=config,
            cases=cases,
            repeats=repeats,
            drops=tuple(drops),
            target=target or names[trial % len(names)],
            seed=f"{seed}/{cases}x{repeats}/{trial}",
        )
        for cases, repeats in sizes
        for trial in range(trials)
    ]
    results = run_trials(jobs, workers=workers)
    cells = [summarise(results, cases=c, repeats=r, drops=drops) for c, r in sizes]
    return Report(
        model=model,
        calibration=calibration,
        config=config,
        trials=trials,
        seed=seed,
        drops=tuple(drops),
        cells=cells,
        elapsed=time.perf_counter() - start,
    )


# --- goals and output ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Goal:
    text: str
    met: bool | None
    """None: not measured by this run."""
    detail: str


def goals(report: Report) -> list[Goal]:
    alarms = ", ".join(f"{c.cases}x{c.repeats} {c.false_alarm.value:.1%}" for c in report.cells)
    worst = max(c.false_alarm.value for c in report.cells)
    family = Goal(
        text=f"false alarm <= {FALSE_ALARM_GOAL:.0%} for the whole family",
        met=worst <= FALSE_ALARM_GOAL,
        detail=f"{alarms} (worst {worst:.1%})",
    )
    cell = next((c for c in report.cells if (c.cases, c.repeats) == POWER_SIZE), None)
    drop = next((d for d in report.drops if math.isclose(d, POWER_DROP)), None)
    cases, repeats = POWER_SIZE
    text = f">= {POWER_GOAL:.0%} of {POWER_DROP * 100:.0f}-point drops caught at {cases} cases x {repeats} repeats"
    if cell is None or drop is None:
        return [family, Goal(text=text, met=None, detail="not measured: needs 100x3 in --sizes and 0.15 in --drops")]
    one, every = cell.one[drop], cell.all[drop]
    return [
        family,
        Goal(text=f"{text} (one evaluator)", met=one.value >= POWER_GOAL, detail=f"{one.value:.1%} caught"),
        Goal(text=f"{text} (all evaluators)", met=every.value >= POWER_GOAL, detail=f"{every.value:.1%} caught"),
    ]


def percent(rate: Rate) -> str:
    low, high = rate.wilson()
    return f"{rate.value:6.1%} [{low * 100:4.1f}, {high * 100:5.1f}]"


def render(report: Report, *, workers: int, target: str | None) -> str:
    config, default = report.config, GateConfig()
    note = "gate default" if config.resamples == default.resamples else f"gate default {default.resamples}, reduced"
    lines = [
        f"evals.compare: confidence {config.confidence}, tolerance {config.tolerance}, "
        f"resamples {config.resamples} ({note}), gate seed {config.seed}",
        f"{report.trials} trials per cases x repeats, seed {report.seed}, {workers} worker(s); one-evaluator drop: "
        + (target or "each evaluator in turn"),
        "",
        f"{'evaluator':<11} {'kind':<10} {'target':>6} {'loading':>7} {'offset':>7}  "
        + " ".join(f"shift@{d:.2f}" for d in report.drops),
    ]
    for e in report.model.evaluators:
        shifts = " ".join(f"{report.calibration.shifts[d][e.name]:10.3f}" for d in report.drops)
        lines.append(
            f"{e.name:<11} {e.kind:<10} {e.target:6.2f} {e.loading:7.2f} {report.calibration.offsets[e.name]:7.3f}  "
            + shifts
        )
    pairs = [
        report.model.latent_correlation(a, b)
        for i, a in enumerate(report.model.evaluators)
        for b in report.model.evaluators[i + 1 :]
    ]
    if pairs:
        lines.append(f"latent correlation between evaluators (same case and repeat): {min(pairs):.2f}-{max(pairs):.2f}")
    lines += [
        "",
        f"{'cases x repeats':<16} {'false alarm [95% CI]':<22} {'drop':>5}  "
        f"{'one evaluator [95% CI]':<23} {'all evaluators [95% CI]'}",
    ]
    for cell in report.cells:
        for i, drop in enumerate(report.drops):
            size = f"{cell.cases} x {cell.repeats}" if i == 0 else ""
            alarm = percent(cell.false_alarm) if i == 0 else ""
            lines.append(f"{size:<16} {alarm:<22} {drop:5.2f}  {percent(cell.one[drop]):<23} {percent(cell.all[drop])}")
    lines.append("")
    for goal in goals(report):
        status = "not measured" if goal.met is None else "met" if goal.met else "NOT met"
        lines.append(f"goal: {goal.text}: {status} ({goal.detail})")
    lines.append(f"elapsed: {report.elapsed:.1f} s")
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    def by_drop(rates: Mapping[float, Rate]) -> dict[str, Any]:
        return {f"{d:g}": r.as_json() for d, r in rates.items()}

    return {
        "gate": {k: getattr(report.config, k) for k in ("confidence", "tolerance", "resamples", "seed")},
        "trials": report.trials,
        "seed": report.seed,
        "model": {
            "case_sd": report.model.case_sd,
            "case_evaluator_sd": report.model.case_evaluator_sd,
            "repeat_sd": report.model.repeat_sd,
            "repeat_evaluator_sd": report.model.repeat_evaluator_sd,
            "evaluators": [
                {
                    "name": e.name,
                    "kind": e.kind,
                    "target_mean": e.target,
                    "loading": e.loading,
                    "offset": report.calibration.offsets[e.name],
                    "shifts": {f"{d:g}": report.calibration.shifts[d][e.name] for d in report.drops},
                }
                for e in report.model.evaluators
            ],
        },
        "cells": [
            {
                "cases": c.cases,
                "repeats": c.repeats,
                "false_alarm": c.false_alarm.as_json(),
                "one_evaluator": by_drop(c.one),
                "one_evaluator_target_flagged": by_drop(c.one_flagged_target),
                "one_evaluator_by_target": {
                    f"{d:g}": {t: r.as_json() for t, r in per.items()} for d, per in c.one_by_target.items()
                },
                "all_evaluators": by_drop(c.all),
            }
            for c in report.cells
        ],
        "goals": [{"goal": g.text, "met": g.met, "detail": g.detail} for g in goals(report)],
        "elapsed_seconds": report.elapsed,
    }


# --- command line ----------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    cases, _, repeats = text.lower().partition("x")
    return int(cases), int(repeats or 1)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=None, help="trials per cases x repeats (200; 40 with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generating model (not the gate's)")
    p.add_argument("--sizes", default="49x1,49x3,100x3", help="comma-separated CASESxREPEATS")
    p.add_argument("--drops", default="0.10,0.15,0.20", help="comma-separated drops of the expected mean")
    p.add_argument("--resamples", type=int, default=None, help="gate bootstrap resamples (gate default; 400 --quick)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.add_argument("--target", default=None, help="the evaluator a one-evaluator drop hits (default: rotate)")
    p.add_argument("--quick", action="store_true", help="a small run: 40 trials, 400 resamples")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    trials = args.trials or (40 if args.quick else 200)
    resamples = args.resamples or (400 if args.quick else GateConfig().resamples)
    config = GateConfig().model_copy(update={"resamples": resamples})
    report = measure(
        sizes=[parse_size(s) for s in args.sizes.split(",")],
        drops=[float(d) for d in args.drops.split(",")],
        trials=trials,
        seed=args.seed,
        config=config,
        workers=args.workers,
        target=args.target,
    )
    if args.json:
        json.dump(as_json(report), sys.stdout, indent=2)
        print()
    else:
        print(render(report, workers=args.workers, target=args.target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
