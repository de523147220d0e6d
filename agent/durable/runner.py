"""The durable runner: steps a claimed run through pydantic-ai and commits every turn.

The loop is pydantic-ai's own (`Agent.iter`); this module only watches the node boundaries. When a
model response arrives, and when a batch of tool results is ready, the new messages, their steps
and the run's usage are committed in one transaction before the next node runs. A run resumed from
the store therefore continues exactly where the last commit left it: pydantic-ai is given the
committed history and the carried usage, and the tool-effect ledger answers any tool call whose
result was recorded but not yet committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import httpx
import httpx2
import logfire
from opentelemetry import trace as otel_trace
from pydantic_ai import Agent, CancellationToken, DeferredToolRequests, DeferredToolResults
from pydantic_ai._agent_graph import CallToolsNode, ModelRequestNode
from pydantic_ai.exceptions import (
    FallbackExceptionGroup,
    ModelAPIError,
    RunCancelled,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
    UserError,
)
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models import Model
from pydantic_ai.usage import RunUsage

from agent.config import RunStatus
from agent.deps import ResearchDeps
from agent.durable.approvals import ApprovalRequest, ApprovalStore
from agent.durable.controls import DailySpend, KillSwitch, RunSpend
from agent.durable.ledger import ToolLedger
from agent.durable.steps import build_steps, index_tool_calls
from agent.durable.store import RunRecord, RunStore, StepRecord, TurnCommit
from agent.errors import ConfigurationError, LeaseLostError
from agent.events import ProgressCallback, ProgressEvent, ProgressKind, ignore_progress
from agent.guardrails.policy_guard import PolicyGuard
from agent.guardrails.redaction import redact_report, redact_text
from agent.models import resolve_model, retrying_http_client
from agent.offline.critic import OfflineCriticModel
from agent.report import PartialFindings, ResearchReport
from agent.research_agent import ResearchOutput, research_agent
from agent.review.critic import Critique, Review, RevisionOutcome, critic_prompt, revision_request
from agent.review.grading import Critic, finished_report, grade, revision_shortfall
from agent.settings import Settings, is_offline_model
from budgets import BudgetExceeded, BudgetGuard, Pricer, ToolCallGuard, pricer_for
from tools import (
    CorpusSearchBackend,
    CorpusStore,
    FetchedPage,
    SearchBackend,
    build_search_backend,
    ensure_python_docs,
)
from tools._fetch_tool import CORPUS_SCHEME


@dataclass(frozen=True, kw_only=True)
class StopDecision:
    status: RunStatus
    stop_reason: str
    error: str | None = None


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
        # Model instances by config label, for in-process runs with a Model object (tests, notebooks).
        self.models = dict(models or {})
        self.search_backend = search_backend
        self.progress = progress
        self.agent: Agent[ResearchDeps, ResearchOutput] = research_agent()
        self._provider_http: httpx2.AsyncClient | None = None
        self._http: httpx.AsyncClient | None = None
        self._controls: dict[str, _RunControl] = {}  # runs executing now, by id (kill switch, daily cap)
        # Per running run: its elapsed run time (carried over resumes), read by the heartbeat.
        self._clocks: dict[str, Callable[[], float]] = {}

    async def execute(self, run: RunRecord) -> RunRecord:
        """Run `run` (already claimed by this worker) until it stops; returns the stored final state."""
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
            self._controls[run.id] = _RunControl()
            task = asyncio.create_task(self._run_to_stop(run))
            beat = asyncio.create_task(self._heartbeat(run.id, task, heartbeat_lost))
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
            finally:
                beat.cancel()
                with suppress(asyncio.CancelledError):
                    await beat
                await self._release_controls(run.id)
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
            return final

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._provider_http is not None:
            await self._provider_http.aclose()
            self._provider_http = None

    async def _heartbeat(self, run_id: str, task: asyncio.Task[RunRecord], lost: asyncio.Event) -> None:
        interval = self.settings.lease_seconds / 3
        while not task.done():
            await asyncio.sleep(interval)
            clock = self._clocks.get(run_id)
            try:
                renewed = await self.store.renew_lease(
                    run_id,
                    worker_id=self.worker_id,
                    lease_seconds=self.settings.lease_seconds,
                    elapsed_seconds=clock() if clock else None,
                )
            except Exception as exc:  # a database blip: keep trying until the lease runs out
                logfire.warn("lease renewal failed: {error}", error=str(exc), run_id=run_id)
                continue
            if not renewed:
                lost.set()
                task.cancel()
                return

    def _emit(self, run_id: str, kind: ProgressKind, message: str, usage: RunUsage | None = None) -> None:
        usage = usage or RunUsage()
        self.progress(
            ProgressEvent(
                run_id=run_id,
                kind=kind,
                message=message,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.cost or Decimal(0),
            )
        )

    async def _run_to_stop(self, run: RunRecord) -> RunRecord:
        history = await self.store.load_messages(run.id)
        if history:
            self._emit(run.id, "resume", f"resuming from {len(history)} committed messages", run.usage)
        corpus = CorpusStore(self.store.pool)
        try:
            model = self._model_for(run.config.model, fallback_models=run.config.fallback_models)
            search = self.search_backend or self._search_backend(run, corpus)
            pricer = _pricer(model, run)
            critic = self._critic_for(run)  # before any spend: a critic that cannot run fails the run now
            spend = self._run_spend(run, model, pricer)
        except ConfigurationError as exc:
            decision = StopDecision(status="failed", stop_reason="error", error=str(exc))
            return await self._finish(run, decision, deps=None, history=history)
        deps = ResearchDeps(
            run_id=run.id,
            question=run.question,
            config=run.config,
            store=self.store,
            search=search,
            # Offline runs read the corpus; online runs only for explicit corpus:// URLs.
            corpus=corpus if run.config.search_backend == "corpus" else _CorpusUrlsOnly(corpus),
            sources=await self.store.load_sources(run.id),
            plan=run.plan,
            progress=self.progress,
        )
        session = _Session(
            store=self.store,
            worker_id=self.worker_id,
            run=run,
            deps=deps,
            ledger=ToolLedger(recorded=await self.store.load_tool_effects(run.id)),
            guard=BudgetGuard(
                budget=run.config.budget,
                pricer=pricer,
                spent_usd=run.cost_usd,
                elapsed_before=run.elapsed_seconds,
                hooks=spend.hooks(),
            ),
            committed=len(history),
            next_step=await self.store.next_step_seq(run.id),
            usage=run.usage,
            messages=list(history),
            review=Review.model_validate(run.review) if run.review else None,
        )
        approvals = ApprovalStore(self.store.pool)
        deferred = await approvals.decided_results(run.id, history)
        refused = await approvals.refused_calls(run.id, history)
        report: ResearchReport | None = None
        self._clocks[run.id] = lambda: session.guard.elapsed
        try:
            outcome = await self._research(session, model=model, critic=critic, deferred=deferred, refused=refused)
            if isinstance(outcome, DeferredToolRequests):
                return await self._park(session, outcome, approvals)
            report = outcome
            decision = StopDecision(status="completed", stop_reason="completed")
        except LeaseLostError:
            raise
        except Exception as exc:
            decision = self._requested_stop(run.id, exc) or _decide_stop(exc, run)
            report = session.best_report()  # a stop during the optional review keeps the verified report
            try:  # keep what the interrupted turn completed (e.g. a response that crossed a cap)
                await session.commit_new()
            except LeaseLostError:
                raise
            except Exception:
                logfire.exception("could not commit the last partial turn", run_id=run.id)
        finally:
            self._clocks.pop(run.id, None)
        return await self._finish(
            run,
            decision,
            deps=deps,
            history=session.messages,
            report=report,
            elapsed=session.guard.elapsed,
            review=session.review,
        )

    async def _drive(
        self,
        session: _Session,
        *,
        model: Model,
        prompt: str | None = None,
        deferred: DeferredToolResults | None = None,
        refused: frozenset[str] = frozenset(),
    ) -> ResearchOutput:
        """pydantic-ai's loop with a commit at every node boundary; raises whatever stops the run early.

        Continues the session's history, with `prompt` as a new user message when given (the question
        of a fresh run, a revision request). Returns the report, or the calls awaiting a human.
        `deferred` carries the human decisions on calls the history left open; `refused` the calls a
        human already turned down in this run.
        """
        run = session.run
        remaining_wall = run.config.budget.max_wall_seconds - session.guard.elapsed
        if remaining_wall <= 0:
            raise TimeoutError
        history = list(session.messages)
        async with (
            asyncio.timeout(remaining_wall),
            self.agent.iter(
                prompt,
                message_history=history or None,
                deferred_tool_results=deferred,
                deps=session.deps,
                model=model,
                usage=session.usage,
                usage_limits=run.config.budget.usage_limits(),
                cancellation_token=self._cancellation_token(run.id),
                capabilities=[
                    # outermost: a call the policy refuses runs nothing inside it
                    PolicyGuard(policy=run.config.tool_policy, refused=refused),
                    ToolCallGuard(per_tool=run.config.budget.per_tool),
                    session.ledger,
                    session.guard,
                ],
            ) as agent_run,
        ):
            async for node in agent_run:
                session.observe(agent_run.all_messages(), agent_run.usage, pending=node)
                await session.commit_new()
                if isinstance(node, ModelRequestNode):
                    session.request_started = time.perf_counter()
                elif isinstance(node, CallToolsNode):
                    self._emit(run.id, "model", "model responded", agent_run.usage)
            session.observe(agent_run.all_messages(), agent_run.usage, pending=None)
            await session.commit_new()
            assert agent_run.result is not None
            return agent_run.result.output

    async def _research(
        self,
        session: _Session,
        *,
        model: Model,
        critic: Critic | None,
        deferred: DeferredToolResults | None,
        refused: frozenset[str],
    ) -> ResearchReport | DeferredToolRequests:
        """Research, then the evaluator-optimizer loop: grade, revise at most once, grade again, keep the better.

        Every phase resumes from what is committed: a report the history already ends with is not asked
        for again, a stored critique is not paid for again, and a revision under way continues.
        """
        run = session.run
        review = session.review
        if review is not None and review.kept is not None:  # decided before a crash; only finishing was left
            kept = session.best_report()
            if kept is None:
                raise UnexpectedModelBehavior(f"run {run.id}: its review is decided but the kept report is missing")
            return kept
        sources = session.deps.sources
        if review is None or review.revision != "revised":
            report = finished_report(session.messages, sources)
            if report is None:
                outcome = await self._drive(
                    session,
                    model=model,
                    prompt=None if session.messages else run.question,
                    deferred=deferred,
                    refused=refused,
                )
                if isinstance(outcome, DeferredToolRequests):
                    return outcome
                report = outcome
            if critic is None:
                return report
            review = session.review = review or Review(
                threshold=run.config.critic_threshold, critic_model=critic.label, critic_prompt=critic_prompt().version
            )
            review.first_report = report
            if review.first is None:
                review.first = await self._grade(session, critic, report, label="critique")
            if review.first is None:
                return await self._settle(session, revision="skipped", kept="first")
            if review.first.score >= review.threshold:
                return await self._settle(session, revision="not_needed", kept="first")
            shortfall = revision_shortfall(
                critic,
                guard=session.guard,
                usage=session.usage,
                messages=session.messages,
                question=run.question,
                report=report,
                critique=review.first,
                sources=sources,
            )
            if shortfall is not None:
                review.skip_reason = f"revision skipped, budget: {shortfall}"
                return await self._settle(session, revision="skipped", kept="first")
            review.revision = "revised"  # committed with the revision request, by the first commit of the drive
            session.review_changed = True
            self._emit(run.id, "model", f"revising: {review.first.summary()}", session.usage)
            prompt: str | None = revision_request(review.first)
            deferred = None
        else:
            prompt = None
        assert review is not None and critic is not None
        revised = finished_report(session.messages, sources) if prompt is None else None
        if revised is None:
            try:
                outcome = await self._drive(session, model=model, prompt=prompt, deferred=deferred, refused=refused)
            except (BudgetExceeded, UsageLimitExceeded, TimeoutError, ModelAPIError, FallbackExceptionGroup) as stop:
                if isinstance(stop, BudgetExceeded) and stop.reason == "kill_switch":
                    raise
                await session.commit_new()  # keep what the revision did; the first report stands
                review.skip_reason = f"revision stopped: {_describe(stop) if str(stop) else 'wall-time cap reached'}"
                return await self._settle(session, revision="stopped", kept="first")
            if isinstance(outcome, DeferredToolRequests):
                return outcome
            revised = outcome
        review.revised_report = revised
        if review.second is None:
            review.second = await self._grade(session, critic, revised, label="critique of the revision")
        first_score = review.first.score if review.first else 0.0
        better = review.second is None or review.second.score >= first_score
        return await self._settle(session, revision="revised", kept="revision" if better else "first")

    async def _settle(
        self, session: _Session, *, revision: RevisionOutcome, kept: Literal["first", "revision"]
    ) -> ResearchReport:
        """Record the review's outcome (committed with the run's final state) and return the report kept."""
        review = session.review
        assert review is not None
        review.revision, review.kept = revision, kept
        session.review_changed = True
        if review.skip_reason:
            session.extra_steps.append(
                StepRecord(seq=0, kind="event", name=f"revision_{revision}", summary=review.skip_reason, ok=False)
            )
        await session.commit_new()
        report = session.best_report()
        assert report is not None
        return report

    async def _grade(self, session: _Session, critic: Critic, report: ResearchReport, *, label: str) -> Critique | None:
        """One critic call, committed as a step with the review; None when it was skipped (recorded why)."""
        run = session.run
        review = session.review
        assert review is not None
        grading = await grade(
            critic,
            question=run.question,
            report=report,
            sources=session.deps.sources,
            budget=run.config.budget,
            guard=session.guard,
            usage=session.usage,
            cancellation_token=self._cancellation_token(run.id),
        )
        critique = grading.critique
        if critique is None:
            review.skip_reason = grading.skip_reason
        summary = critique.summary() if critique else grading.skip_reason or "skipped"
        logfire.info("{label}: {summary}", label=label, summary=summary, run_id=run.id, critic=critic.label)
        self._emit(run.id, "model", f"{label}: {summary}", session.usage)
        session.extra_steps.append(
            StepRecord(
                seq=0,
                kind="model",
                name="critic",
                args=critique.model_dump(mode="json") if critique else None,
                summary=f"{label} ({critic.label}): {summary}",
                ok=critique is not None,
                input_tokens=grading.input_tokens,
                output_tokens=grading.output_tokens,
                cost_usd=grading.cost_usd,
                latency_ms=grading.latency_ms,
            )
        )
        session.review_changed = True
        await session.commit_new()
        return critique

    def _critic_for(self, run: RunRecord) -> Critic | None:
        """The run's critic, or None when it has none; a critic that cannot work is a configuration error."""
        label = run.config.critic_model
        if label is None:
            return None
        model = OfflineCriticModel() if is_offline_model(label) else self._model_for(label)
        pricer = _pricer(model, run, role="critic model", alternative="set RESEARCH_AGENT_CRITIC_MODEL=off")
        return Critic(model=model, pricer=pricer, label=label)

    async def _park(self, session: _Session, requests: DeferredToolRequests, approvals: ApprovalStore) -> RunRecord:
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
            worker_id=self.worker_id,
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
        self._emit(run.id, "status", f"{final.status}: {summary}", final.usage)
        return final

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
        partial = None
        redactions: Counter[str] = Counter()
        if report is None:
            notes = [redact_text(text) for text in _last_text(history)]  # the model's text: redacted too
            redactions.update(sum((found for _, found in notes), Counter[str]()))
            partial = PartialFindings(
                plan=(deps.plan if deps else run.plan) or [],
                sources=sorted(deps.sources) if deps else [],
                notes=[text for text, _ in notes],
            ).model_dump(mode="json")
        control_steps = await self._control_steps(run, decision)
        if report is not None:  # after citation verification: a redacted quote no longer matches its page
            report, redactions = redact_report(report)
        if redactions:
            seq = control_steps[-1].seq + 1 if control_steps else await self.store.next_step_seq(run.id)
            total = sum(redactions.values())
            control_steps.append(
                StepRecord(
                    seq=seq,
                    kind="event",
                    name="output_redaction",
                    args=dict(redactions),
                    summary=f"{total} redaction(s): " + ", ".join(f"{k} {n}" for k, n in sorted(redactions.items())),
                )
            )
            logfire.info("report redacted: {redactions}", redactions=dict(redactions), run_id=run.id)
        # `_finish` runs inside the run span (`execute`): the count joins its attributes.
        otel_trace.get_current_span().set_attribute("redactions", sum(redactions.values()))
        final = await self.store.finish_run(
            run.id,
            worker_id=self.worker_id,
            status=decision.status,
            stop_reason=decision.stop_reason,
            report=report.model_dump(mode="json") if report else None,
            partial=partial,
            steps=control_steps,
            error=decision.error,
            elapsed_seconds=elapsed,
            review=_redacted_review(review),
        )
        logfire.info(
            "run stopped: {status} ({stop_reason})",
            run_id=run.id,
            status=decision.status,
            stop_reason=decision.stop_reason,
            error=decision.error,
        )
        self._emit(run.id, "status", f"{decision.status} ({decision.stop_reason})", final.usage)
        return final

    # --- cross-run controls: kill switch and daily spend cap (agent/controls.py) -----------------
    def kill_all(self, message: str) -> list[str]:
        """Stop every run executing here as `killed` / `kill_switch`, cancelling in-flight model and tool calls.

        pydantic-ai's own cancellation tears the calls down; the runner then commits what completed and
        finishes the run (releasing its lease). Idempotent; returns the runs newly asked to stop.
        """
        stopped: list[str] = []
        for run_id, control in list(self._controls.items()):
            if control.stop is None:
                control.stop = StopDecision(status="killed", stop_reason="kill_switch", error=message)
                control.token.cancel()
                stopped.append(run_id)
        return stopped

    def _cancellation_token(self, run_id: str) -> CancellationToken | None:
        control = self._controls.get(run_id)
        return control.token if control else None

    def _requested_stop(self, run_id: str, error: Exception) -> StopDecision | None:
        control = self._controls.get(run_id)
        return control.stop if control and isinstance(error, RunCancelled) else None

    def _run_spend(self, run: RunRecord, model: Model, pricer: Pricer | None) -> RunSpend:
        cap = self.settings.daily_cap_usd
        if cap is not None and pricer is None:
            label = f"{model.system}:{model.model_name}"
            raise ConfigurationError(
                f"no price is known for model {label!r}, so the ${cap} daily spend cap cannot be enforced; "
                "set RESEARCH_AGENT_MODEL_PRICES for it or unset RESEARCH_AGENT_DAILY_CAP_USD"
            )
        spend = RunSpend(
            kill_switch=KillSwitch(self.store.pool, env_override=self.settings.disabled),
            daily=DailySpend(self.store.pool, cap_usd=cap),
            run_id=run.id,
        )
        control = self._controls.get(run.id)
        if control is not None:
            control.spend = spend
        return spend

    async def _release_controls(self, run_id: str) -> None:
        control = self._controls.pop(run_id, None)
        if control is not None and control.spend is not None:
            try:  # a request cancelled mid-flight never settled: free its reservation
                await control.spend.release()
            except Exception:
                logfire.exception("could not release the daily spend reservation", run_id=run_id)

    async def _control_steps(self, run: RunRecord, decision: StopDecision) -> list[StepRecord]:
        """A stop by the kill switch or the daily cap, as an event step (and an event in the trace)."""
        if decision.stop_reason not in ("kill_switch", "daily_cap"):
            return []
        logfire.warn(
            "run stopped by {control}: {message}",
            control=decision.stop_reason,
            message=decision.error,
            run_id=run.id,
        )
        seq = await self.store.next_step_seq(run.id)
        return [StepRecord(seq=seq, kind="event", name=decision.stop_reason, summary=decision.error or "", ok=False)]

    def _model_for(self, label: str, *, fallback_models: Sequence[str] = ()) -> Model:
        """A `Model` passed in for this label (tests, notebooks), else the label resolved with this worker's keys."""
        if label in self.models:
            return self.models[label]
        if self._provider_http is None:
            self._provider_http = retrying_http_client(self.settings)
        return resolve_model(
            label,
            settings=self.settings,
            fallback_models=list(fallback_models),
            http_client=self._provider_http,
        )

    def _search_backend(self, run: RunRecord, corpus: CorpusStore) -> SearchBackend:
        """The run's frozen backend choice; keys come from this worker's settings (never frozen)."""
        settings = self.settings
        if run.config.search_backend == "corpus":
            # The Python reference is indexed the first time an offline search needs it.
            return CorpusSearchBackend(corpus, prepare=lambda: ensure_python_docs(corpus))
        if self._http is None:  # one client per runner: creating one loads the CA bundle (~20 ms)
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
        return build_search_backend(
            backend=run.config.search_backend,
            tavily_api_key=settings.tavily_api_key.get_secret_value() if settings.tavily_api_key else None,
            brave_api_key=settings.brave_api_key.get_secret_value() if settings.brave_api_key else None,
            searxng_url=run.config.searxng_url,
            client=self._http,
        )


