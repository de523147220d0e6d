"""`evals.compare`: one regression decision for a family of evaluators (Holm–Bonferroni)."""

from __future__ import annotations

import json
import math
import random
from statistics import NormalDist

import pytest

from evals import Baseline, DatasetScores, GateConfig, compare, judge_suite, min_detectable_drop
from evals._compare import detectable_drop_text, holm
from evals._gate import new_baseline, sign_flip_p_value

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
    # 5 of 40 cases lose a point and none gains: under "no change" each of the five moves is as likely
    # down as up, so all five down has probability 2^-5 ~ 3.1 % (the sign-flip test's exact p-value).
    # The other four evaluators move case by case without moving their means: tested, and not regressed.
    base = {"a": [1.0] * 40, **{name: [1.0, 0.0] * 20 for name in "bcde"}}
    after = {"a": [0.0] * 5 + [1.0] * 35, **{name: [0.0, 1.0] * 20 for name in "bcde"}}
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
    after = {**base, "a": [0.0] * 5 + [1.0] * 35}
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
    few_mdd, many_mdd = few["a"].min_detectable_drop, many["a"].min_detectable_drop
    assert few_mdd is not None and many_mdd is not None
    assert many_mdd < few_mdd  # 4x the cases: about half the drop
    assert many_mdd == pytest.approx(CONFIG.tolerance + (few_mdd - CONFIG.tolerance) / 2, rel=0.01)
    # No spread at all: not "any drop beyond the tolerance", but the drop that its own spread would let
    # through (see the next test).
    same = compare(_scores(noisy), _scores(noisy), config=CONFIG)
    assert same["a"].min_detectable_drop is not None and same["a"].min_detectable_drop > 0.1


def test_a_run_whose_scores_did_not_move_claims_only_the_drop_its_cases_can_show() -> None:
    # A deterministic evaluator, every case passing on both sides: 49 paired differences, all zero.
    cases = 49
    same = _scores({"a": [1.0] * cases})
    config = GateConfig(resamples=2000)
    unchanged = compare(same, same, config=config)
    mdd = unchanged["a"].min_detectable_drop
    assert mdd is not None
    # The floor solves d = tolerance + (z(1 - α) + z(0.8)) · sqrt(d (1 - d) / n): the spread of a drop of d
    # in [0, 1] scores is at most d (1 - d) (Bhatia–Davis), whatever cases it falls on.
    z = NormalDist().inv_cdf
    c = (z(1 - 0.05) + z(0.8)) / math.sqrt(cases)
    assert mdd == pytest.approx(config.tolerance + c * math.sqrt(mdd * (1 - mdd)), abs=1e-9)
    assert 0.12 < mdd < 0.17
    # The old claim (the tolerance, 0.02) was false: one case of 49 failing is a 0.0204 drop, and it is not
    # caught; a drop of the MDD, as whole cases failing, is.
    one_lost = _scores({"a": [0.0] + [1.0] * (cases - 1)})
    assert not compare(one_lost, same, config=config).regressed
    k = math.ceil(mdd * cases)
    mdd_lost = _scores({"a": [0.0] * k + [1.0] * (cases - k)})
    assert compare(mdd_lost, same, config=config).regressed
    # More cases, smaller claim.
    many = compare(_scores({"a": [1.0] * 4 * cases}), _scores({"a": [1.0] * 4 * cases}), config=config)
    assert many["a"].min_detectable_drop is not None and many["a"].min_detectable_drop < mdd / 1.6


