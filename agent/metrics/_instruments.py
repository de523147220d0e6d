"""The instruments, and the functions that count what the store committed (a turn, a run's end).

Everything is counted from the commit itself, after it succeeded: a turn whose commit fails (its lease
was lost, the database went away) adds nothing, so every figure adds up to what the store holds.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from opentelemetry.metrics import CallbackT, Counter, Histogram, Meter, ObservableGauge, get_meter_provider

from agent.durable.store import FINISHED_STATUSES, RunRecord, StepRecord, TurnCommit
from agent.durable.store.stats import OUTPUT_TOOL

SCOPE: Final = "research_agent"
"""The instrumentation scope of our instruments (pydantic-ai's are under `pydantic-ai`)."""

# Our own metrics (no GenAI convention covers them).
RUNS: Final = "research_agent.runs"
RUN_DURATION: Final = "research_agent.run.duration"
TOKENS: Final = "research_agent.tokens"
COST: Final = "research_agent.cost"
TOOL_CALLS: Final = "research_agent.tool.calls"
TOOL_ERRORS: Final = "research_agent.tool.errors"
APPROVALS_PENDING: Final = "research_agent.approvals.pending"
CIRCUIT_STATUS: Final = "research_agent.circuit.status"
# The GenAI semantic conventions' client operation duration (pydantic-ai does not record it).
MODEL_DURATION: Final = "gen_ai.client.operation.duration"

# Attributes: the GenAI conventions' names where one exists, ours under `research_agent.` otherwise.
OPERATION: Final = "gen_ai.operation.name"
PROVIDER: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
RESPONSE_MODEL: Final = "gen_ai.response.model"
AGENT_NAME: Final = "gen_ai.agent.name"
TOKEN_TYPE: Final = "gen_ai.token.type"
TOOL_NAME: Final = "gen_ai.tool.name"
STATUS: Final = "research_agent.run.status"
STOP_REASON: Final = "research_agent.run.stop_reason"
CIRCUIT_STATE: Final = "research_agent.circuit.state"

CRITIC_STEP: Final = "critic"
"""The name of the critic's model step (`agent.review.loop`): graded by the run's critic model."""
MODEL_DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
"""The GenAI conventions' advised boundaries for `gen_ai.client.operation.duration`, in seconds."""
RUN_DURATION_BUCKETS: Final = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
_STORED_COST: Final = Decimal("1e-8")
"""`runs.cost_usd` is numeric(14, 8): cost increments are taken between values rounded as the store rounds."""


@dataclass(frozen=True, kw_only=True)
class Instruments:
    runs: Counter
    run_duration: Histogram
    tokens: Counter
    cost: Counter
    tool_calls: Counter
    tool_errors: Counter
    model_duration: Histogram


@dataclass(frozen=True, kw_only=True)
class Committed:
    """A run's token and cost totals as the store holds them: where the next commit's increments start."""

    input_tokens: int
    output_tokens: int
    cost_usd: Decimal

    @classmethod
    def of_run(cls, run: RunRecord) -> Committed:
        """From the stored row (`usage_json`, not `usage`: pydantic-ai adds to that object in place)."""
        return cls(
            input_tokens=int(run.usage_json.get("input_tokens") or 0),
            output_tokens=int(run.usage_json.get("output_tokens") or 0),
            cost_usd=run.cost_usd,
        )

    @classmethod
    def of_turn(cls, turn: TurnCommit) -> Committed:
        return cls(
            input_tokens=turn.usage.input_tokens,
            output_tokens=turn.usage.output_tokens,
            cost_usd=turn.cost_usd.quantize(_STORED_COST, ROUND_HALF_UP),  # as Postgres rounds numeric
        )


@functools.cache
def meter() -> Meter:
    """Our meter, created on first use from the global meter provider: logfire's once `configure_telemetry`
    ran, else OpenTelemetry's proxy, which binds to the provider set later. Held for the process's life:
    logfire's proxy provider holds its meters (and they their instruments) weakly, and moves only the live
    ones to a reconfigured provider; `instruments()` and `register_gauges()` hold theirs the same way."""
    return get_meter_provider().get_meter(SCOPE)


@functools.cache
def instruments() -> Instruments:
    meter_ = meter()
    return Instruments(
        runs=meter_.create_counter(RUNS, unit="{run}", description="Runs that ended, by status and stop reason."),
        run_duration=meter_.create_histogram(
            RUN_DURATION,
            unit="s",
            description="A finished run's execution time (what the wall-time cap counts).",
            explicit_bucket_boundaries_advisory=RUN_DURATION_BUCKETS,
        ),
        tokens=meter_.create_counter(TOKENS, unit="{token}", description="Tokens committed to runs."),
        cost=meter_.create_counter(COST, unit="{USD}", description="Dollars committed to runs."),
        tool_calls=meter_.create_counter(TOOL_CALLS, unit="{call}", description="Committed tool calls, by tool."),
        tool_errors=meter_.create_counter(
            TOOL_ERRORS, unit="{call}", description="Committed tool calls that failed, were refused or retried."
        ),
        model_duration=meter_.create_histogram(
            MODEL_DURATION,
            unit="s",
            description="GenAI operation duration of each committed model request.",
            explicit_bucket_boundaries_advisory=MODEL_DURATION_BUCKETS,
        ),
    )


def create_gauge(name: str, *, unit: str, description: str, callback: CallbackT) -> ObservableGauge:
    """An observable gauge under our scope; `callback` runs on the reader's thread at each collection. Keep
    the gauge referenced: logfire's proxy holds instruments weakly too."""
    return meter().create_observable_gauge(name, callbacks=[callback], unit=unit, description=description)


def model_attributes(model: str) -> dict[str, str]:
    """`openai:gpt-4o` as `gen_ai.provider.name` `openai` and `gen_ai.request.model` `gpt-4o`; a model id
    without a provider prefix (`test`, `offline`) is the model name alone."""
    provider, prefixed, name = model.partition(":")
    return {PROVIDER: provider, REQUEST_MODEL: name} if prefixed else {REQUEST_MODEL: model}


def record_turn(run: RunRecord, turn: TurnCommit, *, since: Committed | None) -> Committed:
    """Count one committed turn: what it added to the run's tokens and cost, its model requests' latency and
    its tool calls. `since` is what the previous commit left (None: the run as it was loaded). Returns the
    totals the next commit starts from."""
    meters = instruments()
    base = since or Committed.of_run(run)
    now = Committed.of_turn(turn)
    model = model_attributes(run.config.model)
    added = {"input": now.input_tokens - base.input_tokens, "output": now.output_tokens - base.output_tokens}
    for kind, count in added.items():
        if count > 0:
            meters.tokens.add(count, {**model, TOKEN_TYPE: kind})
    if (spent := now.cost_usd - base.cost_usd) > 0:
        meters.cost.add(float(spent), model)
    _record_steps(run, turn.steps, meters)
    return now


def _record_steps(run: RunRecord, steps: Sequence[StepRecord], meters: Instruments) -> None:
    """Model steps (the research model's responses, the critic's grading) and tool calls, as `stats` counts
    them (agent/durable/store/stats.py): the output tool is the report, not a tool call."""
    for step in steps:
        if step.kind == "model" and step.latency_ms is not None:
            meters.model_duration.record(step.latency_ms / 1000, _model_step_attributes(run, step))
        elif step.kind == "tool" and step.name != OUTPUT_TOOL:
            tool = {TOOL_NAME: step.name}
            meters.tool_calls.add(1, tool)
            if not step.ok:
                meters.tool_errors.add(1, tool)


def _model_step_attributes(run: RunRecord, step: StepRecord) -> dict[str, str]:
    if step.name == CRITIC_STEP:
        critic = run.config.critic_model or CRITIC_STEP
        return {OPERATION: "chat", AGENT_NAME: "critic", **model_attributes(critic)}
    return {OPERATION: "chat", AGENT_NAME: "research", **model_attributes(run.config.model), RESPONSE_MODEL: step.name}


def record_run_end(final: RunRecord) -> None:
    """Count a run that ended (a finished status, as stored): by status, stop reason and model, with its
    execution time. A run parked for approval has not ended; the approvals gauge shows it waiting."""
    if final.status not in FINISHED_STATUSES:
        return
    meters = instruments()
    attributes = {
        STATUS: final.status,
        STOP_REASON: final.stop_reason or "",
        **model_attributes(final.config.model),
    }
    meters.runs.add(1, attributes)
    meters.run_duration.record(final.elapsed_seconds, attributes)
