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
    repeats: int
    drop: float
    trials: int
    false_alarm: float
    """Share of trials on unchanged code that the gate called a regression (any evaluator)."""
    caught: float
    """Share of trials with the drop that the gate called a regression."""


def _side(rng: random.Random, probabilities: Sequence[float], repeats: int) -> list[float]:
    return [sum(rng.random() < p for _ in range(repeats)) / repeats for p in probabilities]


def _trial(
    rng: random.Random, *, cases: int, repeats: int, drop: float, config: GateConfig, evaluators: int = EVALUATORS
) -> bool:
    probabilities = [[rng.betavariate(ALPHA, BETA) for _ in range(cases)] for _ in range(evaluators)]
    scale = 1 - drop / (ALPHA / (ALPHA + BETA))
    after = [[p * scale for p in probabilities[0]], *probabilities[1:]]
    names = [f"evaluator-{i}" for i in range(evaluators)]
    base_scores = [_side(rng, probs, repeats) for probs in probabilities]
    new_scores = [_side(rng, probs, repeats) for probs in after]
    baseline = {f"case-{c}": {n: [base_scores[i][c]] for i, n in enumerate(names)} for c in range(cases)}
    current = {f"case-{c}": {n: [new_scores[i][c]] for i, n in enumerate(names)} for c in range(cases)}
    return compare(current, baseline, config=config).regressed


def simulate(
    *,
    cases: int,
    repeats: int,
    drop: float,
    trials: int = 200,
    seed: int = 1,
    config: GateConfig | None = None,
    evaluators: int = EVALUATORS,
) -> PowerEstimate:
    """False-alarm rate on unchanged code and the share of `drop`s caught, over `trials` trials each.
    `evaluators` is the family's size: a gate run over several datasets tests each dataset's evaluators."""
    base = config or GateConfig()
    # Enough resamples that the strictest Holm level, alpha / evaluators, can be reached at all.
    resamples = max(400, int(4 * evaluators / (1 - base.confidence)))
    config = base.model_copy(update={"resamples": resamples})
    rng = random.Random(seed)

    def trial(d: float) -> bool:
        return _trial(rng, cases=cases, repeats=repeats, drop=d, config=config, evaluators=evaluators)

    alarms = sum(trial(0.0) for _ in range(trials))
    caught = sum(trial(drop) for _ in range(trials))
    return PowerEstimate(
        cases=cases, repeats=repeats, drop=drop, trials=trials, false_alarm=alarms / trials, caught=caught / trials
    )


def min_detectable_drop(
    *,
    cases: int,
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
    parser.add_argument("--cases", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--drop", type=float, default=None, help="a drop in one evaluator's mean, e.g. 0.15")
    parser.add_argument(
        "--evaluators", type=int, default=EVALUATORS, help="tests in the family (all datasets' evaluators together)"
    )
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    return parser


def power_main(argv: Sequence[str]) -> int:
    """Exit 0, or 2 on a usage error (argparse)."""
    args = _parser().parse_args(list(argv))
    if (
        args.cases < 2
        or args.repeats < 1
        or args.trials < 10
        or args.evaluators < 1
        or (args.drop is not None and not 0 < args.drop < 1)
    ):
        print("error: need --cases >= 2, --repeats >= 1, --evaluators >= 1, --trials >= 10 and 0 < --drop < 1")
        return 2
    common = {"cases": args.cases, "repeats": args.repeats, "trials": args.trials, "seed": args.seed}
    common["evaluators"] = args.evaluators
    if args.drop is None:
        drop = min_detectable_drop(**common)
        estimate = simulate(drop=drop, **common)
        data = {**asdict(estimate), "evaluators": args.evaluators, "min_detectable_drop": drop}
    else:
        estimate = simulate(drop=args.drop, **common)
        data = {**asdict(estimate), "evaluators": args.evaluators}
    if args.json:
        print(json.dumps(data))
    else:
        print(
            f"{args.cases} cases × {args.repeats} repeats, {args.evaluators} evaluators in the family,"
            f" {args.trials} trials each: false alarm on unchanged code "
            f"{estimate.false_alarm:.1%}; a {estimate.drop:.2f} drop caught {estimate.caught:.1%}"
            + (
                f"; smallest drop caught in 80% of trials: {data['min_detectable_drop']:.2f}"
                if args.drop is None
                else ""
            )
        )
    return 0
