"""The critic loop (evaluator-optimizer): grade the report, revise at most once, grade again, keep the better.

Every phase resumes from what is committed: a report the history already ends with is not asked for
again, a stored critique is not paid for again, and a revision under way continues. A stop during the
optional revision (a cap, a timeout, a provider error) ends only the revision: the first report stands.
The kill switch still stops the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import logfire
from pydantic_ai import DeferredToolRequests, DeferredToolResults
from pydantic_ai.exceptions import FallbackExceptionGroup, ModelAPIError, UnexpectedModelBehavior, UsageLimitExceeded

from agent.durable.stops import describe
from agent.durable.store import StepRecord
from agent.report import ResearchReport
from agent.review.critic import Critique, Review, RevisionOutcome, critic_prompt, revision_request
from agent.review.grading import Critic, finished_report, grade, revision_shortfall
from budgets import BudgetExceeded

if TYPE_CHECKING:
    from agent.durable.session import RunSession

_REVISION_STOPS = (BudgetExceeded, UsageLimitExceeded, TimeoutError, ModelAPIError, FallbackExceptionGroup)


class ReviewLoop:
    """Researches a run's report and, with a critic, reviews it; the runner calls `run` once per execution."""

    def __init__(self, session: RunSession, *, critic: Critic | None) -> None:
        self.session = session
        self.critic = critic

    async def run(self, *, deferred: DeferredToolResults | None) -> ResearchReport | DeferredToolRequests:
        """The report to finish the run with, or the calls that wait for a human first."""
        session = self.session
        review = session.review
        if review is not None and review.kept is not None:  # decided before a crash; only finishing was left
            return self._kept()
        if review is None or review.revision != "revised":
            outcome = await self._first_report(deferred)
            if isinstance(outcome, DeferredToolRequests) or self.critic is None:
                return outcome
            settled = await self._review_first(outcome, self.critic)
            if settled is not None:
                return settled
            assert session.review is not None and session.review.first is not None
            return await self._revise(prompt=revision_request(session.review.first), deferred=None)
        return await self._revise(prompt=None, deferred=deferred)  # a revision under way continues

    def _kept(self) -> ResearchReport:
        kept = self.session.best_report()
        if kept is None:
            run_id = self.session.run.id
            raise UnexpectedModelBehavior(f"run {run_id}: its review is decided but the kept report is missing")
        return kept

    async def _first_report(self, deferred: DeferredToolResults | None) -> ResearchReport | DeferredToolRequests:
        session = self.session
        report = finished_report(session.messages, session.deps.sources)
        if report is not None:
            return report
        prompt = None if session.messages else session.run.question
        return await session.drive(prompt=prompt, deferred=deferred)

    async def _review_first(self, report: ResearchReport, critic: Critic) -> ResearchReport | None:
        """Grade the first report; the report kept when no revision follows, None when one does."""
        session = self.session
        review = session.review = session.review or Review(
            threshold=session.run.config.critic_threshold,
            critic_model=critic.label,
            critic_prompt=critic_prompt().version,
        )
        review.first_report = report
        if review.first is None:
            review.first = await self._grade(report, label="critique")
        if review.first is None:
            return await self._settle(revision="skipped", kept="first")
        if review.first.score >= review.threshold:
            return await self._settle(revision="not_needed", kept="first")
        shortfall = revision_shortfall(
            critic,
            guard=session.guard,
            usage=session.usage,
            messages=session.messages,
            question=session.run.question,
            report=report,
            critique=review.first,
            sources=session.deps.sources,
        )
        if shortfall is not None:
            review.skip_reason = f"revision skipped, budget: {shortfall}"
            return await self._settle(revision="skipped", kept="first")
        review.revision = "revised"  # committed with the revision request, by the first commit of the drive
        session.review_changed = True
        session.emit("model", f"revising: {review.first.summary()}")
        return None

    async def _revise(
        self, *, prompt: str | None, deferred: DeferredToolResults | None
    ) -> ResearchReport | DeferredToolRequests:
        session = self.session
        review = session.review
        assert review is not None
        revised = finished_report(session.messages, session.deps.sources) if prompt is None else None
        if revised is None:
            try:
                outcome = await session.drive(prompt=prompt, deferred=deferred)
            except _REVISION_STOPS as stop:
                if isinstance(stop, BudgetExceeded) and stop.reason == "kill_switch":
                    raise
                await session.commit_new()  # keep what the revision did; the first report stands
                review.skip_reason = f"revision stopped: {describe(stop) if str(stop) else 'wall-time cap reached'}"
                return await self._settle(revision="stopped", kept="first")
            if isinstance(outcome, DeferredToolRequests):
                return outcome
            revised = outcome
        review.revised_report = revised
        if review.second is None:
            review.second = await self._grade(revised, label="critique of the revision")
        first_score = review.first.score if review.first else 0.0
        better = review.second is None or review.second.score >= first_score
        return await self._settle(revision="revised", kept="revision" if better else "first")

    async def _settle(self, *, revision: RevisionOutcome, kept: Literal["first", "revision"]) -> ResearchReport:
        """Record the review's outcome (committed with the run's final state) and return the report kept."""
        session = self.session
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

    async def _grade(self, report: ResearchReport, *, label: str) -> Critique | None:
        """One critic call, committed as a step with the review; None when it was skipped (recorded why)."""
        session, critic = self.session, self.critic
        review = session.review
        assert review is not None and critic is not None
        grading = await grade(
            critic,
            question=session.run.question,
            report=report,
            sources=session.deps.sources,
            budget=session.run.config.budget,
            guard=session.guard,
            usage=session.usage,
            cancellation_token=session.token,
        )
        critique = grading.critique
        if critique is None:
            review.skip_reason = grading.skip_reason
        summary = critique.summary() if critique else grading.skip_reason or "skipped"
        logfire.info("{label}: {summary}", label=label, summary=summary, run_id=session.run.id, critic=critic.label)
        session.emit("model", f"{label}: {summary}")
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
