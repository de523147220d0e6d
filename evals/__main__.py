"""`python -m evals`: run the eval suite and gate it. Exit 0 passed, 1 regression or threshold, 2 usage error.

`python -m evals judges [--judgements PATH] [--judge offline|MODEL] [--json]`: the critic's agreement with
the labelled judgements (`evals/_judges.py`), same exit codes.

`python -m evals power --cases N [--repeats R] [--drop D] [--json]`: the gate's false-alarm rate and power,
simulated (`evals/_power.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from agent.errors import ResearchAgentError
from budgets import BudgetExceeded, SpendGate
from evals._judges import judges_main
from evals._power import power_main
from evals._report import print_summary, write_reports
from evals._suite import SuiteOptions, UsageError, run_suite
from tools import FetchError, SearchBackendError

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["judges"]:
        return judges_main(arguments[1:])
    if arguments[:1] == ["power"]:
        return power_main(arguments[1:])
    args = _parser().parse_args(arguments)
    console = Console()
    options = SuiteOptions(
        model=args.model,
        datasets=args.dataset,
        repeat=args.repeat,
        bless=args.bless,
        max_concurrency=args.max_concurrency,
        judge_model=args.judge_model,
        baseline_dir=args.baseline_dir,
        progress=sys.stderr.isatty(),
    )
    try:
        result = asyncio.run(run_suite(options))
    except UsageError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return EXIT_USAGE
    except (BudgetExceeded, SpendGate, FetchError, SearchBackendError):
        raise  # `tools`/`budgets` errors share the root but are not usage errors: a traceback, as before
    except ResearchAgentError as exc:  # configuration, database
        console.print(f"[red]error:[/red] {exc}")
        return EXIT_USAGE
    print_summary(result, console)
    markdown, data = write_reports(result, args.report_dir)
    console.print(f"reports: {markdown} · {data} · {result.duration_seconds:.1f}s")
    if result.blessed:
        # Blessing accepts regressions against the old baseline, but not scores below the thresholds.
        below = [v for d in result.datasets for v in d.gate.verdicts if v.below_threshold]
        if below:
            console.print("[red]blessed, but below threshold:[/red] " + ", ".join(v.name for v in below))
            return EXIT_FAILED
        return EXIT_PASSED
    if result.passed:
        console.print("[green]eval gate passed[/green]")
        return EXIT_PASSED
    console.print("[bold red]eval gate FAILED[/bold red]")
    for reason in result.failures:
        console.print(f"  - {reason}")
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
