"""The mechanics of a review: one critic call under the run's budget, and whether a revision is affordable.

The runner decides what to do with a critique (`agent.durable.runner`); this module only runs the critic agent
with the run's usage, budget guard and kill switch, and estimates what a revision would need.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from pydantic_ai import CancellationToken
from pydantic_ai.exceptions import FallbackExceptionGroup, ModelAPIError, UnexpectedModelBehavior, UsageLimitExceeded
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart, UserPromptPart
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.usage import RunUsage

from agent.citations import check_citations, without_problems
from agent.report import ResearchReport
from agent.review.critic import (
    CRITIC_SETTINGS,
    Critique,
    critic_agent,
    critic_prompt,
    critique_request,
    revision_request,
)
from budgets import Budget, BudgetExceeded, BudgetGuard, Pricer, input_token_bound
from tools import FetchedPage

MIN_REVISION_OUTPUT_TOKENS = 256
"""Output allowed for a revised report, at least; more when the first report was longer."""


@dataclass(frozen=True, kw_only=True)
class Critic:
    """The critic a run uses: its model (resolved by the runner), its price and the label stored on the run."""

    model: Model
    pricer: Pricer | None
    label: str


@dataclass(kw_only=True)
class Grading:
    """One critic call: the critique, or why there is none, and what it cost."""

    critique: Critique | None = None
    skip_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0


async def grade(
    critic: Critic,
    *,
    question: str,
    report: ResearchReport,
    sources: Mapping[str, FetchedPage],
    budget: Budget,
    guard: BudgetGuard,
    usage: RunUsage,
    cancellation_token: CancellationToken | None,
) -> Grading:
    """Grade `report`, paying from the run's budget; a budget stop or a failing critic becomes a skip.

    The kill switch is not a skip: its `BudgetExceeded("kill_switch")` propagates and stops the run.
    `usage` is the run's and is updated in place; the critic's spend is added to `guard.spent_usd`.
    """
    critic_guard = BudgetGuard(
        budget=budget,
        pricer=critic.pricer,
        spent_usd=guard.spent_usd,
        elapsed_before=guard.elapsed,
        hooks=guard.hooks,
    )
    grading = Grading()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(max(budget.max_wall_seconds - guard.elapsed, 0.001)):
            result = await critic_agent().run(
                critique_request(question, report, dict(sources)),
                model=critic.model,
                usage=usage,
                usage_limits=budget.usage_limits(),
                capabilities=[critic_guard],
                cancellation_token=cancellation_token,
            )
        grading.critique = result.output
        responses = [m for m in result.new_messages() if isinstance(m, ModelResponse)]
        grading.input_tokens = sum(r.usage.input_tokens for r in responses)
        grading.output_tokens = sum(r.usage.output_tokens for r in responses)
    except BudgetExceeded as stop:
        if stop.reason == "kill_switch":
            raise
        grading.skip_reason = f"critic skipped, budget ({stop.reason}): {stop}"
    except UsageLimitExceeded as stop:
        grading.skip_reason = f"critic skipped, budget: {stop}"
    except TimeoutError:
        grading.skip_reason = f"critic skipped, budget (wall_time): the {budget.max_wall_seconds:g}s cap was reached"
    except (ModelAPIError, FallbackExceptionGroup, UnexpectedModelBehavior) as exc:
        grading.skip_reason = f"critic failed: {type(exc).__name__}: {exc}"
    finally:
        grading.cost_usd = critic_guard.spent_usd - guard.spent_usd
        grading.latency_ms = (time.perf_counter() - started) * 1000
        guard.spent_usd = critic_guard.spent_usd
        guard.merge_events(critic_guard.events)
    return grading


def revision_shortfall(
    critic: Critic,
    *,
    guard: BudgetGuard,
    usage: RunUsage,
    messages: Sequence[ModelMessage],
    question: str,
    report: ResearchReport,
    critique: Critique,
    sources: Mapping[str, FetchedPage],
) -> str | None:
    """Why the run cannot pay for a revision and a second grading; None when it can.

    The estimate is the revision's first request (the history plus the critique, with the tools of the
    last request, and an output allowance the size of the first report) and one critic call. A revision
    that goes on to search and fetch again may need more; the budget guard still stops it then.
    """
    revise = ModelRequest(parts=[UserPromptPart(revision_request(critique))])
    revision_in = input_token_bound([*messages, revise], guard.last_parameters or ModelRequestParameters())
    revision_out = max(MIN_REVISION_OUTPUT_TOKENS, len(report.model_dump_json().encode()))
    critic_request = ModelRequest(
        parts=[UserPromptPart(critique_request(question, report, dict(sources)))], instructions=critic_prompt().text
    )
    critic_in = input_token_bound([critic_request], ModelRequestParameters()) + len(
        json.dumps(Critique.model_json_schema()).encode()
    )
    critic_out = CRITIC_SETTINGS.get("max_tokens") or MIN_REVISION_OUTPUT_TOKENS
    cost = Decimal(0)
    if guard.pricer is not None:
        cost += guard.pricer.price(input_tokens=revision_in, output_tokens=revision_out)
    if critic.pricer is not None:
        cost += critic.pricer.price(input_tokens=critic_in, output_tokens=critic_out)
    return guard.shortfall(usage, requests=2, tokens=revision_in + revision_out + critic_in + critic_out, cost=cost)


def finished_report(history: Sequence[ModelMessage], sources: Mapping[str, FetchedPage]) -> ResearchReport | None:
    """The report a committed history already ends with (the run stopped before it was finished).

    Its citations are checked again, and any that fail are dropped, as the output validator would on
    its last attempt: the model is not asked (or paid) again for an answer it already gave.
    """
    if len(history) < 2 or not isinstance(history[-2], ModelResponse) or not isinstance(history[-1], ModelRequest):
        return None
    calls = {p.tool_call_id: p for p in history[-2].parts if isinstance(p, ToolCallPart)}
    for part in history[-1].parts:
        if not isinstance(part, ToolReturnPart) or part.outcome != "success":
            continue
        call = calls.get(part.tool_call_id)
        if call is not None and call.tool_name == "final_result":
            try:
                report = ResearchReport.model_validate(call.args_as_dict())
            except ValueError:
                return None
            return without_problems(report, check_citations(report, sources))
    return None
