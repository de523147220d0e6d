"""One execution of a run: pydantic-ai's loop with a commit at every node boundary.

The loop is pydantic-ai's own (`Agent.iter`); the session only watches the node boundaries. When a
model response arrives, and when a batch of tool results is ready, the new messages, their steps and
the run's usage are committed in one transaction before the next node runs. A run resumed from the
store therefore continues exactly where the last commit left it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import logfire
from pydantic_ai import Agent, CancellationToken, DeferredToolResults
from pydantic_ai._agent_graph import CallToolsNode, ModelRequestNode
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model
from pydantic_ai.usage import RunUsage

from agent.deps import ResearchDeps
from agent.durable.ledger import ToolLedger
from agent.durable.steps import build_steps, index_tool_calls
from agent.durable.store import RunRecord, RunStore, StepRecord, TurnCommit
from agent.events import ProgressCallback, ProgressEvent, ProgressKind
from agent.guardrails import PolicyGuard, redact_report
from agent.metrics import Committed, record_turn  # metrics hook
from agent.report import ResearchReport
from agent.research_agent import ResearchOutput
from agent.review import Review
from budgets import BudgetGuard, ToolCallGuard


def emit(progress: ProgressCallback, run_id: str, kind: ProgressKind, message: str, usage: RunUsage | None) -> None:
    """A progress event carrying the run's usage so far."""
    usage = usage or RunUsage()
    progress(
        ProgressEvent(
            run_id=run_id,
            kind=kind,
            message=message,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=usage.cost or Decimal(0),
        )
    )


