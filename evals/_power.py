"""`python -m evals power`: how often the gate's own decision (`evals.compare`) cries wolf, and how often
it catches a real drop, for a given number of cases and repeats.

The simulation: each case has a success probability drawn from Beta(ALPHA, BETA) (mean 0.77, spread like
a real eval where some questions are nearly always right and some rarely), each of `EVALUATORS`
evaluators scores a case as the mean of `repeats` pass/fail draws, and the two sides of an A/B run are
independent draws of that. "Unchanged" uses the same probabilities on both sides; a drop of D scales
the first evaluator's probabilities by (1 - D / mean), so its expected mean falls by exactly D. Each
trial runs `compare` with the gate's configuration (fewer bootstrap resamples, for speed: the decision
is the same test). Evaluators are simulated independently; Holm controls the family-wise rate
whatever their dependence, so real, correlated evaluators alarm no more often.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from evals._compare import compare
from evals._gate import GateConfig

__all__ = ["PowerEstimate", "min_detectable_drop", "power_main", "simulate"]

ALPHA, BETA = 1.54, 0.46
"""Beta(1.54, 0.46): mean 0.77, most cases easy, a long tail of hard ones."""
EVALUATORS = 5
TARGET_POWER = 0.8


@dataclass(frozen=True, kw_only=True)
class PowerEstimate:
    cases: int
    """Cases per dataset; with several datasets (`datasets`), their total."""
    repeats: int
    drop: float
    trials: int
    false_alarm: float
    """Share of trials on unchanged code that the gate called a regression (any evaluator)."""
    caught: float
    """Share of trials with the drop that the gate called a regression."""
    datasets: tuple[int, ...] = ()
    """Cases of each dataset when the family spans several (the drop is in the first one's first evaluator)."""


def _side(rng: random.Random, probabilities: Sequence[float], repeats: int) -> list[float]:
    return [sum(rng.random() < p for _ in range(repeats)) / repeats for p in probabilities]


def _trial(
    rng: random.Random,
    *,
    cases: int | Sequence[int],
    repeats: int,
    drop: float,
    config: GateConfig,
    evaluators: int = EVALUATORS,
) -> bool:
    """One gate decision on simulated scores. `cases` as a sequence: one dataset per entry, each with
    `evaluators` evaluators on its own cases, all tested as one family (as `judge_suite` does)."""
    layout = [cases] if isinstance(cases, int) else list(cases)
    scale = 1 - drop / (ALPHA / (ALPHA + BETA))
    baseline: dict[str, dict[str, list[float]]] = {}
    current: dict[str, dict[str, list[float]]] = {}
    for index, count in enumerate(layout):
        prefix = f"dataset-{index}/" if len(layout) > 1 else ""
        probabilities = [[rng.betavariate(ALPHA, BETA) for _ in range(count)] for _ in range(evaluators)]
        after = [[p * scale for p in probabilities[0]], *probabilities[1:]] if index == 0 else probabilities
        names = [f"{prefix}evaluator-{i}" for i in range(evaluators)]
        base_scores = [_side(rng, probs, repeats) for probs in probabilities]
        new_scores = [_side(rng, probs, repeats) for probs in after]
        for c in range(count):
            baseline[f"{prefix}case-{c}"] = {n: [base_scores[i][c]] for i, n in enumerate(names)}
            current[f"{prefix}case-{c}"] = {n: [new_scores[i][c]] for i, n in enumerate(names)}
    return compare(current, baseline, config=config).regressed


def simulate(
    *,
    cases: int | Sequence[int],
    repeats: int,
    drop: float,
    trials: int = 200,
    seed: int = 1,
    config: GateConfig | None = None,
    evaluators: int = EVALUATORS,
) -> PowerEstimate:
    """False-alarm rate on unchanged code and the share of `drop`s caught, over `trials` trials each.
    `evaluators` is the family's size; with `cases` a sequence (one dataset per entry, as in a real gate run
    over datasets of different sizes) it is each dataset's, and the family is their sum."""
    base = config or GateConfig()
    layout = (cases,) if isinstance(cases, int) else tuple(cases)
    family = evaluators * len(layout)
    # Enough resamples that the strictest Holm level, alpha / family, can be reached at all.
    resamples = max(400, int(4 * family / (1 - base.confidence)))
    config = base.model_copy(update={"resamples": resamples})
    rng = random.Random(seed)

    def trial(d: float) -> bool:
        return _trial(rng, cases=cases, repeats=repeats, drop=d, config=config, evaluators=evaluators)

    alarms = sum(trial(0.0) for _ in range(trials))
    caught = sum(trial(drop) for _ in range(trials))
    return PowerEstimate(
        cases=sum(layout),
        repeats=repeats,
        drop=drop,
        trials=trials,
        false_alarm=alarms / trials,
        caught=caught / trials,
        datasets=layout if len(layout) > 1 else (),
    )


def min_detectable_drop(
    *,
    cases: int | Sequence[int],
    repeats: int,
    trials: int = 200,
    seed: int = 1,
    config: GateConfig | None = None,
    evaluators: int = EVALUATORS,
) -> float:
    """The smallest drop (to 0.01) caught in TARGET_POWER of trials, by bisection over 0..0.5."""
    low, high = 0.0, 0.5
    while high - low > 0.01:
        middle = (low + high) / 2
        estimate = simulate(
            cases=cases, repeats=repeats, drop=middle, trials=trials, seed=seed, config=config, evaluators=evaluators
        )
        low, high = (low, middle) if estimate.caught >= TARGET_POWER else (middle, high)
    return round(high, 2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evals power",
        description="Simulate the gate's decision on noisy scores: false alarms and drops caught.",
    )
    parser.add_argument(
        "--cases",
        type=_case_counts,
        required=True,
        metavar="N[,N...]",
        help="cases per dataset; several (e.g. 49,11,90,35,24) simulate one dataset each, with --evaluators each,"
        " tested as one family, the drop in the first",
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--drop", type=float, default=None, help="a drop in one evaluator's mean, e.g. 0.15")
    parser.add_argument(
        "--evaluators", type=int, default=EVALUATORS, help="tests in the family (all datasets' evaluators together)"
    )
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    return parser


def _case_counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of cases or a comma-separated list") from None


def power_main(argv: Sequence[str]) -> int:
    """Exit 0, or 2 on a usage error (argparse)."""
    args = _parser().parse_args(list(argv))
    if (
        min(args.cases) < 2
        or args.repeats < 1
        or args.trials < 10
        or args.evaluators < 1
        or (args.drop is not None and not 0 < args.drop < 1)
    ):
        print("error: need --cases >= 2, --repeats >= 1, --evaluators >= 1, --trials >= 10 and 0 < --drop < 1")
        return 2
    cases: int | tuple[int, ...] = args.cases[0] if len(args.cases) == 1 else args.cases
    family = args.evaluators * len(args.cases)

    def run(drop: float) -> PowerEstimate:
        return simulate(
            cases=cases, repeats=args.repeats, drop=drop, trials=args.trials, seed=args.seed, evaluators=args.evaluators
        )

    data: dict[str, object]
    if args.drop is None:
        drop = min_detectable_drop(
            cases=cases, repeats=args.repeats, trials=args.trials, seed=args.seed, evaluators=args.evaluators
        )
        estimate = run(drop)
        data = {**asdict(estimate), "evaluators": args.evaluators, "family": family, "min_detectable_drop": drop}
    else:
        estimate = run(args.drop)
        data = {**asdict(estimate), "evaluators": args.evaluators, "family": family}
    if args.json:
        print(json.dumps(data))
    else:
        shape = f"{cases} cases" if isinstance(cases, int) else f"datasets of {', '.join(map(str, cases))} cases"
        print(
            f"{shape} × {args.repeats} repeats, {family} evaluators in the family,"
            f" {args.trials} trials each: false alarm on unchanged code "
            f"{estimate.false_alarm:.1%}; a {estimate.drop:.2f} drop caught {estimate.caught:.1%}"
            + (f"; smallest drop caught in 80% of trials: {drop:.2f}" if args.drop is None else "")
        )
    return 0
