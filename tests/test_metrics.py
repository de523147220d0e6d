"""Metrics (issue 15, point 3): after scripted runs, every metric equals what the store says.

Logfire is configured as the worker configures it with `--metrics-port` (`agent.metrics.metrics_options`),
with an in-memory reader beside the Prometheus one. A mixed fleet runs in process (completed, failing tool
calls, a turn-cap stop, a failed run, one parked for approval twice and resumed by a worker); then each
metric is compared with the store's own figures (`fleet_stats`, what `research-agent stats` prints) and
with its rows, in memory and as Prometheus scrapes it over HTTP. A turn whose commit fails is counted
nowhere. The gauges are read from Postgres by the worker's refresher. The command line: a worker process
serving its metrics, and a port it cannot serve as a one-line error.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import logfire
import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from prometheus_client.parser import text_string_to_metric_families
from pydantic_ai import ModelResponse
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime
from agent.durable.store import FINISHED_STATUSES, RunStats, fleet_stats
from agent.durable.store import providers as provider_store
from agent.durable.worker import Worker
from agent.metrics import (
    AGENT_NAME,
    APPROVALS_PENDING,
    CIRCUIT_STATE,
    CIRCUIT_STATUS,
    COST,
    MODEL_DURATION,
    PROVIDER,
    REQUEST_MODEL,
    RUN_DURATION,
    RUNS,
    STATUS,
    STOP_REASON,
    TOKEN_TYPE,
    TOKENS,
    TOOL_CALLS,
    TOOL_ERRORS,
    TOOL_NAME,
    PrometheusEndpoint,
    metrics_options,
    model_attributes,
    start_prometheus,
)
from agent.settings import Settings
from budgets import Budget
from tests._cli import run_cli
from tests._http_server import LocalHTTPServer
from tests._processes import expire_lease, start_worker, until, worker_env
from tests._web import install_web
from tests.scripted import ResearchScript, research_model, scripted_calls
from tools import ToolPolicyOverrides

QUESTION = "What changed in HTTP/3 compared to HTTP/2?"
NEEDS_APPROVAL = ToolPolicyOverrides(tools={"fetch_url": "require_approval"})
BROKEN = "openai:gpt-broken"
"""A provider model whose circuit breaker the test opens."""
DEADLINE = 10.0


# --- reading the metrics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    attributes: dict[str, str]
    value: float
    """A sum's or gauge's value; a histogram's sum."""
    count: int = 0
    """A histogram's count."""


def points(reader: InMemoryMetricReader, name: str) -> list[Point]:
    """Every data point of the metric `name` (any scope) collected now."""
    data = reader.get_metrics_data()
    found: list[Point] = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    attributes = {k: str(v) for k, v in (point.attributes or {}).items()}
                    if isinstance(point, HistogramDataPoint):
                        found.append(Point(attributes, point.sum, point.count))
                    else:
                        assert isinstance(point, NumberDataPoint)
                        found.append(Point(attributes, float(point.value)))
    return found


def by(found: list[Point], *keys: str) -> dict[tuple[str, ...], float]:
    """Values summed by the given attributes."""
    totals: dict[tuple[str, ...], float] = {}
    for point in found:
        key = tuple(point.attributes.get(k, "") for k in keys)
        totals[key] = totals.get(key, 0.0) + point.value
    return totals


@dataclass(frozen=True)
class Capture:
    memory: InMemoryMetricReader
    endpoint: PrometheusEndpoint


@pytest.fixture
def capture() -> Iterator[Capture]:
    """Logfire as a worker with `--metrics-port` configures it, plus an in-memory reader: fresh totals."""
    memory = InMemoryMetricReader()
    endpoint = start_prometheus(host="127.0.0.1", port=0)
    logfire.configure(send_to_logfire=False, console=False, metrics=metrics_options(readers=[memory, endpoint.reader]))
    try:
        yield Capture(memory, endpoint)
    finally:
        endpoint.close()


Scrape = dict[str, list[tuple[dict[str, str], float]]]


async def scrape(url: str) -> Scrape:
    """The Prometheus exposition at `url`, as sample name -> (labels, value)."""
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
    assert response.status_code == 200, response.text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def summed(samples: list[tuple[dict[str, str], float]], *attributes: str) -> dict[tuple[str, ...], float]:
    """Scraped sample values summed by the labels of the given attributes."""
    totals: dict[tuple[str, ...], float] = {}
    for labels, value in samples:
        key = tuple(labels[label(a)] for a in attributes)
        totals[key] = totals.get(key, 0.0) + value
    return totals