@dataclass(kw_only=True)
class RunSession:
    """What is committed so far and what pydantic-ai has produced since, plus how to drive the next stretch."""

    store: RunStore
    worker_id: str
    run: RunRecord
    deps: ResearchDeps
    ledger: ToolLedger
    guard: BudgetGuard
    agent: Agent[ResearchDeps, ResearchOutput]
    model: Model
    token: CancellationToken | None
    refused: frozenset[str] = frozenset()
    """Calls a human already turned down in this run: asked again, they are denied without asking."""
    committed: int
    next_step: int
    usage: RunUsage
    messages: list[ModelMessage]
    review: Review | None = None
    review_changed: bool = False
    extra_steps: list[StepRecord] = field(default_factory=list)
    """Steps to commit that are not derived from messages (critic calls, review decisions)."""
    request_started: float | None = None
    metered: Committed | None = None  # metrics hook
    """The run's token and cost totals at the last commit, for the metrics (`agent.metrics`)."""

    def emit(self, kind: ProgressKind, message: str) -> None:
        emit(self.deps.progress, self.run.id, kind, message, self.usage)

    def best_report(self) -> ResearchReport | None:
        """The report the review keeps so far: the revision once kept, else the first verified report."""
        review = self.review
        if review is None:
            return None
        if review.kept == "revision" and review.revised_report is not None:
            return review.revised_report
        return review.first_report

    async def drive(self, *, prompt: str | None, deferred: DeferredToolResults | None = None) -> ResearchOutput:
        """pydantic-ai's loop with a commit at every node boundary; raises whatever stops the run early.

        Continues the session's history, with `prompt` as a new user message when given (the question
        of a fresh run, a revision request). Returns the report, or the calls awaiting a human.
        `deferred` carries the human decisions on calls the history left open.
        """
        run = self.run
        remaining_wall = run.config.budget.max_wall_seconds - self.guard.elapsed
        if remaining_wall <= 0:
            raise TimeoutError
        history = list(self.messages)
        async with (
            asyncio.timeout(remaining_wall),
            self.agent.iter(
                prompt,
                message_history=history or None,
                deferred_tool_results=deferred,
                deps=self.deps,
                model=self.model,
                usage=self.usage,
                usage_limits=run.config.budget.usage_limits(),
                cancellation_token=self.token,
                capabilities=[
                    # outermost: a call the policy refuses runs nothing inside it
                    PolicyGuard(policy=run.config.tool_policy, refused=self.refused),
                    ToolCallGuard(per_tool=run.config.budget.per_tool),
                    self.ledger,
                    self.guard,
                ],
            ) as agent_run,
        ):
            async for node in agent_run:
                self.observe(agent_run.all_messages(), agent_run.usage, pending=node)
                await self.commit_new()
                self.guard.raise_if_crossed()  # a provider that ignored max_tokens: counted, committed, stopped
                if isinstance(node, ModelRequestNode):
                    self.request_started = time.perf_counter()
                elif isinstance(node, CallToolsNode):
                    self.emit("model", "model responded")
            self.observe(agent_run.all_messages(), agent_run.usage, pending=None)
            await self.commit_new()
            self.guard.raise_if_crossed()
            assert agent_run.result is not None
            return agent_run.result.output

    def observe(self, messages: Sequence[ModelMessage], usage: RunUsage, *, pending: object) -> None:
        """Record the latest history; a request node's request joins the history only once it is sent."""
        self.messages = list(messages)
        if isinstance(pending, ModelRequestNode) and (not self.messages or self.messages[-1] is not pending.request):
            self.messages.append(pending.request)
        self.usage = usage

    async def commit_new(self) -> None:
        """Commit the messages not yet committed, with their steps and the run's usage, in one transaction."""
        new = self.messages[self.committed :]
        if not new and not self.guard.events and not self.extra_steps and not self.review_changed:
            return
        model_latency = None
        if self.request_started is not None and any(isinstance(m, ModelResponse) for m in new):
            model_latency = (time.perf_counter() - self.request_started) * 1000
            self.request_started = None
        steps = build_steps(
            new,
            first_seq=self.next_step,
            calls_by_id=index_tool_calls(self.messages),
            tool_latency_ms=self.ledger.latencies_ms,
            model_latency_ms=model_latency,
        )
        steps += self._budget_steps(first_seq=self.next_step + len(steps))
        extra, self.extra_steps = self.extra_steps, []
        steps += [dataclasses.replace(step, seq=self.next_step + len(steps) + i) for i, step in enumerate(extra)]
        turn = TurnCommit(
            messages=new,
            first_seq=self.committed,
            steps=steps,
            usage=self.usage,
            cost_usd=self.guard.spent_usd,
            cost_known=self.guard.pricer is not None,
            elapsed_seconds=self.guard.elapsed,
            plan=self.deps.plan,
            review=redacted_review(self.review) if self.review_changed else None,
        )
        with logfire.span("commit turn", run_id=self.run.id, messages=len(new), steps=len(steps)):
            await self.store.commit_turn(self.run.id, worker_id=self.worker_id, turn=turn)
        self.metered = record_turn(self.run, turn, since=self.metered)  # metrics hook: only what was committed
        self.review_changed = False
        self.committed = len(self.messages)
        self.next_step += len(steps)

    def _budget_steps(self, *, first_seq: int) -> list[StepRecord]:
        """Budget decisions since the last commit, as steps (and as events in the trace)."""
        events, self.guard.events = self.guard.events, []
        steps: list[StepRecord] = []
        for event in events:
            logfire.warn(
                "budget {kind}: {message}",
                kind=event.kind,
                message=event.message,
                run_id=self.run.id,
                cap=event.cap,
                used=event.used,
                limit=event.limit,
            )
            steps.append(
                StepRecord(
                    seq=first_seq + len(steps),
                    kind="event",
                    name=f"budget_{event.kind}",
                    args={"cap": event.cap, "used": event.used, "limit": event.limit},
                    summary=event.message,
                    ok=event.kind != "warning",
                )
            )
        return steps


def redacted_review(review: Review | None) -> dict[str, object] | None:
    """The review as stored: its reports are redacted like the final report."""
    if review is None:
        return None
    data = review.model_copy(
        update={
            "first_report": redact_report(review.first_report)[0] if review.first_report else None,
            "revised_report": redact_report(review.revised_report)[0] if review.revised_report else None,
        }
    )
    return data.model_dump(mode="json")
