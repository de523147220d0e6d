"""The eval harness and release gate: pydantic-evals datasets and evaluators, plus thresholds, baselines
and a paired bootstrap that fail the build on a regression (docs/decisions/0009-evals-gate.md).

python -m evals                     # offline model, the offline datasets; exit 1 on a regression
python -m evals --bless             # accept the current scores as the new baselines
python -m evals judges              # the critic vs the labelled judgements; exit 1 below target
python -m evals power --cases 100 --repeats 3   # the gate's false-alarm rate and power, simulated
python -m evals --model M --against origin/main  # A/B in one job: base revision vs working tree
"""

from agent.errors import ResearchAgentError
from evals._ab import ABDataset, ABOptions, ABResult, run_ab
from evals._ab_report import ab_to_json, render_ab_markdown, write_ab_reports
from evals._compare import Comparison, EvaluatorComparison, combine, compare, min_detectable_drop
from evals._cost import CostCap, NotRun, worst_case_per_run
from evals._datasets import ResearchDataset, load_dataset, write_schema
from evals._evaluators import (
    CUSTOM_EVALUATORS,
    JUDGE_MODEL_SETTINGS,
    JUDGE_VERSION,
    OFFLINE_CRITIC_VERSION,
    AnswerOutcome,
    CitationGrounding,
    KeyFactRecall,
    LLMCritic,
    OfflineCritic,
    Trajectory,
    WithinBudget,
    critic_for,
    critic_judge,
)
from evals._gate import (
    Baseline,
    GateConfig,
    PairedTest,
    baseline_path,
    load_baseline,
    paired_bootstrap,
)
from evals._judges import (
    CRITIC_THRESHOLD,
    JudgedItem,
    JudgementItem,
    JudgementSet,
    JudgesResult,
    JudgeTargets,
    judge_targets,
    judges_main,
    load_judgements,
    run_judges,
)
from evals._report import print_summary, render_markdown, write_reports
from evals._sides import SideCase, SideInfo
from evals._suite import CaseResult, DatasetResult, SuiteOptions, SuiteResult, UsageError, run_suite
from evals._task import EvalEnvironment, open_environment
from evals._types import CaseMetadata, EvalInputs, EvalOutput, FixtureDocument, SourceText, StepView
from evals._verdict import DatasetScores, EvaluatorVerdict, GateResult, judge_scores, judge_suite

__all__ = [
    "CRITIC_THRESHOLD",
    "CUSTOM_EVALUATORS",
    "JUDGE_MODEL_SETTINGS",
    "JUDGE_VERSION",
    "OFFLINE_CRITIC_VERSION",
    "ABDataset",
    "ABOptions",
    "ABResult",
    "AnswerOutcome",
    "Baseline",
    "CaseMetadata",
    "CaseResult",
    "CitationGrounding",
    "Comparison",
    "CostCap",
    "DatasetResult",
    "DatasetScores",
    "EvalEnvironment",
    "EvalInputs",
    "EvalOutput",
    "EvaluatorComparison",
    "EvaluatorVerdict",
    "FixtureDocument",
    "GateConfig",
    "GateResult",
    "JudgeTargets",
    "JudgedItem",
    "JudgementItem",
    "JudgementSet",
    "JudgesResult",
    "KeyFactRecall",
    "LLMCritic",
    "NotRun",
    "OfflineCritic",
    "PairedTest",
    "ResearchAgentError",
    "ResearchDataset",
    "SideCase",
    "SideInfo",
    "SourceText",
    "StepView",
    "SuiteOptions",
    "SuiteResult",
    "Trajectory",
    "UsageError",
    "WithinBudget",
    "ab_to_json",
    "baseline_path",
    "combine",
    "compare",
    "critic_for",
    "critic_judge",
    "judge_scores",
    "judge_suite",
    "judge_targets",
    "judges_main",
    "load_baseline",
    "load_dataset",
    "load_judgements",
    "min_detectable_drop",
    "open_environment",
    "paired_bootstrap",
    "print_summary",
    "render_ab_markdown",
    "render_markdown",
    "run_ab",
    "run_judges",
    "run_suite",
    "worst_case_per_run",
    "write_ab_reports",
    "write_reports",
    "write_schema",
]
