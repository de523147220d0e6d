"""What a person reads: a diff table on the console, `eval-report.md`, and `eval-report.json` for tools."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean
from typing import Any

from rich.console import Console
from rich.table import Table

from evals._compare import Comparison, detectable_drop_text, mdd_unknown_reason
from evals._suite import CaseResult, DatasetResult, SuiteResult
from evals._verdict import EvaluatorVerdict

__all__ = [
    "family_line",
    "print_summary",
    "quote_block",
    "render_markdown",
    "to_json",
    "write_report_files",
    "write_reports",
]

ANSWER_CHARS = 1_500
CHANGED_CASES = 15


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def _interval(v: EvaluatorVerdict) -> str:
    if v.test is None:
        return "–"
    return f"[{v.test.lower_bound:+.3f}, {v.test.upper_bound:+.3f}]"


def _mdd(v: EvaluatorVerdict) -> str:
    """`–` without a comparison; the drop, or `unknown (n case)` when it could not be estimated."""
    return "–" if v.test is None else detectable_drop_text(v.min_detectable_drop, cases=v.test.cases)


def family_line(family: Comparison | None, *, confidence: float = 0.95) -> str:
    """How the regression decision was made, for the head of every report."""
    if family is None:
        return "No baseline to compare with: thresholds only."
    untested = len(family.evaluators) - family.family_size
    return (
        f"One regression decision over {family.family_size} (dataset, evaluator) tests, Holm–Bonferroni at"
        f" family-wise α = {family.alpha:.2f}"
        + (f"; {untested} scored every case identically on both sides and needed no test" if untested else "")
        + ". MDD: the drop caught in 80 % of runs with these cases, repeats and noise"
        + (
            " (unknown with fewer than 2 cases in common: no spread to estimate; none with 4 or fewer: no"
            " p-value can be below 2^-n)."
            if any(e.min_detectable_drop is None for e in family.evaluators)
            else "."
        )
    )


def _verdict(v: EvaluatorVerdict) -> str:
    if v.below_threshold and v.regressed:
        return "FAIL (threshold, regression)"
    if v.below_threshold:
        return "FAIL (threshold)"
    if v.regressed:
        return "FAIL (regression)"
    return "ok"


def _case_mean(case: CaseResult, name: str) -> float | None:
    values = case.scores.get(name)
    return fmean(values) if values else None


def _worst(case: CaseResult) -> tuple[float, str]:
    """Sort key: the case's lowest mean score, then its name."""
    means = [fmean(values) for values in case.scores.values() if values]
    return (min(means) if means else -1.0, case.name)


def _changed_cases(dataset: DatasetResult) -> list[tuple[str, str, float | None, float | None]]:
    """(case, evaluator, baseline, current) where the case's mean moved by more than 0.005."""
    if dataset.baseline is None:
        return []
    rows: list[tuple[str, str, float | None, float | None]] = []
    for case in dataset.cases:
        before = dataset.baseline.cases.get(case.name, {})
        for name in sorted(set(case.scores) | set(before)):
            now = _case_mean(case, name)
            then = fmean(before[name]) if before.get(name) else None
            if now is None or then is None or abs(now - then) > 0.005:
                rows.append((case.name, name, then, now))
    rows.sort(key=lambda r: (r[3] if r[3] is not None else -1.0) - (r[2] if r[2] is not None else 0.0))
    return rows


# --- console ----------------------------------------------------------------------------------------


