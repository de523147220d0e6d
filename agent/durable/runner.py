"""The durable runner: takes a claimed run to a terminal state, committing every turn under the worker's lease.

The runner builds what a run needs (`factory`), opens a `RunSession` over its committed history, lets
the critic loop (`agent.review.ReviewLoop`) research and review the report, and finishes the run with a
status decided from the exception that stopped it (`stops`). The heartbeat renews the lease; a runner
that loses it stops touching the run. The kill switch, the daily cap and interrupts (Ctrl-C) reach active
runs through `ActiveRuns`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress

import logfire
from opentelemetry import trace as otel_trace
from pydantic_ai import Agent, DeferredToolRequests
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models import Model

from agent.deps import ResearchDeps
from agent.durable.active import ActiveRuns, run_spend
from agent.durable.approvals import ApprovalRequest, ApprovalStore
from agent.durable.factory import RunComponents, RunFactory
from agent.durable.heartbeat import keep_lease
from agent.durable.ledger import ToolLedger
from agent.durable.outage import database_unavailable
from agent.durable.session import RunSession, emit, redacted_review
from agent.durable.stops import COMPLETED, StopDecision, decide_stop
from agent.durable.store import RunRecord, RunStore, StepRecord
from agent.errors import ConfigurationError, LeaseLostError
from agent.events import ProgressCallback, ignore_progress
from agent.guardrails import redact_report, redact_text
from agent.metrics import record_run_end  # metrics hook
from agent.report import PartialFindings, ResearchReport
from agent.research_agent import ResearchOutput, research_agent
from agent.review import Review, ReviewLoop
from agent.settings import Settings
from budgets import BudgetGuard, SpendHooks
from tools import CorpusStore, SearchBackend


class DurableRunner:
    """Runs claimed runs to a terminal state, committing every turn under the worker's lease."""

    def __init__(
        self,
        *,
        store: RunStore,
        settings: Settings,
        worker_id: str,
        models: dict[str, Model] | None = None,
        search_backend: SearchBackend | None = None,
        progress: ProgressCallback = ignore_progress,
    ) -> None:
        self.store = store
        self.settings = settings
        self.worker_id = worker_id
        self.progress = progress
        self.factory = RunFactory(settings=settings, models=models, search_backend=search_backend, pool=store.pool)
        self.agent: Agent[ResearchDeps, ResearchOutput] = research_agent()
        self.active = ActiveRuns()
        self._sessions: dict[str, RunSession] = {}  # read by the heartbeat: elapsed run time, carried over resumes

    async def execute(self, run: RunRecord, *, interrupted: str | None = None) -> RunRecord:
        """Run `run` (already claimed by this worker) until it stops; returns the stored final state.

        `interrupted`: the run was interrupted before it started (while it was being claimed); it ends
        `cancelled` / `interrupted` with that message, through the same path as an interrupt mid-run.
        """
        with (
            logfire.set_baggage(run_id=run.id),
            logfire.span(
                "research run {run_id}",
                run_id=run.id,
                question=run.question,
                attempt=run.attempts,
                model=run.config.model,
                prompt_version=run.config.prompt_version,
            ) as span,
        ):
            heartbeat_lost = asyncio.Event()
            self.active.start(run.id)
            if interrupted is not None:
                self.active.interrupt(interrupted, run_id=run.id)
            task = asyncio.create_task(self._run_to_stop(run))
            beat = asyncio.create_task(
                keep_lease(
                    self.store,
                    run_id=run.id,
                    worker_id=self.worker_id,
                    lease_seconds=self.settings.lease_seconds,
                    task=task,
                    lost=heartbeat_lost,
                    elapsed=lambda: session.guard.elapsed if (session := self._sessions.get(run.id)) else None,
                )
            )
            try:
                final = await task
            except asyncio.CancelledError:
                if heartbeat_lost.is_set():
                    logfire.warn("lease lost; run abandoned to its new owner", run_id=run.id)
                    return await self.store.get_run(run.id)
                raise
            except LeaseLostError:
                logfire.warn("lease lost at commit; run abandoned to its new owner", run_id=run.id)
                return await self.store.get_run(run.id)
            except Exception as exc:
                if database_unavailable(exc):
                    logfire.warn(
                        "database unreachable mid-run: {error}; the run is retried from its last commit",
                        error=str(exc),
                        run_id=run.id,
                    )
                raise
            finally:
                beat.cancel()
                with suppress(asyncio.CancelledError):
                    await beat
                await self.active.end(run.id)
            _record_outcome(span, run, final)
            record_run_end(final)  # metrics hook: the run as `finish_run` committed it
            return final

    def kill_all(self, message: str) -> list[str]:
        """Stop every run executing here as `killed` / `kill_switch`, cancelling in-flight model and tool calls.

        pydantic-ai's own cancellation tears the calls down; the runner then commits what completed and
        finishes the run (releasing its lease). Idempotent; returns the runs newly asked to stop.
        """
        return self.active.kill_all(message)

    def interrupt(self, message: str, *, run_id: str | None = None) -> list[str]:
        """Stop the run `run_id` (every run executing here when None) as `cancelled` / `interrupted`.

        Like `kill_all`, pydantic-ai's cancellation tears in-flight model and tool calls down; the runner
        commits what completed and finishes the run, releasing its lease, so `runs resume` can queue it
        again. Call it on the event loop's thread (e.g. from `loop.add_signal_handler`); idempotent;
        returns the runs newly asked to stop.
        """
        return self.active.interrupt(message, run_id=run_id)

    async def aclose(self) -> None:
        await self.factory.aclose()

    async def _run_to_stop(self, run: RunRecord) -> RunRecord:
        history = await self.store.load_messages(run.id)
        if history:
            emit(self.progress, run.id, "resume", f"resuming from {len(history)} committed messages", run.usage)
        try:
            components = self.factory.build(run, CorpusStore(self.store.pool), progress=self.progress)
            spend = run_spend(
                self.store.pool,
                run_id=run.id,
                model=components.model,
                pricer=components.pricer,
                daily_cap_usd=self.settings.daily_cap_usd,
                disabled=self.settings.disabled,
            )
        except ConfigurationError as exc:
            decision = StopDecision(status="failed", stop_reason="error", error=str(exc))
            return await self._finish(run, decision, deps=None, history=history)
        self.active.attach_spend(run.id, spend)
        approvals = ApprovalStore(self.store.pool)
        session = await self._open_session(run, history, components, spend.hooks(), approvals)
        self._sessions[run.id] = session
        report: ResearchReport | None = None
        try:
            outcome = await ReviewLoop(session, critic=components.critic).run(
                deferred=await approvals.decided_results(run.id, history)
            )
            if isinstance(outcome, DeferredToolRequests):
                return await _park(session, outcome, approvals, progress=self.progress)
            report, decision = outcome, COMPLETED
        except LeaseLostError:
            raise
        except Exception as exc:
            if database_unavailable(exc):  # end nothing: the run goes on from its last commit once it is back
                raise
            # A provider that ignored max_tokens may trip pydantic-ai's own token backstop first: say what happened.
            cause = session.guard.crossed or exc
            decision = self.active.requested_stop(run.id, exc) or decide_stop(
                cause, run_id=run.id, budget=run.config.budget, usage=session.usage
            )
            report = session.best_report()  # a stop during the optional review keeps the verified report
            await _commit_what_completed(session)
        finally:
            self._sessions.pop(run.id, None)
        return await self._finish(
            run,
            decision,
            deps=session.deps,
            history=session.messages,
            report=report,
            elapsed=session.guard.elapsed,
            review=session.review,
        )

    async def _open_session(
        self,
        run: RunRecord,
        history: list[ModelMessage],
        components: RunComponents,
        hooks: SpendHooks,
        approvals: ApprovalStore,
    ) -> RunSession:
        """The run's committed state (history, usage, sources, ledger, review) ready to drive on."""
        deps = ResearchDeps(
            run_id=run.id,
            question=run.question,
            config=run.config,
            store=self.store.leased(self.worker_id, run_id=run.id),  # every tool write is fenced by the lease
            search=components.search,
            corpus=components.corpus,
            sources=await self.store.load_sources(run.id),
            plan=run.plan,
            progress=self.progress,
        )
        guard = BudgetGuard(
            budget=run.config.budget,
            pricer=components.pricer,
            spent_usd=run.cost_usd,
            elapsed_before=run.elapsed_seconds,
            hooks=hooks,
        )
        return RunSession(
            store=self.store,
            worker_id=self.worker_id,
            run=run,
            deps=deps,
            ledger=ToolLedger(recorded=await self.store.load_tool_effects(run.id)),
            guard=guard,
            agent=self.agent,
            model=components.model,
            token=self.active.token(run.id),
            refused=await approvals.refused_calls(run.id, history),
            committed=len(history),
            next_step=await self.store.next_step_seq(run.id),
            usage=run.usage,
            messages=list(history),
            review=Review.model_validate(run.review) if run.review else None,
        )

    async def _finish(
        self,
        run: RunRecord,
        decision: StopDecision,
        *,
        deps: ResearchDeps | None,
        history: Sequence[ModelMessage],
        report: ResearchReport | None = None,
        elapsed: float | None = None,
        review: Review | None = None,
    ) -> RunRecord:
        """Store the terminal state: the redacted report, or the partial findings, plus control and redaction events."""
        partial = None
        redactions: Counter[str] = Counter()
        if report is None:
            partial, redactions = _partial_findings(run, deps, history)
        else:  # after citation verification: a redacted quote no longer matches its page
            report, redactions = redact_report(report)
        steps = _control_steps(run, decision) + _redaction_steps(run, redactions)
        if steps:
            first = await self.store.next_step_seq(run.id)
            steps = [dataclasses.replace(step, seq=first + i) for i, step in enumerate(steps)]
        # `_finish` runs inside the run span (`execute`): the count joins its attributes.
        otel_trace.get_current_span().set_attribute("redactions", sum(redactions.values()))
        final = await self.store.finish_run(
            run.id,
            worker_id=self.worker_id,
            status=decision.status,
            stop_reason=decision.stop_reason,
            report=report.model_dump(mode="json") if report else None,
            partial=partial,
            steps=steps,
            error=decision.error,
            elapsed_seconds=elapsed,
            review=redacted_review(review),
        )
        logfire.info(
            "run stopped: {status} ({stop_reason})",
            run_id=run.id,
            status=decision.status,
            stop_reason=decision.stop_reason,
            error=decision.error,
        )
        emit(self.progress, run.id, "status", f"{decision.status} ({decision.stop_reason})", final.usage)
        return final