@dataclass(frozen=True)
class _CorpusUrlsOnly:
    """The corpus as an online run sees it: its own `corpus://` URLs only, never mirrored web pages."""

    corpus: CorpusStore

    async def get_document(self, url: str) -> FetchedPage | None:
        if not url.lower().startswith(f"{CORPUS_SCHEME}://"):
            return None
        return await self.corpus.get_document(url)


@dataclass
class _RunControl:
    """What the controls can do to one executing run: cancel it with a decided stop, free its reservation."""

    token: CancellationToken = field(default_factory=CancellationToken)
    stop: StopDecision | None = None
    spend: RunSpend | None = None


@dataclass
class _Session:
    """One execution of a run: what is committed so far and what pydantic-ai has produced since."""

    store: RunStore
    worker_id: str
    run: RunRecord
    deps: ResearchDeps
    ledger: ToolLedger
    guard: BudgetGuard
    committed: int
    next_step: int
    usage: RunUsage
    messages: list[ModelMessage]
    review: Review | None = None
    review_changed: bool = False
    extra_steps: list[StepRecord] = field(default_factory=list)
    """Steps to commit that are not derived from messages (critic calls, review decisions)."""
    request_started: float | None = None

    def best_report(self) -> ResearchReport | None:
        """The report the review keeps so far: the revision once kept, else the first verified report."""
        review = self.review
        if review is None:
            return None
        if review.kept == "revision" and review.revised_report is not None:
            return review.revised_report
        return review.first_report

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
        with logfire.span("commit turn", run_id=self.run.id, messages=len(new), steps=len(steps)):
            await self.store.commit_turn(
                self.run.id,
                worker_id=self.worker_id,
                turn=TurnCommit(
                    messages=new,
                    first_seq=self.committed,
                    steps=steps,
                    usage=self.usage,
                    cost_usd=self.guard.spent_usd,
                    cost_known=self.guard.pricer is not None,
                    elapsed_seconds=self.guard.elapsed,
                    plan=self.deps.plan,
                    review=_redacted_review(self.review) if self.review_changed else None,
                ),
            )
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


