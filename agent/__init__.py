"""research-agent: a durable, budgeted, observable research agent on pydantic-ai.

from agent import research, ResearchReport
result = await research("What changed in HTTP/3?")
"""

from agent.api import ResearchResult, Runtime, RunView, get_run, open_runtime, research, submit
from agent.config import RunConfig, RunStatus
from agent.durable.approvals import Approval, ApprovalStore
from agent.durable.store import RunRecord, StepRecord
from agent.durable.worker import Worker
from agent.errors import (
    ApprovalError,
    ConfigurationError,
    DatabaseError,
    InvalidQuestionError,
    LeaseLostError,
    QuestionRefusedError,
    ResearchAgentError,
    RunNotFoundError,
    RunRefusedError,
)
from agent.events import ProgressEvent
from agent.guardrails.screening import QuestionScreen, screen_question
from agent.replay import RunTrace, export_run, load_trace, replay
from agent.report import Citation, PartialFindings, ResearchReport
from agent.settings import Settings
from budgets import Budget

__all__ = [
    "Approval",
    "ApprovalError",
    "ApprovalStore",
    "Budget",
    "Citation",
    "ConfigurationError",
    "DatabaseError",
    "InvalidQuestionError",
    "LeaseLostError",
    "PartialFindings",
    "ProgressEvent",
    "QuestionRefusedError",
    "QuestionScreen",
    "ResearchAgentError",
    "ResearchReport",
    "ResearchResult",
    "RunConfig",
    "RunNotFoundError",
    "RunRecord",
    "RunRefusedError",
    "RunStatus",
    "RunTrace",
    "RunView",
    "Runtime",
    "Settings",
    "StepRecord",
    "Worker",
    "export_run",
    "get_run",
    "load_trace",
    "open_runtime",
    "replay",
    "research",
    "screen_question",
    "submit",
]
