"""bench/gate_power_independent.py: its drop calibration is right and the gate it measures behaves.

The script is a bench, not a package, so it is loaded from its path. Everything here runs in one
process with a few hundred bootstrap resamples, in a few seconds.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path
from statistics import fmean
from types import ModuleType

import pytest

from evals import GateConfig

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gate_power_independent.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gate_power_independent", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


bench = _load()
FAST = GateConfig().model_copy(update={"resamples": 200})


def test_calibrated_drop_lowers_each_evaluators_simulated_mean_by_the_drop() -> None:
    """Quadrature calibrates; the simulator must agree with it: the same draws scored with and without
    the shift differ by the drop, and unshifted scores average the target mean. (Calibrating without
    the repeat noise misses both by more than the tolerance.)"""
    model = bench.Model()
    calibration = bench.calibrate(model, drops=[0.10, 0.20])
    rng = random.Random(7)
    cases = bench.draw_cases(model, cases=20000, rng=rng)
    run = bench.draw_run(model, calibration, cases=cases, repeats=1, rng=rng)
    before = run.scores({})
    after = {drop: run.scores(shifts) for drop, shifts in calibration.shifts.items()}  # shifts move only their own
    for evaluator in model.evaluators:
        name = evaluator.name
        mean_before = fmean(s[name][0] for s in before.values())
        assert mean_before == pytest.approx(evaluator.target, abs=0.01), name
        for drop, scores in after.items():
            mean_after = fmean(s[name][0] for s in scores.values())
            assert mean_before - mean_after == pytest.approx(drop, abs=0.01), (name, drop)


def test_large_drop_is_caught_and_unchanged_code_rarely_alarms() -> None:
    report = bench.measure(sizes=[(40, 1)], drops=[0.1, 0.4], trials=40, seed=3, config=FAST)
    (cell,) = report.cells
    assert cell.false_alarm.value <= 0.15
    assert cell.one[0.4].value >= 0.8
    assert cell.all[0.4].value >= 0.95
    # Same draws, monotone scores: a bigger drop or more evaluators dropped never escapes the gate more.
    assert cell.one[0.1].hits <= cell.one[0.4].hits
    assert cell.one[0.4].hits <= cell.all[0.4].hits


def test_command_line_prints_json_with_goals(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--trials", "5", "--sizes", "20x2", "--drops", "0.15", "--resamples", "100", "--workers", "1", "--json"]
    assert bench.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gate"]["resamples"] == 100
    assert [(c["cases"], c["repeats"]) for c in out["cells"]] == [(20, 2)]
    assert out["cells"][0]["false_alarm"]["trials"] == 5
    assert out["goals"][1]["met"] is None  # 100x3 was not measured