def label(attribute: str) -> str:
    """An OpenTelemetry attribute name as the Prometheus exporter writes it as a label."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", attribute)


# --- a fleet of scripted runs ---------------------------------------------------------------------------


def failing_model() -> FunctionModel:
    """A model whose provider breaks on the second request: the run ends `failed`."""
    script = ResearchScript()

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(m, ModelResponse) for m in messages):
            raise RuntimeError("the provider broke")
        return script.decide(messages, info)

    return FunctionModel(respond, model_name="scripted-failing")


@pytest.fixture
async def fleet(runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, capture: Capture) -> RunStats:
    install_web(http_server)
    not_allowed = f"http://127.0.0.2:{http_server.port}/pages/http3"  # loopback, but not on the allow-list
    tool_errors = scripted_calls(
        [
            ("record_plan", {"sub_questions": ["QUIC?"]}),
            ("fetch_url", {"url": not_allowed}),
            ("web_search", {"query": "QUIC", "max_results": "many"}),
            ("web_search", {"query": "QUIC"}),
        ]
    )
    approving = Runtime(pool=runtime.pool, settings=settings.model_copy(update={"tool_policy": NEEDS_APPROVAL}))
    results = [
        await runtime.research(QUESTION, model=research_model(max_fetches=2)[0]),
        await runtime.research(QUESTION, model=tool_errors),
        await runtime.research(QUESTION, model=research_model(max_fetches=2)[0], budget=Budget(max_turns=2)),
        await runtime.research(QUESTION, model=failing_model()),
        await approving.research(QUESTION, model="factory:tests.scripted:crash_model"),
    ]
    outcomes = [(r.status, r.stop_reason) for r in results]
    assert outcomes[:3] == [("completed", "completed"), ("completed", "completed"), ("budget_exceeded", "turns")]
    assert outcomes[3][0] == "failed" and outcomes[4][0] == "awaiting_approval", outcomes
    # Approved, the parked run is resumed by a worker from its committed totals, once per fetch it asks for.
    resumed = results[4]
    while approvals := await runtime.pending_approvals():
        for approval in approvals:
            await runtime.decide_approval(approval.id, approve=True)
        [final] = await Worker(runtime, exit_when_idle=True).run()
        assert final.id == resumed.run_id
    assert (final.status, final.attempts) == ("completed", 3)
    return await fleet_stats(runtime.pool, since=timedelta(hours=1))


# --- the counters and histograms equal the store -------------------------------------------------------


async def test_every_metric_equals_what_the_store_says(runtime: Runtime, fleet: RunStats, capture: Capture) -> None:
    total = fleet.total
    memory = capture.memory
    runs = await runtime.pool.fetch("SELECT * FROM runs")
    steps = await runtime.pool.fetch("SELECT * FROM run_steps WHERE kind IN ('model', 'tool')")

    # Runs that ended, by status and stop reason (the approval's pause was not an end: counted once).
    ended = Counter((r["status"], r["stop_reason"]) for r in runs if r["status"] in FINISHED_STATUSES)
    assert sum(ended.values()) == total.finished == total.runs == 5
    assert by(points(memory, RUNS), STATUS, STOP_REASON) == {key: float(n) for key, n in ended.items()}
    # ... with their execution time: one observation per ended run, summing the stored `elapsed_seconds`.
    durations = points(memory, RUN_DURATION)
    assert sum(p.count for p in durations) == total.finished
    assert sum(p.value for p in durations) == pytest.approx(
        sum(r["elapsed_seconds"] for r in runs if r["status"] in FINISHED_STATUSES), rel=1e-9
    )

    # Tokens and dollars: every commit's increment adds up to the runs' totals (the resumed run's too).
    tokens = by(points(memory, TOKENS), TOKEN_TYPE)
    assert total.input_tokens > 0 and total.output_tokens > 0
    assert tokens == {("input",): float(total.input_tokens), ("output",): float(total.output_tokens)}
    cost = sum(p.value for p in points(memory, COST))
    assert total.total_cost_usd > 0
    assert cost == pytest.approx(float(total.total_cost_usd), rel=1e-12)
    assert Decimal(str(round(cost, 8))) == total.total_cost_usd

    # Model latency: one observation per model step, summing the stored latencies.
    latency = points(memory, MODEL_DURATION)
    assert sum(p.count for p in latency) == total.model_requests == sum(s["kind"] == "model" for s in steps)
    assert sum(p.value for p in latency) == pytest.approx(
        sum(s["latency_ms"] for s in steps if s["kind"] == "model") / 1000, rel=1e-9
    )
    assert {p.attributes[AGENT_NAME] for p in latency} == {"research"}  # the critic is off in these tests
    assert {p.attributes["gen_ai.operation.name"] for p in latency} == {"chat"}

    # Tool calls and errors by tool, as `stats` counts them (the report's output tool is not a tool call).
    calls = by(points(memory, TOOL_CALLS), TOOL_NAME)
    errors = by(points(memory, TOOL_ERRORS), TOOL_NAME)
    assert calls == {(t.tool,): float(t.calls) for t in total.tools}
    assert errors == {(t.tool,): float(t.errors) for t in total.tools if t.errors}
    assert total.tool_errors >= 2 and ("final_result",) not in calls
    assert sum(calls.values()) == total.tool_calls

    # Prometheus serves the same figures over HTTP.
    scraped = await scrape(capture.endpoint.url)
    assert summed(scraped["research_agent_runs_total"], STATUS, STOP_REASON) == {k: float(n) for k, n in ended.items()}
    assert summed(scraped["research_agent_tokens_total"], TOKEN_TYPE) == tokens
    assert summed(scraped["research_agent_cost_total"]) == {(): pytest.approx(float(total.total_cost_usd))}
    assert summed(scraped["research_agent_tool_calls_total"], TOOL_NAME) == calls
    assert summed(scraped["research_agent_tool_errors_total"], TOOL_NAME) == errors
    assert summed(scraped["gen_ai_client_operation_duration_seconds_count"]) == {(): total.model_requests}
    assert summed(scraped["research_agent_run_duration_seconds_count"]) == {(): total.finished}
    buckets = scraped["gen_ai_client_operation_duration_seconds_bucket"]  # explicit buckets, not dropped
    assert {labels["le"] for labels, _ in buckets} >= {"0.01", "81.92", "+Inf"}


async def test_a_turn_whose_commit_fails_is_not_counted(
    runtime: Runtime, http_server: LocalHTTPServer, capture: Capture
) -> None:
    """Another worker takes the run over while its second model request runs: that response's commit fails
    (the lease is gone), so neither the store nor the metrics have it."""
    install_web(http_server)
    script = ResearchScript()

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(m, ModelResponse) for m in messages):
            await runtime.pool.execute("UPDATE runs SET lease_owner = 'another-worker' WHERE status = 'running'")
        return script(messages, info)

    result = await runtime.research(QUESTION, model=FunctionModel(respond, model_name="scripted-taken"))
    assert result.status == "running" and len(script.calls) == 2  # the second response was never committed
    run = await runtime.pool.fetchrow("SELECT * FROM runs WHERE id = $1::uuid", result.run_id)
    model_steps = await runtime.pool.fetchval(
        "SELECT count(*) FROM run_steps WHERE run_id = $1::uuid AND kind = 'model'", result.run_id
    )
    assert model_steps == 1 and run["input_tokens"] > 0  # the first response only
    tokens = by(points(capture.memory, TOKENS), TOKEN_TYPE)
    assert tokens == {("input",): float(run["input_tokens"]), ("output",): float(run["output_tokens"])}
    assert sum(p.count for p in points(capture.memory, MODEL_DURATION)) == model_steps
    assert points(capture.memory, RUNS) == []  # it did not end here


async def test_a_run_the_attempt_cap_ends_is_counted_once_by_the_worker_that_ended_it(
    runtime: Runtime, capture: Capture
) -> None:
    """A run whose worker died on its last allowed attempt is ended by the next worker's claim (`failed` /
    `too_many_attempts`), not by a runner: that worker counts it."""
    capped = Runtime(pool=runtime.pool, settings=runtime.settings.model_copy(update={"max_attempts": 1}))
    queued = await capped.submit(QUESTION, model=failing_model())
    assert await capped.store.claim_next(worker_id="died", lease_seconds=60) is not None
    await expire_lease(runtime.pool, queued.id)
    assert await Worker(capped, concurrency=1, exit_when_idle=True).run() == []  # nothing left to claim
    run = await capped.store.get_run(queued.id)
    assert (run.status, run.stop_reason) == ("failed", "too_many_attempts")
    assert by(points(capture.memory, RUNS), STATUS, STOP_REASON) == {("failed", "too_many_attempts"): 1.0}


# --- the gauges ------------------------------------------------------------------------------------------


async def test_the_worker_gauges_equal_the_store(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, capture: Capture
) -> None:
    install_web(http_server)
    approving = Runtime(pool=runtime.pool, settings=settings.model_copy(update={"tool_policy": NEEDS_APPROVAL}))
    parked = await approving.research(QUESTION, model="factory:tests.scripted:crash_model")
    assert parked.status == "awaiting_approval"
    for _ in range(settings.breaker_failures):
        await provider_store.record_failure(runtime.pool, BROKEN, threshold=settings.breaker_failures, error="500")
    pending = await runtime.pool.fetchval("SELECT count(*) FROM approvals WHERE status = 'pending'")
    health = await provider_store.health(runtime.pool, open_seconds=60, window_seconds=60)
    assert pending == 1 and [(h.key, h.state) for h in health] == [(BROKEN, "open")]

    worker = Worker(runtime, concurrency=1)
    task = asyncio.create_task(worker.run())
    try:
        approvals = await until(lambda: points(capture.memory, APPROVALS_PENDING), within=DEADLINE, what="gauges")
        assert [p.value for p in approvals] == [float(pending)]
        circuit = await until(lambda: points(capture.memory, CIRCUIT_STATUS), within=DEADLINE, what="gauges")
        states = {p.attributes[CIRCUIT_STATE]: p.value for p in circuit}
        assert states == {"open": 1.0, "closed": 0.0, "half_open": 0.0}
        assert all({k: p.attributes[k] for k in (PROVIDER, REQUEST_MODEL)} == model_attributes(BROKEN) for p in circuit)
        assert model_attributes(BROKEN) == {PROVIDER: "openai", REQUEST_MODEL: "gpt-broken"}
        scraped = await scrape(capture.endpoint.url)
        assert [v for _, v in scraped["research_agent_approvals_pending"]] == [float(pending)]
        circuit_labels = [label(PROVIDER), label(REQUEST_MODEL), label(CIRCUIT_STATE)]
        scraped_circuit = {
            tuple(labels[k] for k in circuit_labels): v for labels, v in scraped["research_agent_circuit_status"]
        }
        assert scraped_circuit == {("openai", "gpt-broken", state): value for state, value in states.items()}
    finally:
        worker.stop()
        await task
    # A stopped worker's last readings are not reported as current.
    assert points(capture.memory, APPROVALS_PENDING) == [] and points(capture.memory, CIRCUIT_STATUS) == []


# --- the command line ------------------------------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("problem", ["in use", "out of range"])
def test_a_port_the_worker_cannot_serve_is_a_one_line_error(settings: Settings, taken_port: int, problem: str) -> None:
    port = str(taken_port) if problem == "in use" else "70000"
    result = run_cli(worker_env(settings), "worker", "--metrics-port", port, "--exit-when-idle")
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and port in lines[0]
    assert "worker" not in result.stderr  # it never started


async def test_the_worker_command_serves_its_metrics(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    ids = [(await runtime.submit(QUESTION, model="factory:tests.scripted:crash_model")).id for _ in range(2)]
    env = worker_env(settings, RA_SCRIPT_MAX_FETCHES="1")
    log = tmp_path / "worker.log"
    worker = start_worker(env, "--metrics-port", "0", log=log)
    try:
        found = await until(
            lambda: re.search(r"metrics at (http://127\.0\.0\.1:\d+/metrics)", log.read_text()),
            within=60,
            what="the worker to print its metrics URL",
        )
        url = found.group(1)

        async def statuses_of() -> list[str]:
            return [(await runtime.store.get_run(i)).status for i in ids]

        statuses = await until(
            statuses_of, lambda found: all(s in FINISHED_STATUSES for s in found), within=60, what="the runs to finish"
        )
        stats = (await fleet_stats(runtime.pool, since=timedelta(hours=1))).total
        # The worker counts a run right after its final commit: wait until the scrape has both.
        scraped = await until(
            lambda: scrape(url),
            lambda s: sum(v for _, v in s.get("research_agent_runs_total", [])) == 2,
            within=DEADLINE,
            what="the scrape to count both runs",
        )
        runs = summed(scraped["research_agent_runs_total"], STATUS)
        assert runs == {(status,): float(n) for status, n in Counter(statuses).items()} == {("completed",): 2.0}
        calls = summed(scraped["research_agent_tool_calls_total"], TOOL_NAME)
        assert calls == {(t.tool,): float(t.calls) for t in stats.tools} and calls
        tokens = summed(scraped["research_agent_tokens_total"], TOKEN_TYPE)
        assert tokens == {("input",): stats.input_tokens, ("output",): stats.output_tokens}
        assert summed(scraped["gen_ai_client_operation_duration_seconds_count"]) == {(): stats.model_requests}
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    text = log.read_text()
    assert text.count("metrics at ") == 1 and "Traceback" not in text, text
