"""`evals.compare`: one regression decision for a family of evaluators (Holm–Bonferroni)."""

from __future__ import annotations

import json
import random

import pytest

from evals import GateConfig, compare
from evals._compare import holm

CONFIG = GateConfig(resamples=1000)


def _scores(per_evaluator: dict[str, list[float]]) -> dict[str, dict[str, list[float]]]:
    cases = len(next(iter(per_evaluator.values())))
    return {f"case-{i}": {name: [values[i]] for name, values in per_evaluator.items()} for i in range(cases)}


def _binary(rng: random.Random, p: float, n: int) -> list[float]:
    return [1.0 if rng.random() < p else 0.0 for _ in range(n)]


def test_unchanged_scores_do_not_regress() -> None:
    rng = random.Random(1)
    scores = _scores({name: _binary(rng, 0.8, 60) for name in ("a", "b", "c")})
    result = compare(scores, scores, config=CONFIG)
    assert not result.regressed
    assert {e.name for e in result.evaluators} == {"a", "b", "c"}
    assert all(e.mean_diff == 0 and e.p_value == 1.0 for e in result.evaluators)


def test_a_large_drop_in_one_evaluator_regresses_the_family() -> None:
    rng = random.Random(2)
    before = {name: _binary(rng, 0.9, 80) for name in ("a", "b")}
    after = {"a": [v if i % 2 else 0.0 for i, v in enumerate(before["a"])], "b": before["b"]}
    result = compare(_scores(after), _scores(before), config=CONFIG)
    assert result.regressed
    assert result["a"].regressed and not result["b"].regressed
    assert result["a"].mean_diff < -0.3 and result["a"].upper_bound < 0


def test_holm_holds_each_p_value_to_a_stricter_level_than_alone() -> None:
    alpha = 0.05
    # Alone, 0.03 would be a regression at 5 %; in a family of five its level is 0.01.
    assert holm([0.03, 0.5, 0.6, 0.7, 0.8], alpha=alpha)[0] == pytest.approx(alpha / 5)
    levels = holm([0.001, 0.011, 0.02, 0.5], alpha=alpha)
    assert levels[:3] == [alpha / 4, alpha / 3, alpha / 2]  # step-down: each rejection loosens the next
    assert levels[3] == alpha  # the largest is held to alpha itself, and 0.5 is not rejected
    stopped = holm([0.2, 0.001, 0.9], alpha=alpha)
    assert stopped == [alpha / 2, alpha / 3, 0.0]  # after the first failure nothing is tested


def test_a_marginal_drop_in_one_of_five_is_not_a_family_regression() -> None:
    # 4 of 40 cases lose a point: a resample shows no drop only when it misses all four, (36/40)^40 ~ 1.5 %.
    # The other four evaluators move case by case without moving their means: tested, and not regressed.
    base = {"a": [1.0] * 40, **{name: [1.0, 0.0] * 20 for name in "bcde"}}
    after = {"a": [0.0] * 4 + [1.0] * 36, **{name: [0.0, 1.0] * 20 for name in "bcde"}}
    config = GateConfig(resamples=2000, tolerance=0.0)
    alone = compare(_scores({"a": after["a"]}), _scores({"a": base["a"]}), config=config)
    family = compare(_scores(after), _scores(base), config=config)
    assert 0.01 < alone["a"].p_value < 0.05
    assert alone.regressed  # tested alone at 5 %, a regression
    assert family["a"].level == pytest.approx(0.05 / 5) and not family.regressed  # one of five: held to 1 %


def test_evaluators_that_scored_every_case_the_same_are_not_counted_in_the_family() -> None:
    # The same marginal drop as above, next to four deterministic evaluators that did not move: they
    # cannot reject at any level, so they do not make the one that moved pay for them (Tarone).
    base = {name: [1.0] * 40 for name in "abcde"}
    after = {**base, "a": [0.0] * 4 + [1.0] * 36}
    config = GateConfig(resamples=2000, tolerance=0.0)
    result = compare(_scores(after), _scores(base), config=config)
    assert result.family_size == 1
    assert [e.name for e in result.evaluators if not e.tested] == ["b", "c", "d", "e"]
    assert result["a"].level == pytest.approx(0.05) and result.regressed


def test_the_minimum_detectable_drop_grows_with_noise_and_shrinks_with_cases() -> None:
    rng = random.Random(5)
    noisy = {name: _binary(rng, 0.7, 40) for name in ("a", "b")}
    other = {name: _binary(rng, 0.7, 40) for name in ("a", "b")}
    few = compare(_scores(noisy), _scores(other), config=CONFIG)
    many = compare(
        _scores({n: v * 4 for n, v in noisy.items()}), _scores({n: v * 4 for n, v in other.items()}), config=CONFIG
    )
    assert many["a"].min_detectable_drop < few["a"].min_detectable_drop  # 4x the cases: about half the drop
    assert many["a"].min_detectable_drop == pytest.approx(
        CONFIG.tolerance + (few["a"].min_detectable_drop - CONFIG.tolerance) / 2, rel=0.01
    )
    same = compare(_scores(noisy), _scores(noisy), config=CONFIG)
    assert same["a"].min_detectable_drop == pytest.approx(CONFIG.tolerance)  # no noise: beyond tolerance


def test_datasets_combine_into_one_family() -> None:
    from evals import combine

    one = _scores({"a": [1.0, 0.0, 1.0]})
    combined = combine({"x": one, "y": one})
    assert set(combined) == {"x/case-0", "x/case-1", "x/case-2", "y/case-0", "y/case-1", "y/case-2"}
    assert combined["y/case-1"] == {"y/a": [0.0]}


def test_skipped_and_one_sided_evaluators_are_left_out() -> None:
    scores = _scores({"a": [1.0, 0.0], "critic": [0.0, 0.0]})
    older = _scores({"a": [1.0, 0.0], "critic": [1.0, 1.0], "gone": [1.0, 1.0]})
    result = compare(scores, older, config=CONFIG, skip={"critic"})
    assert [e.name for e in result.evaluators] == ["a"]
    assert not result.regressed


def test_the_power_simulation_runs_the_gates_decision(capsys: pytest.CaptureFixture[str]) -> None:
    from evals._power import power_main, simulate

    huge = simulate(cases=30, repeats=1, drop=0.5, trials=30, seed=3)
    assert huge.caught >= 0.8  # a 50-point drop on 30 cases is near-certain to be caught
    assert huge.false_alarm <= 0.2  # Holm at 5 %: a few alarms in 30 trials at most
    assert power_main(["--cases", "20", "--drop", "0.3", "--trials", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cases"] == 20 and data["trials"] == 10 and 0 <= data["false_alarm"] <= 1
    assert power_main(["--cases", "1"]) == 2
