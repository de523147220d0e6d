"""The release gate: thresholds, committed baselines, and a paired bootstrap over cases.

pydantic-evals reports scores; it never fails a build. Here a dataset fails when an evaluator's mean
is below its threshold, or when the family of its evaluators is significantly below the baseline:
`evals.compare` tests each evaluator's paired differences (current − baseline, per case) with a
bootstrap and controls the family-wise false-alarm rate with Holm–Bonferroni (decision 0020). Repeats
of a case are not independent samples (same question, same pages), so each case contributes the mean of
its repeats and the bootstrap resamples cases — a cluster bootstrap. The RNG is seeded, so the same
scores always get the same verdict.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import fmean

import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Baseline",
    "CaseScores",
    "GateConfig",
    "PairedTest",
    "baseline_path",
    "case_means",
    "git_revision",
    "load_baseline",
    "load_gate_config",
    "model_slug",
    "paired_bootstrap",
    "save_baseline",
]

CaseScores = Mapping[str, Mapping[str, Sequence[float]]]
"""case name → evaluator name → one score per repeat."""

DEFAULT_THRESHOLDS: dict[str, float] = {
    "grounding": 0.95,
    "key_facts": 0.6,
    "trajectory": 0.95,
    "budget": 1.0,
    "critic": 0.6,
}


class GateConfig(BaseModel):
    """`datasets/gate.yaml`: how strict the gate is. Thresholds are minimum means over a dataset's cases."""

    model_config = ConfigDict(extra="forbid")

    tolerance: float = Field(default=0.02, ge=0, le=1, description="Drops smaller than this are never regressions.")
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    resamples: int = Field(default=2000, ge=100)
    seed: int = 1337
    thresholds: dict[str, dict[str, float]] = Field(default_factory=lambda: {"default": dict(DEFAULT_THRESHOLDS)})
    judges: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Critic agreement targets for `python -m evals judges` (evals/_judges.py)."
    )

    def thresholds_for(self, dataset: str) -> dict[str, float]:
        return {**self.thresholds.get("default", {}), **self.thresholds.get(dataset, {})}


def load_gate_config(path: Path | None) -> GateConfig:
    if path is None or not path.exists():
        return GateConfig()
    return GateConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


# --- baselines ------------------------------------------------------------------------------------


class Baseline(BaseModel):
    """The accepted scores of one dataset with one model, committed next to the datasets."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    model: str
    prompt_version: str
    """The research prompt's version, what every run records as its own."""
    prompt_versions: dict[str, str] = Field(
        default_factory=dict,
        description="name → `name@hash` of every prompt a run reads (`evals._suite.prompt_versions`); empty in"
        " baselines blessed before they were all recorded, which know only `prompt_version`.",
    )
    judge_version: str
    git_revision: str | None
    created_at: datetime
    repeat: int = 1
    dataset_version: str | None = Field(default=None, description="`evals._datasets.dataset_version` when blessed.")
    means: dict[str, float] = Field(default_factory=dict, description="Per evaluator, over cases (for readers).")
    cases: dict[str, dict[str, list[float]]] = Field(description="case → evaluator → score per repeat")
    answers: dict[str, str] = Field(
        default_factory=dict, description="case → its first run's answer (shortened), for reports and review"
    )


