"""The public Python API: `research`, `submit`, `get_run`, and `Runtime` for long-lived services."""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import asyncpg
import logfire
from pydantic_ai.models import Model
from pydantic_ai.usage import RunUsage

from agent.config import RunConfig, RunStatus
from agent.durable.approvals import Approval, ApprovalStore
from agent.durable.controls import SharedControlWatcher, ensure_accepting_runs
from agent.durable.database import open_database
from agent.durable.inline import INTERRUPTED, InlineRuns
from agent.durable.run_view import RunView as RunView  # its home; `agent.api.RunView` stays importable
from agent.durable.run_view import read_run
from agent.durable.runner import DurableRunner
from agent.durable.store import RunRecord, RunStats, RunStore, StatsBy, StepRecord, fleet_stats
from agent.errors import QuestionRefusedError, RunNotFoundError
from agent.events import ProgressCallback, StartupCallback, ignore_progress, ignore_startup
from agent.guardrails.screening import MAX_QUESTION_CHARS as _MAX_QUESTION_CHARS
from agent.guardrails.screening import QuestionScreen, screen_question
from agent.models import ModelSpec, check_run_models, model_label
from agent.money import repr_with_money
from agent.prompts import research_prompt
from agent.report import PartialFindings, ResearchReport
from agent.settings import Settings
from agent.telemetry import configure_telemetry
from budgets import Budget
from tools import SearchBackend

MAX_QUESTION_CHARS = _MAX_QUESTION_CHARS  # kept here for callers; the limit lives in agent.guardrails.screening


@dataclass(frozen=True, kw_only=True, repr=False)
class ResearchResult:
    """What `research` returns: the run's final state."""

    __repr__ = repr_with_money

    run_id: str
    status: RunStatus
    stop_reason: str | None
    report: ResearchReport | None
    partial: PartialFindings | None
    usage: RunUsage
    cost_usd: Decimal
    error: str | None

    @classmethod
    def from_record(cls, record: RunRecord) -> ResearchResult:
        return cls(
            run_id=record.id,
            status=record.status,
            stop_reason=record.stop_reason,
            report=ResearchReport.model_validate(record.report) if record.report else None,
            partial=PartialFindings.model_validate(record.partial) if record.partial else None,
            usage=record.usage,
            cost_usd=record.cost_usd,
            error=record.error,
        )


def validate_question(question: str) -> str:
    """Refuse questions that cannot be researched, with a message that says why (see `agent.guardrails.screening`)."""
    return screen_question(question, refuse_injection=False).text


def _screen(question: str, *, refuse_injection: bool) -> QuestionScreen:
    """`screen_question`, with a refusal also visible in the trace (no run exists to record it on)."""
    try:
        return screen_question(question, refuse_injection=refuse_injection)
    except QuestionRefusedError as exc:
        logfire.warn("question refused: {reason}", reason=str(exc))
        raise


def _screen_events(screen: QuestionScreen) -> list[StepRecord]:
    """The `input_screen` (injection markers) and `input_redaction` (secrets taken out) steps of a new run."""
    events: list[StepRecord] = []
    if screen.findings:
        summary = f"injection markers: {', '.join(screen.patterns)}"
        events.append(
            StepRecord(seq=0, kind="event", name="input_screen", summary=summary, args=screen.as_json(), ok=False)
        )
    if screen.redactions:
        events.append(
            StepRecord(
                seq=len(events),
                kind="event",
                name="input_redaction",
                summary=screen.redaction_summary(),
                args=dict(screen.redactions),
            )
        )
    return events