async def _park(
    session: RunSession, requests: DeferredToolRequests, approvals: ApprovalStore, *, progress: ProgressCallback
) -> RunRecord:
    """Pause the run for a human: one approval request per deferred call, status `awaiting_approval`."""
    run = session.run
    if requests.calls:  # external tools: this agent defines none, so a model cannot produce one
        raise UserError(f"unexpected external tool calls: {[c.tool_name for c in requests.calls]}")
    parked = [
        ApprovalRequest(
            tool_call_id=call.tool_call_id,
            tool=call.tool_name,
            args=requests.metadata.get(call.tool_call_id, {}).get("args", {}),
            reason=str(requests.metadata.get(call.tool_call_id, {}).get("reason", "the tool policy requires it")),
        )
        for call in requests.approvals
    ]
    summary = "; ".join(f"{r.tool}({_short_args(r.args)}): {r.reason}" for r in parked)
    final = await approvals.park(
        run.id,
        worker_id=session.worker_id,
        requests=parked,
        timeout_seconds=run.config.approval_timeout_seconds,
        steps=[
            StepRecord(
                seq=session.next_step,
                kind="event",
                name="awaiting_approval",
                args=[r.tool_call_id for r in parked],
                summary=f"waiting for a human to approve {len(parked)} call(s): {summary}",
                ok=False,
            )
        ],
        elapsed_seconds=session.guard.elapsed,
    )
    logfire.info("run awaiting approval: {calls}", calls=summary, run_id=run.id)
    emit(progress, run.id, "status", f"{final.status}: {summary}", final.usage)
    return final


