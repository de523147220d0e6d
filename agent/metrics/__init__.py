"""OpenTelemetry metrics of the fleet, through logfire's meter provider (issue 15, point 3).

Counted from what the store committed, right after the commit succeeded, so the figures add up to the
store's (`research-agent stats`); see docs/decisions/0026-metrics.md.

- `research_agent.runs` (counter, `{run}`): runs that ended, by `research_agent.run.status`,
  `research_agent.run.stop_reason`, `gen_ai.provider.name`, `gen_ai.request.model`.
- `research_agent.run.duration` (histogram, `s`): their execution time, same attributes.
- `gen_ai.client.operation.duration` (histogram, `s`): each committed model request's latency, by
  `gen_ai.operation.name` (`chat`), `gen_ai.agent.name` (`research` or `critic`), `gen_ai.provider.name`,
  `gen_ai.request.model` and (the research model's) `gen_ai.response.model`.
- `research_agent.tokens` (counter, `{token}`): tokens committed, by `gen_ai.token.type` (`input`, `output`),
  `gen_ai.provider.name`, `gen_ai.request.model` (the run's model; the critic's tokens count in its run).
- `research_agent.cost` (counter, `{USD}`): dollars committed, by `gen_ai.provider.name`, `gen_ai.request.model`.
- `research_agent.tool.calls`, `research_agent.tool.errors` (counters, `{call}`): by `gen_ai.tool.name`.
- `research_agent.approvals.pending` (gauge, `{approval}`): tool calls waiting for a human, fleet-wide.
- `research_agent.circuit.status` (gauge, `1`): per breaker (`gen_ai.provider.name`, `gen_ai.request.model`)
  and `research_agent.circuit.state` (`closed`, `open`, `half_open`): 1 for its state, 0 for the others.

pydantic-ai's instrumentation records `gen_ai.client.token.usage` and `operation.cost` per model request
(scope `pydantic-ai`); they are not recorded again here.
"""

from agent.metrics._gauges import BREAKER_STATES, GaugeSnapshot, MetricsRefresher, read_gauges, register_gauges
from agent.metrics._instruments import (
    AGENT_NAME,
    APPROVALS_PENDING,
    CIRCUIT_STATE,
    CIRCUIT_STATUS,
    COST,
    MODEL_DURATION,
    OPERATION,
    PROVIDER,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    RUN_DURATION,
    RUNS,
    SCOPE,
    STATUS,
    STOP_REASON,
    TOKEN_TYPE,
    TOKENS,
    TOOL_CALLS,
    TOOL_ERRORS,
    TOOL_NAME,
    Committed,
    model_attributes,
    record_run_end,
    record_turn,
)
from agent.metrics._prometheus import PrometheusEndpoint, metrics_options, start_prometheus

__all__ = [
    "AGENT_NAME",
    "APPROVALS_PENDING",
    "BREAKER_STATES",
    "CIRCUIT_STATE",
    "CIRCUIT_STATUS",
    "COST",
    "MODEL_DURATION",
    "OPERATION",
    "PROVIDER",
    "REQUEST_MODEL",
    "RESPONSE_MODEL",
    "RUNS",
    "RUN_DURATION",
    "SCOPE",
    "STATUS",
    "STOP_REASON",
    "TOKENS",
    "TOKEN_TYPE",
    "TOOL_CALLS",
    "TOOL_ERRORS",
    "TOOL_NAME",
    "Committed",
    "GaugeSnapshot",
    "MetricsRefresher",
    "PrometheusEndpoint",
    "metrics_options",
    "model_attributes",
    "read_gauges",
    "record_run_end",
    "record_turn",
    "register_gauges",
    "start_prometheus",
]