def _usage_limit_reason(error: UsageLimitExceeded) -> str:
    text = str(error)
    if "request_limit" in text:
        return "turns"
    if "tool_calls_limit" in text:
        return "tool_calls"
    if "cost" in text:
        return "cost"
    return "tokens"


def _pricer(
    model: Model,
    run: RunRecord,
    *,
    role: str = "model",
    alternative: str = "run without a cost cap (--max-cost none)",
) -> Pricer | None:
    """How to price `model` in this run; a cost cap with no known price is a configuration error, not a silent $0."""
    pricer = pricer_for(model, overrides=run.config.model_prices)
    if pricer is None and run.config.budget.max_cost_usd is not None:
        label = f"{model.system}:{model.model_name}"
        raise ConfigurationError(
            f"no price is known for {role} {label!r}, so the ${run.config.budget.max_cost_usd} cost cap cannot "
            f'be enforced; set RESEARCH_AGENT_MODEL_PRICES=\'{{"{label}": {{"input_per_mtok": ..., '
            f'"output_per_mtok": ...}}}}\' or {alternative}'
        )
    return pricer


def _decide_stop(error: Exception, run: RunRecord) -> StopDecision:
    """Every way a run can stop early, as a status and a reason."""
    if isinstance(error, BudgetExceeded):
        status: RunStatus = "killed" if error.reason == "kill_switch" else "budget_exceeded"
        return StopDecision(status=status, stop_reason=error.reason, error=str(error))
    if isinstance(error, UsageLimitExceeded):
        return StopDecision(status="budget_exceeded", stop_reason=_usage_limit_reason(error), error=str(error))
    if isinstance(error, TimeoutError):
        cap = run.config.budget.max_wall_seconds
        return StopDecision(
            status="budget_exceeded", stop_reason="wall_time", error=f"wall-time cap of {cap:g}s reached"
        )
    if isinstance(error, ModelAPIError | FallbackExceptionGroup):
        return StopDecision(status="failed", stop_reason="provider_error", error=_describe(error))
    if isinstance(error, UnexpectedModelBehavior | UserError | ConfigurationError):
        return StopDecision(status="failed", stop_reason="error", error=_describe(error))
    logfire.exception("run crashed", run_id=run.id, _exc_info=error)  # a bug: still a state, not a crash
    return StopDecision(status="failed", stop_reason="internal_error", error=_describe(error))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _redacted_review(review: Review | None) -> dict[str, object] | None:
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
