"""What a person reads after an A/B run: the verdict, each paired difference with its interval and the
drop the run could have caught, what each side was, then the cases that changed, worst first."""

from __future__ import annotations

from pathlib import Path
from statistics import fmean
from typing import Any

from rich.console import Console
from rich.table import Table

from evals._ab import ABDataset, ABResult
from evals._compare import EvaluatorComparison, detectable_drop_text
from evals._report import family_line, quote_block, write_report_files
from evals._sides import SideCase, SideInfo

__all__ = ["ab_to_json", "print_ab_summary", "render_ab_markdown", "write_ab_reports"]

CHANGED_CASES = 20


def _mean(values: list[float] | None) -> float | None:
    return fmean(values) if values else None


def changed_cases(dataset: ABDataset) -> list[tuple[float, SideCase, SideCase]]:
    """(total change of the case's mean scores, base, current) for cases whose scores moved, worst first."""
    rows: list[tuple[float, SideCase, SideCase]] = []
    for name, now in dataset.current.items():
        then = dataset.base.get(name)
        if then is None:
            continue
        deltas = [
            (_mean(now.scores.get(ev)) or 0.0) - (_mean(then.scores.get(ev)) or 0.0)
            for ev in set(now.scores) & set(then.scores)
        ]
        if any(abs(d) > 0.005 for d in deltas):
            rows.append((sum(deltas), then, now))
    rows.sort(key=lambda row: (row[0], row[2].name))
    return rows


def _verdict(e: EvaluatorComparison) -> str:
    if e.regressed:
        return "REGRESSED"
    return "ok" if e.tested else "same"


def _side_line(info: SideInfo, other: SideInfo) -> str:
    """One side's row; a prompt whose version differs from the other side's is in bold."""
    datasets = ", ".join(f"{name} `{version}`" for name, version in sorted(info.dataset_versions.items()))
    versions, theirs = info.versions, other.versions
    prompts = " ".join(
        f"**`{version}`**" if theirs.get(name) != version else f"`{version}`"
        for name, version in sorted(versions.items(), key=lambda item: (item[0] != "research", item[0]))
    )
    return (
        f"| {info.label} | `{info.model}` | `{info.revision or '?'}` | {prompts}"
        f"{'' if info.reads_prompt else ' (not read)'} | `{info.judge_version}` | {datasets} | ${info.spent_usd:.4f} |"
    )