def print_summary(result: SuiteResult, console: Console) -> None:
    """Per dataset: the evaluator diff table, the cases that moved most, and the verdict."""
    for dataset in result.datasets:
        base = dataset.baseline
        title = f"{dataset.name} · {result.model} · {len(dataset.cases)} cases × {result.repeat}"
        caption = (
            f"baseline {base.git_revision or '?'} ({base.created_at:%Y-%m-%d}, prompt {base.prompt_version})"
            if base
            else "no baseline"
        )
        table = Table(title=title, caption=caption)
        for column in ("evaluator", "threshold", "baseline", "current", "Δ", "90% CI", "MDD", "verdict"):
            table.add_column(column, justify="left" if column in ("evaluator", "verdict") else "right")
        for v in dataset.gate.verdicts:
            style = "" if v.passed else "bold red"
            diff = v.test.mean_diff if v.test else None
            table.add_row(
                v.name,
                _fmt(v.threshold, ".2f"),
                _fmt(v.baseline),
                _fmt(v.current),
                _fmt(diff, "+.3f"),
                _interval(v),
                _mdd(v),
                _verdict(v) + (f" — {v.note}" if v.note else ""),
                style=style,
            )
        console.print(table)
        changed = _changed_cases(dataset)
        if changed:
            moved = Table(title=f"{dataset.name}: cases that changed vs baseline (worst first)")
            for column in ("case", "evaluator", "baseline", "current"):
                moved.add_column(column)
            for case, name, then, now in changed[:CHANGED_CASES]:
                moved.add_row(case, name, _fmt(then), _fmt(now))
            if len(changed) > CHANGED_CASES:
                moved.caption = f"… and {len(changed) - CHANGED_CASES} more in eval-report.md"
            console.print(moved)
        for note in dataset.gate.notes:
            console.print(f"[yellow]note:[/yellow] {note}")
        if dataset.blessed:
            console.print(f"[green]blessed:[/green] wrote {dataset.baseline_file}")
    console.print(family_line(result.family))
    for note in result.notes:
        console.print(f"[bold yellow]note:[/bold yellow] {note}")


# --- markdown -----------------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def quote_block(text: str) -> str:
    text = text.strip() or "(no answer)"
    if len(text) > ANSWER_CHARS:
        text = text[: ANSWER_CHARS - 1] + "…"
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _answered(case: CaseResult) -> str:
    """`yes`, `no`, or `2/3` over a case's repeats; `–` when no run produced an output."""
    if not case.outputs:
        return "–"
    answered = sum(out.answered for out in case.outputs)
    if answered in (0, len(case.outputs)):
        return "yes" if answered else "no"
    return f"{answered}/{len(case.outputs)}"


def _md_case(case: CaseResult, dataset: DatasetResult) -> list[str]:
    before = dataset.baseline.cases.get(case.name, {}) if dataset.baseline else {}
    lines = [f"#### {case.name}", "", f"**Question:** {case.inputs.question}", ""]
    if case.outputs:
        out = case.outputs[0]
        lines += [
            f"**Run** `{out.run_id[:8]}` · {out.status} ({out.stop_reason}) · {out.requests} turns · "
            f"{out.total_tokens} tokens · ${out.cost_usd:.4f} · {out.duration_seconds:.2f}s",
            "",
            "**Answer:**" if out.answered else "**Not answered:**",
            "",
            quote_block(out.answer),
            "",
        ]
        if out.unresolved:
            lines += [f"**Unresolved:** {_md_escape('; '.join(out.unresolved))}", ""]
        if out.review:
            critic = _md_escape(out.review.critic_model)  # the run's own critic, not the `critic` evaluator
            lines += [f"**Run's critic** ({critic}): {_md_escape(out.review.reason())}", ""]
        if out.citations:
            lines.append("**Citations:** " + ", ".join(f"[{i}]({c.url})" for i, c in enumerate(out.citations, 1)))
            lines.append("")
    for error in case.errors:
        lines += [f"**Error:** {_md_escape(error)}", ""]
    lines += ["| evaluator | score | baseline | reason |", "|---|---:|---:|---|"]
    for name in sorted(case.scores):
        values = case.scores[name]
        worst = min(range(len(values)), key=values.__getitem__)
        shown = f"{fmean(values):.2f}" + (f" (min {values[worst]:.2f})" if len(values) > 1 else "")
        then = _fmt(fmean(before[name]), ".2f") if before.get(name) else "–"
        lines.append(f"| {name} | {shown} | {then} | {_md_escape(case.reasons[name][worst])} |")
    return [*lines, ""]