async def _commit_what_completed(session: RunSession) -> None:
    """Keep what the interrupted turn completed (e.g. a response that crossed a cap)."""
    try:
        await session.commit_new()
    except LeaseLostError:
        raise
    except Exception:
        logfire.exception("could not commit the last partial turn", run_id=session.run.id)


def _partial_findings(
    run: RunRecord, deps: ResearchDeps | None, history: Sequence[ModelMessage]
) -> tuple[dict[str, object], Counter[str]]:
    """What a run that stopped without a report gathered: its plan, sources and the model's last notes (redacted)."""
    notes = [redact_text(text) for text in _last_text(history)]  # the model's text: redacted too
    redactions = sum((found for _, found in notes), Counter[str]())
    partial = PartialFindings(
        plan=(deps.plan if deps else run.plan) or [],
        sources=sorted(deps.sources) if deps else [],
        notes=[text for text, _ in notes],
    )
    return partial.model_dump(mode="json"), redactions


def _control_steps(run: RunRecord, decision: StopDecision) -> list[StepRecord]:
    """A stop by the kill switch, the daily cap or an interrupt, as an event step (and an event in the trace)."""
    if decision.stop_reason not in ("kill_switch", "daily_cap", "interrupted"):
        return []
    logfire.warn(
        "run stopped by {control}: {message}", control=decision.stop_reason, message=decision.error, run_id=run.id
    )
    return [StepRecord(seq=0, kind="event", name=decision.stop_reason, summary=decision.error or "", ok=False)]