def model_slug(model: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", model.lower()).strip("-") or "model"


def baseline_path(directory: Path, dataset: str, model: str) -> Path:
    return directory / f"{dataset}.{model_slug(model)}.json"


def load_baseline(path: Path) -> Baseline | None:
    if not path.exists():
        return None
    return Baseline.model_validate_json(path.read_text(encoding="utf-8"))


def save_baseline(path: Path, baseline: Baseline) -> None:
    """Indented JSON with one line per case (scores, then answers), so a re-bless reads as a per-case diff
    in review: which scores moved, and what the answer now says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = baseline.model_dump(mode="json")
    sections = {key: data.pop(key) for key in ("cases", "answers")}
    head = json.dumps(data, indent=2).removesuffix("\n}")
    blocks = [
        f'  "{key}": {{\n'
        + ",\n".join(f"    {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in rows.items())
        + "\n  }"
        for key, rows in sections.items()
    ]
    path.write_text(head + ",\n" + ",\n".join(blocks) + "\n}\n", encoding="utf-8")


def git_revision(cwd: Path | None = None) -> str | None:
    """`git rev-parse HEAD`, with `-dirty` when tracked files have uncommitted changes; None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if status else head


# --- statistics -----------------------------------------------------------------------------------


def case_means(scores: CaseScores, evaluator: str) -> dict[str, float]:
    """Each case's mean over its repeats, for the cases that have this score."""
    return {case: fmean(values[evaluator]) for case, values in scores.items() if values.get(evaluator)}


@dataclass(frozen=True, kw_only=True)
class PairedTest:
    """Current minus baseline over the cases both have, with a one-sided bootstrap upper bound."""

    cases: int
    mean_diff: float
    upper_bound: float
    regressed: bool
    p_value: float = 1.0
    """One-sided p-value of "no regression beyond −tolerance", from a sign-flip randomization test
    (`sign_flip_p_value`): what `evals.compare` holds to Holm's levels."""
    lower_bound: float = float("nan")
    """The matching lower bound: [lower_bound, upper_bound] is the two-sided 2·confidence − 1 interval."""


def paired_bootstrap(
    current: Mapping[str, float],
    baseline: Mapping[str, float],
    *,
    tolerance: float = 0.02,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 1337,
) -> PairedTest | None:
    """The mean per-case difference (current − baseline) over the cases both have, its bootstrap
    interval (cases resampled with replacement, for the report) and a sign-flip p-value (the decision).
    Regressed, as a single test, when that p-value is at most 1 − `confidence`. None when the two share
    no case.

    Why two methods: the percentile bootstrap is a fine interval to show, but as a test it is liberal
    with few cases, worst in the far tail a Holm family asks about (on 11 cases at α/35 it rejected
    about five times as often as it should). The sign-flip test is exact under the null whatever the
    number of cases."""
    common = sorted(set(current) & set(baseline))
    if not common:
        return None
    diffs = [current[case] - baseline[case] for case in common]
    mean_diff = fmean(diffs)
    if all(d == diffs[0] for d in diffs):  # no spread: the bootstrap would only return the mean
        lower, upper = mean_diff, mean_diff
    else:
        rng = random.Random(seed)
        n = len(diffs)
        means = sorted(fmean(rng.choices(diffs, k=n)) for _ in range(resamples))
        upper = means[min(resamples - 1, int(confidence * resamples))]
        lower = means[int((1 - confidence) * resamples)]
    p_value = sign_flip_p_value(diffs, tolerance=tolerance, resamples=resamples, seed=seed)
    return PairedTest(
        cases=len(common),
        mean_diff=mean_diff,
        upper_bound=upper,
        regressed=p_value <= 1 - confidence,
        p_value=p_value,
        lower_bound=lower,
    )


EXACT_SIGN_FLIP_CASES = 12
"""Up to this many cases the sign-flip distribution is enumerated (2**12 = 4096 patterns); beyond, sampled."""


def sign_flip_p_value(diffs: Sequence[float], *, tolerance: float, resamples: int, seed: int) -> float:
    """One-sided p-value for H0 "the mean difference is at least −tolerance" against a regression.

    A randomization test on the shifted differences x = d + tolerance: under H0's boundary each x is
    as likely positive as negative (the two sides are exchangeable: same code, same cases), so every
    pattern of signs is equally likely, and the p-value is the share of patterns whose total is at most
    the observed one. Enumerated exactly for few cases; otherwise `resamples` random patterns, counted
    with the observed one so that the p-value is never below 1/(resamples + 1)."""
    shifted = [d + tolerance for d in diffs]
    observed = sum(shifted) + 1e-12  # a pattern that ties the observed total counts (rounding aside)
    n = len(shifted)
    if n <= EXACT_SIGN_FLIP_CASES:
        patterns = 1 << n
        at_most = sum(
            1 for mask in range(patterns) if sum(-x if mask >> i & 1 else x for i, x in enumerate(shifted)) <= observed
        )
        return at_most / patterns
    rng = random.Random(seed)
    total = sum(shifted)
    at_most = 0
    for _ in range(resamples):
        mask = rng.getrandbits(n)
        flipped = sum(x for i, x in enumerate(shifted) if mask >> i & 1)
        if total - 2 * flipped <= observed:
            at_most += 1
    return (1 + at_most) / (1 + resamples)


def new_baseline(
    *,
    dataset: str,
    model: str,
    prompt_version: str,
    judge_version: str,
    repeat: int,
    scores: CaseScores,
    revision: str | None,
    dataset_version: str | None = None,
    answers: Mapping[str, str] | None = None,
    prompt_versions: Mapping[str, str] | None = None,
) -> Baseline:
    names = sorted({name for values in scores.values() for name in values})
    means = {name: round(fmean(case_means(scores, name).values()), 4) for name in names}
    return Baseline(
        dataset=dataset,
        model=model,
        prompt_version=prompt_version,
        prompt_versions=dict(prompt_versions or {}),
        judge_version=judge_version,
        git_revision=revision,
        created_at=datetime.now(UTC).replace(microsecond=0),
        repeat=repeat,
        dataset_version=dataset_version,
        means=means,
        cases={
            case: {name: [round(v, 4) for v in values] for name, values in sorted(per.items())}
            for case, per in sorted(scores.items())
        },
        answers={case: shorten(text) for case, text in sorted((answers or {}).items())},
    )


ANSWER_CHARS = 600


def shorten(text: str, limit: int = ANSWER_CHARS) -> str:
    """One line of at most `limit` characters: enough to see what an answer says in a diff."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