def default_decider() -> str:
    """Who approved: `user@host` of the deciding process, recorded in the audit."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def new_worker_id(role: str = "worker") -> str:
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Runtime:
    """A connection to the run store plus settings: create once per process and reuse."""

    def __init__(self, *, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.store = RunStore(pool)
        self.approvals = ApprovalStore(pool)
        self.settings = settings
        # The kill switch, for runs executed in this process by `research` (workers have their own).
        self._controls = SharedControlWatcher(pool, env_override=settings.disabled)
        self._inline = InlineRuns()  # `research` calls in progress, for `interrupt`

    async def submit(
        self,
        question: str,
        *,
        model: ModelSpec | None = None,
        budget: Budget | None = None,
        critic: ModelSpec | None = None,
    ) -> RunRecord:
        """Queue a run; a worker will execute it. Raises `RunRefusedError` while the kill switch is on or
        today's spend cap is reached. `critic` overrides the `critic_model` setting for this run."""
        label = self.settings.resolved_model() if model is None or model == "auto" else model_label(model)
        config = RunConfig.from_settings(
            self.settings,
            model=label,
            prompt_version=research_prompt().version,
            budget=budget,
            critic_model=None if critic is None else model_label(critic),
        )
        check_run_models(self.settings, config, model=model, critic=critic)  # a bad model or key never makes a run
        screen = _screen(question, refuse_injection=self.settings.refuse_injection)
        await ensure_accepting_runs(self.pool, env_override=self.settings.disabled, cap_usd=self.settings.daily_cap_usd)
        events = _screen_events(screen)
        if not events:
            return await self.store.create_run(question=screen.text, config=config)
        # Findings and redactions are committed with the run, before any worker can claim it.
        record = await self.store.create_run_with_events(question=screen.text, config=config, events=events)
        if screen.findings:
            logfire.warn("question screened: {patterns}", patterns=screen.patterns, run_id=record.id)
        if screen.redactions:
            logfire.info("question redacted: {redactions}", redactions=screen.redactions, run_id=record.id)
        return record

    async def research(
        self,
        question: str,
        *,
        model: ModelSpec | None = None,
        budget: Budget | None = None,
        progress: ProgressCallback = ignore_progress,
        search_backend: SearchBackend | None = None,
        critic: ModelSpec | None = None,
    ) -> ResearchResult:
        """Submit a run and execute it in this process, holding a lease like any worker.

        `interrupt` (e.g. on Ctrl-C) ends the run `cancelled` / `interrupted` and this returns that result;
        if instead the task awaiting this is cancelled, the run is finished the same way before the
        `CancelledError` propagates. Either way `resume` continues it from its last committed turn.
        """
        with self._inline.track() as call:
            record = await self.submit(question, model=model, budget=budget, critic=critic)
            worker_id = new_worker_id("inline")
            lease = self.settings.lease_seconds
            claimed = await self.store.claim_run(record.id, worker_id=worker_id, lease_seconds=lease)
            if claimed is None:  # a worker picked it up first; it is theirs now
                raise RunNotFoundError(f"run {record.id} was claimed by a worker before it could start here")
            models = {claimed.config.model: model} if isinstance(model, Model) else {}
            if isinstance(critic, Model) and claimed.config.critic_model:
                models[claimed.config.critic_model] = critic
            runner = DurableRunner(
                store=self.store,
                settings=self.settings,
                worker_id=worker_id,
                models=models,
                search_backend=search_backend,
                progress=progress,
            )
            try:
                async with self._controls.watching(lambda state: runner.kill_all(f"stopped: {state.describe()}")):
                    final = await call.execute(runner, claimed)
            finally:
                await runner.aclose()
        return ResearchResult.from_record(final)

    def interrupt(self, run_id: str | None = None, *, reason: str = INTERRUPTED) -> list[str]:
        """Stop the run `research` is executing in this process (`run_id`, or all of them when None).

        The run ends `cancelled` / `interrupted` within a second or two, even mid model or tool call, with
        its committed turns kept, and `research` returns that result. Safe as a signal handler:
        `loop.add_signal_handler(signal.SIGINT, runtime.interrupt)`; call it on the event loop's thread.
        Idempotent; returns the ids of the runs newly asked to stop.
        """
        return self._inline.interrupt(reason, run_id=run_id)

    async def get_run(self, run_id: str) -> RunView:
        return await read_run(self.store, self.approvals, run_id)

    async def list_runs(self, *, limit: int = 20, statuses: Sequence[RunStatus] | None = None) -> list[RunRecord]:
        """The newest `limit` runs, of any status or only of `statuses` (`research-agent runs list --status`)."""
        return await self.store.list_runs(limit=limit, statuses=statuses)

    async def resume(self, run_id: str, *, budget: Budget | None = None) -> RunRecord:
        """Queue a stopped run (failed, killed, budget_exceeded, cancelled) again; a worker continues it
        from its last committed turn.

        `budget` replaces the run's whole budget (e.g. more turns for a run stopped `budget_exceeded` /
        `turns`; start from `run.config.budget` to keep the other caps): its frozen config is updated as it
        is queued, and a `budget_changed` step records the caps that changed, old and new. Usage so far
        still counts against the new caps.
        """
        run = await self.store.get_run(run_id)
        return await self.store.requeue(run.id, budget=budget)

    async def stats(self, since: str | timedelta = "24h", *, by: StatsBy | None = None) -> RunStats:
        """How the runs created in the last `since` went, in total and per `by` group (`agent.stats`)."""
        from agent.stats import stats_window

        return await fleet_stats(
            self.pool,
            since=stats_window(since),
            by=by,
            breaker_open_seconds=self.settings.breaker_open_seconds,
            rate_window_seconds=self.settings.rate_limit_window_seconds,
        )

    async def pending_approvals(self) -> list[Approval]:
        """Requests waiting for a human, oldest first (expiring the overdue ones first)."""
        return await self.approvals.pending()

    async def decide_approval(
        self, approval_id: str, *, approve: bool, note: str | None = None, decided_by: str | None = None
    ) -> Approval:
        """Approve or reject a tool call; its run is queued for a worker once nothing of it is pending."""
        return await self.approvals.decide(
            approval_id, approve=approve, note=note, decided_by=decided_by or default_decider()
        )

    async def aclose(self) -> None:
        await self.pool.close()


@asynccontextmanager
async def open_runtime(
    settings: Settings | None = None, *, on_startup: StartupCallback = ignore_startup
) -> AsyncIterator[Runtime]:
    """Connect (starting the embedded server if needed), migrate, and yield a `Runtime`.

    `on_startup` hears the slow steps of a cold start (`agent.events.StartupEvent`); a warm start is silent.
    """
    settings = settings or Settings.load()
    configure_telemetry(settings)
    runtime = Runtime(pool=await open_database(settings, on_startup=on_startup), settings=settings)
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def research(
    question: str,
    *,
    model: ModelSpec | None = None,
    budget: Budget | None = None,
    settings: Settings | None = None,
    progress: ProgressCallback = ignore_progress,
) -> ResearchResult:
    """Research `question` to a cited report, durably. See `Runtime.research`."""
    async with open_runtime(settings) as runtime:
        return await runtime.research(question, model=model, budget=budget, progress=progress)


async def submit(
    question: str, *, model: str | None = None, budget: Budget | None = None, settings: Settings | None = None
) -> str:
    """Queue `question` for a worker; returns the run id."""
    async with open_runtime(settings) as runtime:
        return (await runtime.submit(question, model=model, budget=budget)).id


async def get_run(run_id: str, *, settings: Settings | None = None) -> RunView:
    async with open_runtime(settings) as runtime:
        return await runtime.get_run(run_id)