def _redaction_steps(run: RunRecord, redactions: Counter[str]) -> list[StepRecord]:
    if not redactions:
        return []
    logfire.info("report redacted: {redactions}", redactions=dict(redactions), run_id=run.id)
    total = sum(redactions.values())
    summary = f"{total} redaction(s): " + ", ".join(f"{k} {n}" for k, n in sorted(redactions.items()))
    return [StepRecord(seq=0, kind="event", name="output_redaction", args=dict(redactions), summary=summary)]


def _record_outcome(span: logfire.LogfireSpan, run: RunRecord, final: RunRecord) -> None:
    """The run's outcome and caps as attributes of its span."""
    span.set_attribute("status", final.status)
    span.set_attribute("stop_reason", final.stop_reason or "")
    span.set_attribute("cost_usd", float(final.cost_usd))
    span.set_attribute("requests", final.usage.requests)
    span.set_attribute("elapsed_seconds", final.elapsed_seconds)
    for cap, value in run.config.budget.model_dump(mode="json").items():
        if value is not None:
            span.set_attribute(f"budget.{cap}", json.dumps(value) if isinstance(value, dict) else value)
    span.set_attribute("input_tokens", final.usage.input_tokens)
    span.set_attribute("output_tokens", final.usage.output_tokens)


def _short_args(args: object, limit: int = 120) -> str:
    text = json.dumps(args, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_text(history: Sequence[ModelMessage]) -> list[str]:
    for message in reversed(history):
        if isinstance(message, ModelResponse):
            texts = [p.content for p in message.parts if isinstance(p, TextPart) and p.content.strip()]
            if texts:
                return texts
    return []
