"""research-agent: a durable, budgeted, observable research agent on pydantic-ai.

from agent import research, stats, ResearchReport
result = await research("What changed in HTTP/3?")
day = await stats("24h", by="model")   # across runs: completion rate, latency percentiles, cost, ...

Each public name is imported from its module on first use (PEP 562 `__getattr__`), so `import agent`
(and the `research-agent` CLI, which lives in `agent.cli`) costs nothing until a name is used: the
runner, pydantic-ai, the provider SDKs and logfire load only for what needs them. Type checkers and IDEs
read the same names from the imports under `TYPE_CHECKING`.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING

from tools.lazy import lazy_exports

if TYPE_CHECKING:
    from agent.api import ResearchResult, Runtime, get_run, open_runtime, research, submit
    from agent.config import RunConfig, RunStatus
    from agent.durable.approvals import Approval, ApprovalStore
    from agent.durable.run_view import RunView
    from agent.durable.store import RunRecord, RunStats, StepRecord
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
    from agent.stats import stats
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
    "RunStats",
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
    "stats",
    "submit",
]

_MODULES: dict[str, tuple[str, ...]] = {
    "agent.api": ("ResearchResult", "Runtime", "get_run", "open_runtime", "research", "submit"),
    "agent.config": ("RunConfig", "RunStatus"),
    "agent.durable.approvals": ("Approval", "ApprovalStore"),
    "agent.durable.run_view": ("RunView",),
    "agent.durable.store": ("RunRecord", "RunStats", "StepRecord"),
    "agent.durable.worker": ("Worker",),
    "agent.errors": (
        "ApprovalError",
        "ConfigurationError",
        "DatabaseError",
        "InvalidQuestionError",
        "LeaseLostError",
        "QuestionRefusedError",
        "ResearchAgentError",
        "RunNotFoundError",
        "RunRefusedError",
    ),
    "agent.events": ("ProgressEvent",),
    "agent.guardrails.screening": ("QuestionScreen", "screen_question"),
    "agent.replay": ("RunTrace", "export_run", "load_trace", "replay"),
    "agent.report": ("Citation", "PartialFindings", "ResearchReport"),
    "agent.settings": ("Settings",),
    "agent.stats": ("stats",),
    "budgets": ("Budget",),
}
"""Where each public name lives (keep in step with the imports above); only its module is imported."""
_EXPORTS, _getattr, __dir__ = lazy_exports(_MODULES, globals())

if not TYPE_CHECKING:  # type checkers see the imports above, and an unknown name stays an error for them
    __getattr__ = _getattr


class _Package(ModuleType):
    """`agent` itself, keeping a public name its submodule of the same name would hide.

    Importing a submodule binds it on its package: after `import agent.replay`, `agent.replay` would be the
    module, not the function `agent.replay.replay` that `from agent import replay` has always given. When
    that happens for an exported name, the package binds the exported object instead (as the eager
    imports this module used to make did).
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, ModuleType) and value.__name__ == _EXPORTS.get(name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