def test_with_one_case_the_minimum_detectable_drop_is_unknown() -> None:
    for after, before in (([0.0], [1.0]), ([1.0], [1.0])):
        result = compare(_scores({"a": after}), _scores({"a": before}), config=CONFIG)
        assert result["a"].cases == 1
        assert result["a"].min_detectable_drop is None
        assert result["a"].min_detectable_drop_unknown == "unknown: 1 case in common, a spread needs at least 2"
    assert detectable_drop_text(None, cases=1) == "unknown (1 case)"
    assert detectable_drop_text(0.1234, cases=40) == "0.123"
    assert min_detectable_drop([], level=0.05, tolerance=0.02) is None


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
    capsys.readouterr()
    # Datasets of different sizes, each with its evaluators, as one family (a real gate run's layout).
    assert power_main(["--cases", "20,10", "--evaluators", "2", "--drop", "0.3", "--trials", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["datasets"], data["cases"], data["family"]) == ([20, 10], 30, 4)
    assert power_main(["--cases", "20,1"]) == 2


def _baseline(dataset: str, scores: dict[str, dict[str, list[float]]]) -> Baseline:
    return new_baseline(
        dataset=dataset, model="m", prompt_version="p", judge_version="j", repeat=1, scores=scores, revision=None
    )


def test_the_datasets_of_a_gate_run_are_one_holm_family() -> None:
    # Dataset x: evaluator `a` loses a point on 5 of 40 cases (p ≈ 3.1 %, as above). Gated alone, x is a
    # family of one and that is a regression. Gated with dataset y, whose four evaluators move case by case
    # without moving their means, the family is five tests: `a` is held to 1 % and nothing regressed.
    config = GateConfig(resamples=2000, tolerance=0.0, thresholds={})
    x_before, x_after = _scores({"a": [1.0] * 40}), _scores({"a": [0.0] * 5 + [1.0] * 35})
    y_before = _scores({name: [1.0, 0.0] * 20 for name in "bcde"})
    y_after = _scores({name: [0.0, 1.0] * 20 for name in "bcde"})
    x = DatasetScores(name="x", current=x_after, baseline=_baseline("x", x_before))
    y = DatasetScores(name="y", current=y_after, baseline=_baseline("y", y_before))

    (alone,), family_alone = judge_suite([x], config=config, judge_version="j")
    assert family_alone is not None and family_alone.family_size == 1
    assert not alone.passed and alone.verdicts[0].regressed

    (x_result, y_result), family = judge_suite([x, y], config=config, judge_version="j")
    assert family is not None and family.family_size == 5
    assert {e.name for e in family.evaluators} == {"x/a", "y/b", "y/c", "y/d", "y/e"}
    assert family["x/a"].p_value == pytest.approx(family_alone["x/a"].p_value)  # the same test...
    assert family["x/a"].level == pytest.approx(0.05 / 5)  # ...held to the family's level
    assert not family.regressed and x_result.passed and y_result.passed
    (a,) = x_result.verdicts
    assert a.test is not None and not a.test.regressed and a.min_detectable_drop == family["x/a"].min_detectable_drop


def test_the_p_value_is_exact_for_few_cases_and_never_below_what_the_cases_allow() -> None:
    # Every one of n cases dropping a full point is the most extreme pattern there is: p = 2^-n exactly
    # (enumerated), however large the drop. The percentile bootstrap said 0 here, and 1 % for 4 of 40.
    for n in (3, 5, 8, 12):
        assert sign_flip_p_value([-1.0] * n, tolerance=0.0, resamples=2000, seed=1) == pytest.approx(0.5**n)
    # Beyond the enumeration, sampled: close to the exact 2^-5 for five drops among 40 cases.
    sampled = sign_flip_p_value([-1.0] * 5 + [0.0] * 35, tolerance=0.0, resamples=20_000, seed=1)
    assert sampled == pytest.approx(1 / 32, abs=0.005)
    # Unchanged scores: no evidence of a drop at all.
    assert sign_flip_p_value([0.0] * 20, tolerance=0.02, resamples=2000, seed=1) == 1.0


def test_four_cases_all_dropping_is_not_significant_and_no_drop_is_claimed_detectable() -> None:
    before, after = _scores({"a": [1.0] * 4}), _scores({"a": [0.0] * 4})
    result = compare(after, before, config=GateConfig(resamples=2000, tolerance=0.0))
    assert result["a"].p_value == pytest.approx(1 / 16) and not result.regressed
    assert result["a"].min_detectable_drop is None
    assert detectable_drop_text(None, cases=4) == "none (4 cases)"
    assert "no drop is significant" in (result["a"].min_detectable_drop_unknown or "")
