"""`python -m evals`: run the eval suite and gate it. Exit 0 passed, 1 regression or threshold, 2 usage error.

`python -m evals judges [--judgements PATH] [--judge offline|MODEL] [--json]`: the critic's agreement with
the labelled judgements (`evals/_judges.py`), same exit codes.

`python -m evals power --cases N [--repeats R] [--drop D] [--json]`: the gate's false-alarm rate and power,
simulated (`evals/_power.py`).

`python -m evals --model MODEL --against REF` (or `--against-model OTHER`): A/B in one job (`evals/_ab.py`);
`--max-cost USD [--yes]` bounds the spend of either kind of run (`evals/_cost.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from agent.errors import ResearchAgentError
from budgets import Budget, BudgetExceeded, SpendGate
from evals._ab import PROJECT_ROOT, ABOptions, ABResult, resolve_revision, run_ab
from evals._ab_report import print_ab_summary, write_ab_reports
from evals._cost import CostCap, worst_case_per_run
from evals._evaluators import LLMCritic, critic_for
from evals._judges import judges_main
from evals._power import power_main
from evals._report import print_summary, write_reports
from evals._suite import SuiteOptions, SuiteResult, UsageError, check_models, load_datasets, run_suite
from tools import FetchError, SearchBackendError

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evals",
        description="Run the research agent's eval datasets and fail on a regression against the baselines.",
        epilog="`python -m evals judges --help`: the critic's agreement with the labelled judgements.",
    )
    parser.add_argument("--model", default="offline", help="`offline` (default) or a pydantic-ai model name")
    parser.add_argument(
        "--dataset",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="a dataset YAML (repeatable); default: the offline datasets (+ web_research for real models)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (scores are averaged per case)")
    parser.add_argument("--bless", action="store_true", help="accept the current scores as the new baselines")
    parser.add_argument("--report-dir", type=Path, default=Path("."), help="where eval-report.md/.json go")
    parser.add_argument("--max-concurrency", type=int, default=4, help="cases run at the same time")
    parser.add_argument("--judge-model", default=None, help="the LLM critic's model (real models only)")
    parser.add_argument("--baseline-dir", type=Path, default=None, help="default: datasets/baselines")
    ab = parser.add_argument_group("A/B in one job (no stored baseline)")
    ab.add_argument("--against", metavar="REF", help="also run git revision REF (e.g. origin/main) and test the change")
    ab.add_argument("--against-model", metavar="MODEL", help="also run this code with MODEL and test the difference")
    ab.add_argument(
        "--require-live",
        action="store_true",
        help="fail when a prompt changed but the model does not read prompts (the offline model)",
    )
    cost = parser.add_argument_group("cost")
    cost.add_argument("--max-cost", metavar="USD", help="dollars the whole eval may spend (both sides of an A/B)")
    cost.add_argument("--yes", action="store_true", help="start even when the worst-case estimate exceeds --max-cost")
    return parser


def _dollars(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text.strip().removeprefix("$"))
    except InvalidOperation:
        raise UsageError(f"--max-cost {text!r} is not an amount of dollars (e.g. 5 or 2.50)") from None
    if not value.is_finite() or value < 0:
        raise UsageError(f"--max-cost {text!r} must be a non-negative amount of dollars")
    return value


def _judge_model(model: str, judge_model: str | None) -> str | None:
    critic = critic_for(model, judge_model=judge_model)
    return critic.model if isinstance(critic, LLMCritic) else None


def _check_inputs(args: argparse.Namespace) -> None:
    """UsageError for a model that does not resolve or a revision that does not exist, before the estimate
    is printed or anything starts (a typo would otherwise run the whole eval and fail every case)."""
    # Both sides have the same judge (`--judge-model`, or the default) unless a side's model is offline.
    judge = next((j for m in (args.model, args.against_model) if m and (j := _judge_model(m, args.judge_model))), None)
    judge_source = "--judge-model" if args.judge_model else "the default judge (--judge-model)"
    check_models({"--model": args.model, "--against-model": args.against_model, judge_source: judge})
    if args.against:
        resolve_revision(PROJECT_ROOT, args.against)


def _estimate(args: argparse.Namespace, console: Console) -> CostPlan:
    """Print the worst case before anything runs; refuse (UsageError) when it passes --max-cost without --yes."""
    limit = _dollars(args.max_cost)
    models = [args.model] + ([args.against_model] if args.against_model else [])
    sides = 2 if (args.against or args.against_model) else 1
    loaded = load_datasets(SuiteOptions(model=args.model, datasets=args.dataset))
    runs = sum(len(dataset.cases) for _, dataset in loaded) * args.repeat * sides
    research = [worst_case_per_run(m, budget=Budget(), judge_model=None) for m in models]
    judges = [_judge_model(m, args.judge_model) for m in models]
    judged = [worst_case_per_run(m, budget=Budget(), judge_model=j) for m, j in zip(models, judges, strict=True)]
    if any(c is None for c in (*research, *judged)):
        console.print(f"worst case: unknown (no price known for {', '.join(models)} or its judge) · {runs} runs")
        if limit is not None:
            raise UsageError("--max-cost needs a known price for the model and its judge (settings: model_prices)")
        return CostPlan(limit=None, per_run=Decimal(0), judge_per_run=Decimal(0))
    per_run = max(c for c in judged if c is not None)
    judge_part = max((j or Decimal(0)) - (r or Decimal(0)) for j, r in zip(judged, research, strict=True))
    worst = per_run * runs
    console.print(
        f"worst case: ${worst:.2f} ({runs} runs × ${per_run:.4f}: each run's budget cap plus its critic call)"
        + (f" · cap ${limit}" if limit is not None else "")
    )
    if limit is not None and worst > limit and not args.yes:
        raise UsageError(
            f"the worst case (${worst:.2f}) exceeds --max-cost ${limit}: add --yes to start anyway (no run starts"
            " unless its worst case still fits, and the gate fails with a partial report), or run fewer cases"
        )
    return CostPlan(limit=limit, per_run=per_run, judge_per_run=judge_part)


@dataclass(frozen=True, kw_only=True)
class CostPlan:
    limit: Decimal | None
    per_run: Decimal
    judge_per_run: Decimal

    def cap(self) -> CostCap | None:
        if self.limit is None:
            return None
        return CostCap(limit=self.limit, per_run=self.per_run, judge_per_run=self.judge_per_run)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["judges"]:
        return judges_main(arguments[1:])
    if arguments[:1] == ["power"]:
        return power_main(arguments[1:])
    args = _parser().parse_args(arguments)
    console = Console()
    try:
        if args.against and args.against_model:
            raise UsageError("use one of --against REF and --against-model MODEL, not both")
        if (args.against or args.against_model) and args.bless:
            raise UsageError("--bless records a baseline; an A/B run (--against...) has none to record")
        _check_inputs(args)
        plan = _estimate(args, console)
        if args.against or args.against_model:
            ab = asyncio.run(
                run_ab(
                    ABOptions(
                        model=args.model,
                        against=args.against,
                        against_model=args.against_model,
                        datasets=args.dataset,
                        repeat=args.repeat,
                        max_concurrency=args.max_concurrency,
                        judge_model=args.judge_model,
                        max_cost=plan.limit,
                        per_run=plan.per_run,
                        judge_per_run=plan.judge_per_run,
                        require_live=args.require_live,
                    )
                )
            )
            return _finish_ab(ab, args.report_dir, console)
        options = SuiteOptions(
            model=args.model,
            datasets=args.dataset,
            repeat=args.repeat,
            bless=args.bless,
            max_concurrency=args.max_concurrency,
            judge_model=args.judge_model,
            baseline_dir=args.baseline_dir,
            progress=sys.stderr.isatty(),
            max_cost=plan.limit,
            require_live=args.require_live,
        )
        result = asyncio.run(run_suite(options, cap=plan.cap()))
    except UsageError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/yellow] the eval stopped; no report was written and nothing was blessed")
        return EXIT_INTERRUPTED
    except (BudgetExceeded, SpendGate, FetchError, SearchBackendError):
        raise  # `tools`/`budgets` errors share the root but are not usage errors: a traceback, as before
    except ResearchAgentError as exc:  # configuration, database
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        return EXIT_USAGE
    return _finish(result, args.report_dir, console)


def _finish(result: SuiteResult, report_dir: Path, console: Console) -> int:
    print_summary(result, console)
    markdown, data = write_reports(result, report_dir)
    console.print(f"reports: {markdown} · {data} · {result.duration_seconds:.1f}s")
    if result.blessed:
        # Blessing accepts regressions against the old baseline, but not scores below the thresholds.
        below = [v for d in result.datasets for v in d.gate.verdicts if v.below_threshold]
        if below:
            console.print("[red]blessed, but below threshold:[/red] " + ", ".join(v.name for v in below))
            return EXIT_FAILED
        return EXIT_PASSED
    return _verdict(result.passed, result.failures, console)


def _finish_ab(result: ABResult, report_dir: Path, console: Console) -> int:
    print_ab_summary(result, console)
    markdown, data = write_ab_reports(result, report_dir)
    console.print(f"reports: {markdown} · {data} · {result.duration_seconds:.1f}s")
    return _verdict(result.passed, result.failures, console)


def _verdict(passed: bool, failures: list[str], console: Console) -> int:
    if passed:
        console.print("[green]eval gate passed[/green]")
        return EXIT_PASSED
    console.print("[bold red]eval gate FAILED[/bold red]")
    for reason in failures:
        console.print(f"  - {reason}")
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
