"""The eval harness and release gate: pydantic-evals datasets and evaluators, plus thresholds, baselines
and a paired bootstrap that fail the build on a regression (docs/decisions/0009-evals-gate.md).

python -m evals                     # offline model, the offline datasets; exit 1 on a regression
python -m evals --bless             # accept the current scores as the new baselines
python -m evals judges              # the critic vs the labelled judgements; exit 1 below target
"""

from agent.errors import ResearchAgentError
from evals._compare import Comparison, EvaluatorComparison, compare
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
from evals._suite import CaseResult, DatasetResult, SuiteOptions, SuiteResult, UsageError, run_suite
from evals._task import EvalEnvironment, open_environment
from evals._types import CaseMetadata, EvalInputs, EvalOutput, FixtureDocument, SourceText, StepView
from evals._verdict import EvaluatorVerdict, GateResult, judge_scores

__all__ = [
    "CRITIC_THRESHOLD",
    "CUSTOM_EVALUATORS",
    "JUDGE_MODEL_SETTINGS",
    "JUDGE_VERSION",
    "OFFLINE_CRITIC_VERSION",
    "AnswerOutcome",
    "Baseline",
    "CaseMetadata",
    "CaseResult",
    "CitationGrounding",
    "Comparison",
    "DatasetResult",
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
    "OfflineCritic",
    "PairedTest",
    "ResearchAgentError",
    "ResearchDataset",
    "SourceText",
    "StepView",
    "SuiteOptions",
    "SuiteResult",
    "Trajectory",
    "UsageError",
    "WithinBudget",
    "baseline_path",
    "compare",
    "critic_for",
    "critic_judge",
    "judge_scores",
    "judge_targets",
    "judges_main",
    "load_baseline",
    "load_dataset",
    "load_judgements",
    "open_environment",
    "paired_bootstrap",
    "print_summary",
    "render_markdown",
    "run_judges",
    "run_suite",
    "write_reports",
    "write_schema",
]