def _md_changed(dataset: DatasetResult) -> list[str]:
    """The cases whose scores moved against the baseline, worst first: question, answer, both scores."""
    if dataset.baseline is None:
        return []
    by_name = {case.name: case for case in dataset.cases}
    moved: dict[str, float] = {}
    for name, _, then, now in _changed_cases(dataset):
        moved[name] = moved.get(name, 0.0) + (now if now is not None else 0.0) - (then if then is not None else 0.0)
    if not moved:
        return ["", "No case changed against the baseline.", ""]
    lines = ["", f"### Cases that changed against the baseline ({len(moved)}, worst first)", ""]
    for name in sorted(moved, key=lambda n: (moved[n], n))[:CHANGED_CASES]:
        case = by_name.get(name)
        if case is None:
            continue
        before = dataset.baseline.cases.get(name, {})
        scores = ", ".join(
            f"{ev} {_fmt(fmean(before[ev]) if before.get(ev) else None, '.2f')} → {_fmt(_case_mean(case, ev), '.2f')}"
            for ev in sorted(case.scores)
            if _case_mean(case, ev) != (fmean(before[ev]) if before.get(ev) else None)
        )
        answer = case.outputs[0].answer if case.outputs else ""
        lines += [
            f"- **{name}** ({scores}): {_md_escape(case.inputs.question)}",
            "",
            "  Baseline answer:",
            "",
            *("  " + line for line in quote_block(dataset.baseline.answers.get(name, "(not recorded)")).splitlines()),
            "",
            "  Current answer:",
            "",
            *("  " + line for line in quote_block(answer).splitlines()),
            "",
        ]
    return lines


