"""Run traces: export a stored run, and replay its model responses through the real agent.

A trace holds the run's messages (pydantic-ai's own JSON) and the tool calls in the order they were
made. Replaying feeds the recorded model responses back through a scripted model while the real
tools, validators and runner execute; if the tool calls that actually ran differ from the recorded
ones (order, names or arguments), something in the agent changed behaviour.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime, RunView
from agent.errors import ResearchAgentError
from budgets import Budget

TRACE_FORMAT = 1


class ToolCallRecord(BaseModel):
    tool_name: str
    args: dict[str, Any]


class RunTrace(BaseModel):
    """What `research-agent runs export` writes."""

    format: int = TRACE_FORMAT
    run_id: str
    question: str
    model: str
    prompt_version: str
    search_backend: str
    status: str
    stop_reason: str | None
    budget: dict[str, Any]
    report: dict[str, Any] | None
    tool_calls: list[ToolCallRecord] = Field(description="Tools that executed, in order (from the run's steps).")
    messages: list[dict[str, Any]] = Field(description="pydantic-ai messages, as ModelMessagesTypeAdapter JSON.")

    def model_messages(self) -> list[ModelMessage]:
        return ModelMessagesTypeAdapter.validate_python(self.messages)

    def responses(self) -> list[ModelResponse]:
        return [m for m in self.model_messages() if isinstance(m, ModelResponse)]


class ReplayError(ResearchAgentError):
    """A replay diverged from its trace."""


def executed_tool_calls(view: RunView) -> list[ToolCallRecord]:
    """Tool calls that ran, in order, from a run's steps (the final answer is not a tool call)."""
    return [
        ToolCallRecord(tool_name=step.name, args=dict(step.args or {}))
        for step in view.steps
        if step.kind in ("plan", "tool") and step.name != "final_result"
    ]


async def export_run(runtime: Runtime, run_id: str) -> RunTrace:
    view = await runtime.get_run(run_id)
    run = view.run
    messages = await runtime.store.load_messages(run.id)
    return RunTrace(
        run_id=run.id,
        question=run.question,
        model=run.config.model,
        prompt_version=run.config.prompt_version,
        search_backend=run.config.search_backend,
        status=run.status,
        stop_reason=run.stop_reason,
        budget=run.config.budget.model_dump(mode="json"),
        report=run.report,
        tool_calls=executed_tool_calls(view),
        messages=ModelMessagesTypeAdapter.dump_python(messages, mode="json"),
    )


def load_trace(path: Path) -> RunTrace:
    try:
        return RunTrace.model_validate_json(path.read_text())
    except ValueError as exc:
        raise ReplayError(f"{path} is not a research-agent trace: {exc}") from exc


@dataclass
class _Replayer:
    """Hands back the recorded responses in order; running out means the agent asked for more."""

    responses: list[ModelResponse]
    served: int = 0

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if self.served >= len(self.responses):
            raise ReplayError(f"the agent made more model requests than the trace recorded ({len(self.responses)})")
        response = self.responses[self.served]
        self.served += 1
        return ModelResponse(parts=[_fresh(part) for part in response.parts], model_name=response.model_name)


def _fresh(part: Any) -> Any:
    return (
        ToolCallPart(part.tool_name, part.args, tool_call_id=part.tool_call_id)
        if isinstance(part, ToolCallPart)
        else part
    )


@dataclass(frozen=True, kw_only=True)
class ReplayResult:
    trace: RunTrace
    view: RunView
    tool_calls: list[ToolCallRecord]

    def differences(self) -> list[str]:
        expected = [(c.tool_name, json.dumps(c.args, sort_keys=True)) for c in self.trace.tool_calls]
        actual = [(c.tool_name, json.dumps(c.args, sort_keys=True)) for c in self.tool_calls]
        problems = [
            f"call {i + 1}: expected {e[0]}({e[1]}), got {a[0]}({a[1]})"
            for i, (e, a) in enumerate(zip(expected, actual, strict=False))
            if e != a
        ]
        if len(expected) != len(actual):
            problems.append(f"expected {len(expected)} tool calls, got {len(actual)}")
        if self.view.run.status != self.trace.status:
            problems.append(f"expected status {self.trace.status}, got {self.view.run.status}")
        return problems


async def replay(runtime: Runtime, trace: RunTrace) -> ReplayResult:
    """Re-run the trace's question with its recorded model responses through the real agent and tools."""
    replayer = _Replayer(trace.responses())
    model = FunctionModel(replayer, model_name=f"replay:{trace.model}")
    budget = Budget.model_validate({**trace.budget, "max_cost_usd": None})
    # The run's tools as recorded: same search backend (the offline corpus for offline traces).
    # The critic is off: a trace holds the research agent's responses, and a revision would ask for more.
    settings = runtime.settings.model_copy(update={"search_backend": trace.search_backend, "critic_model": "off"})
    result = await Runtime(pool=runtime.pool, settings=settings).research(trace.question, model=model, budget=budget)
    view = await runtime.get_run(result.run_id)
    return ReplayResult(trace=trace, view=view, tool_calls=executed_tool_calls(view))