def _scores_line(before: SideCase, after: SideCase) -> str:
    names = sorted(set(before.scores) | set(after.scores))
    return ", ".join(f"{n} {_fmt(_mean(before.scores.get(n)))} → {_fmt(_mean(after.scores.get(n)))}" for n in names)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def render_ab_markdown(result: ABResult) -> str:
    lines = [f"# A/B eval: {'PASSED' if result.passed else 'FAILED'}", ""]
    if result.failures:
        lines += ["## Why it failed", "", *(f"- {reason}" for reason in result.failures), ""]
    lines += [*(f"- **note:** {note}" for note in result.notes), ""]
    lines += [
        f"Base and current ran the same cases {result.repeat} time(s) each, round by round at the same time"
        f" ({result.duration_seconds:.0f}s). {family_line(result.family)}",
        "",
        "| evaluator | cases | base | current | Δ | 90% interval | p | level | MDD | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for e in result.family.evaluators:
        lines.append(
            f"| {e.name} | {e.cases} | {e.baseline:.3f} | {e.current:.3f} | {e.mean_diff:+.3f} |"
            f" [{e.lower_bound:+.3f}, {e.upper_bound:+.3f}] | {e.p_value:.4f} | {e.level:.4f} |"
            f" {detectable_drop_text(e.min_detectable_drop, cases=e.cases)} | {_verdict(e)} |"
        )
    lines += [
        "",
        "## The sides",
        "",
        "| side | model | revision | prompts (changed in bold) | judge | datasets | spent |",
        "|---|---|---|---|---|---|---:|",
        _side_line(result.base, result.current),
        _side_line(result.current, result.base),
        "",
    ]
    for dataset in result.datasets:
        changed = changed_cases(dataset)
        lines += [f"## {dataset.name}: {len(changed)} of {len(dataset.current)} cases changed (worst first)", ""]
        for delta, before, after in changed[:CHANGED_CASES]:
            lines += [
                f"### {after.name} ({delta:+.2f})",
                "",
                f"**Question:** {after.question}",
                "",
                f"**Scores:** {_scores_line(before, after)}",
                "",
                "**Base answer:**",
                "",
                quote_block(before.answers[0] if before.answers else ""),
                "",
                "**Current answer:**",
                "",
                quote_block(after.answers[0] if after.answers else ""),
                "",
            ]
        if len(changed) > CHANGED_CASES:
            lines += [f"… and {len(changed) - CHANGED_CASES} more in ab-report.json", ""]
    return "\n".join(lines).rstrip() + "\n"


def _case_json(case: SideCase) -> dict[str, Any]:
    return {
        "answers": case.answers,
        "answered": case.answered,
        "scores": case.scores,
        "errors": case.errors,
        "not_run": case.not_run,
    }


def ab_to_json(result: ABResult) -> dict[str, Any]:
    return {
        "passed": result.passed,
        "failures": result.failures,
        "notes": result.notes,
        "prompt_unevaluated": result.prompt_unevaluated,
        "unevaluated_prompts": result.unevaluated_prompts,
        "not_run": result.not_run,
        "repeat": result.repeat,
        "alpha": result.family.alpha,
        "family_size": result.family.family_size,
        "sides": {
            side.label: {
                "model": side.model,
                "revision": side.revision,
                "prompt_version": side.prompt_version,
                "prompt_versions": side.prompt_versions,
                "reads_prompt": side.reads_prompt,
                "judge_version": side.judge_version,
                "dataset_versions": side.dataset_versions,
                "spent_usd": side.spent_usd,
            }
            for side in (result.base, result.current)
        },
        "evaluators": [
            {
                "name": e.name,
                "cases": e.cases,
                "base": e.baseline,
                "current": e.current,
                "mean_diff": e.mean_diff,
                "lower_bound": e.lower_bound,
                "upper_bound": e.upper_bound,
                "p_value": e.p_value,
                "level": e.level,
                "min_detectable_drop": e.min_detectable_drop,
                "min_detectable_drop_unknown": e.min_detectable_drop_unknown,
                "tested": e.tested,
                "regressed": e.regressed,
            }
            for e in result.family.evaluators
        ],
        "datasets": [
            {
                "name": d.name,
                "cases": [
                    {
                        "name": name,
                        "question": now.question,
                        "base": _case_json(d.base[name]) if name in d.base else None,
                        "current": _case_json(now),
                    }
                    for name, now in sorted(d.current.items())
                ],
            }
            for d in result.datasets
        ],
    }


def print_ab_summary(result: ABResult, console: Console) -> None:
    table = Table(
        title=f"A/B: {result.base.label} {result.base.model} vs {result.current.label} {result.current.model}"
    )
    table.add_column("evaluator", overflow="fold")
    for column in ("base", "current", "Δ", "90% CI", "MDD"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdict")
    for e in result.family.evaluators:
        table.add_row(
            e.name,
            f"{e.baseline:.3f}",
            f"{e.current:.3f}",
            f"{e.mean_diff:+.3f}",
            f"[{e.lower_bound:+.3f}, {e.upper_bound:+.3f}]",
            "–" if e.min_detectable_drop is None else f"{e.min_detectable_drop:.3f}",
            _verdict(e),
            style="bold red" if e.regressed else "",
        )
    table.caption = family_line(result.family)
    console.print(table)
    for note in result.notes:
        console.print(f"[bold yellow]note:[/bold yellow] {note}")


def write_ab_reports(result: ABResult, directory: Path) -> tuple[Path, Path]:
    return write_report_files(directory, "ab-report", markdown=render_ab_markdown(result), data=ab_to_json(result))