def render_markdown(result: SuiteResult) -> str:
    status = "PASSED" if result.passed else "FAILED"
    lines = [
        f"# Eval report: {status}",
        "",
        f"- model: `{result.model}` · judge `{result.judge_version}`",
        "- prompts: " + (" ".join(f"`{v}`" for v in result.prompt_versions.values()) or f"`{result.prompt_version}`"),
        f"- git revision: `{result.git_revision or 'unknown'}` · repeats per case: {result.repeat}"
        f" · wall time {result.duration_seconds:.1f}s",
        "",
    ]
    if result.failures:
        lines += ["## Why it failed", "", *[f"- {reason}" for reason in result.failures], ""]
    lines += [*(f"- **note:** {note}" for note in result.notes), "", family_line(result.family), ""]
    for dataset in result.datasets:
        base = dataset.baseline
        lines += [
            f"## {dataset.name} ({len(dataset.cases)} cases): {'passed' if dataset.gate.passed else 'FAILED'}",
            "",
        ]
        lines += [f"Dataset `{dataset.path.name}` version `{dataset.version}`.", ""]
        if base:
            changed = base.dataset_version is not None and base.dataset_version != dataset.version
            lines.append(
                f"Baseline: `{dataset.baseline_file.name}` from `{base.git_revision or '?'}`,"
                f" {base.created_at:%Y-%m-%d}, prompt `{base.prompt_version}`, judge `{base.judge_version}`,"
                f" dataset `{base.dataset_version or 'not recorded'}`"
                + (" (the dataset changed since: only cases in both are compared)." if changed else ".")
            )
            lines.append("")
        lines += [
            "| evaluator | threshold | baseline | current | Δ | 90% interval | MDD | verdict |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for v in dataset.gate.verdicts:
            diff = v.test.mean_diff if v.test else None
            lines.append(
                f"| {v.name} | {_fmt(v.threshold, '.2f')} | {_fmt(v.baseline)} | {_fmt(v.current)} |"
                f" {_fmt(diff, '+.3f')} | {_interval(v)} | {_mdd(v)} |"
                f" {_verdict(v)}{' — ' + v.note if v.note else ''} |"
            )
        lines.append("")
        lines += [f"- note: {note}" for note in dataset.gate.notes]
        lines += _md_changed(dataset)
        cases = sorted(dataset.cases, key=_worst)
        names = sorted({name for case in cases for name in case.scores})
        lines += ["", "### Cases (worst first)", "", "| case | answered | " + " | ".join(names) + " |"]
        lines.append("|---|---|" + "---:|" * len(names))
        for case in cases:
            cells = [_answered(case), *(_fmt(_case_mean(case, name), ".2f") for name in names)]
            lines.append(f"| [{case.name}](#{case.name}) | " + " | ".join(cells) + " |")
        lines.append("")
        for case in cases:
            lines += _md_case(case, dataset)
    return "\n".join(lines).rstrip() + "\n"


# --- json -----------------------------------------------------------------------------------------------


def _case_json(case: CaseResult) -> dict[str, Any]:
    return {
        "name": case.name,
        "question": case.inputs.question,
        "runs": [
            {
                "run_id": out.run_id,
                "status": out.status,
                "stop_reason": out.stop_reason,
                "answered": out.answered,
                "answer": out.answer,
                "unresolved": out.unresolved,
                "review": out.review.model_dump() if out.review else None,
                "citations": [c.model_dump() for c in out.citations],
                "requests": out.requests,
                "tokens": out.total_tokens,
                "cost_usd": out.cost_usd,
                "duration_seconds": round(out.duration_seconds, 3),
            }
            for out in case.outputs
        ],
        "scores": {
            name: {"mean": fmean(values), "values": values, "reasons": case.reasons[name]}
            for name, values in sorted(case.scores.items())
        },
        "errors": case.errors,
        "not_run": case.not_run,
    }


def to_json(result: SuiteResult) -> dict[str, Any]:
    return {
        "passed": result.passed,
        "failures": result.failures,
        "notes": result.notes,
        "prompt_unevaluated": result.prompt_unevaluated,
        "unevaluated_prompts": result.unevaluated_prompts,
        "not_run": result.not_run,
        "family_size": result.family.family_size if result.family else 0,
        "cost": None
        if result.cost is None
        else {"limit": float(result.cost.limit), "spent": float(result.cost.spent), "not_run": result.cost.refused},
        "model": result.model,
        "prompt_version": result.prompt_version,
        "prompt_versions": result.prompt_versions,
        "judge_version": result.judge_version,
        "git_revision": result.git_revision,
        "repeat": result.repeat,
        "duration_seconds": round(result.duration_seconds, 2),
        "datasets": [
            {
                "name": d.name,
                "path": str(d.path),
                "version": d.version,
                "passed": d.gate.passed,
                "baseline": None
                if d.baseline is None
                else d.baseline.model_dump(mode="json", exclude={"cases"}) | {"file": str(d.baseline_file)},
                "blessed": d.blessed,
                "notes": d.gate.notes,
                "evaluators": [
                    {
                        "name": v.name,
                        "cases": v.cases,
                        "threshold": v.threshold,
                        "baseline": v.baseline,
                        "current": v.current,
                        "mean_diff": v.test.mean_diff if v.test else None,
                        "lower_bound": v.test.lower_bound if v.test else None,
                        "upper_bound": v.test.upper_bound if v.test else None,
                        "p_value": v.test.p_value if v.test else None,
                        "min_detectable_drop": v.min_detectable_drop,
                        "min_detectable_drop_unknown": mdd_unknown_reason(v.test.cases)
                        if v.test is not None and v.min_detectable_drop is None
                        else None,
                        "below_threshold": v.below_threshold,
                        "regressed": v.regressed,
                        "note": v.note,
                    }
                    for v in d.gate.verdicts
                ],
                "cases": [_case_json(case) for case in d.cases],
            }
            for d in result.datasets
        ],
    }


def write_report_files(directory: Path, stem: str, *, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    """`<stem>.md` and `<stem>.json` in `directory` (created if missing); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    md_path, json_path = directory / f"{stem}.md", directory / f"{stem}.json"
    md_path.write_text(markdown, encoding="utf-8")
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return md_path, json_path


def write_reports(result: SuiteResult, directory: Path) -> tuple[Path, Path]:
    return write_report_files(directory, "eval-report", markdown=render_markdown(result), data=to_json(result))
