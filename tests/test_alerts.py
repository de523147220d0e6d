"""Alerts (issue 15, point 2): rules over the recent runs and today's spend, fired once per breach.

Each rule is judged on figures it should and should not alert on (pure `evaluate`), never below
`alert_min_runs`. Then real runs: failing scripted runs breach `success_rate`; `alerts check` exits 1 and names
it; two workers checking at once write one `alert.fired` event, and checking again writes none until the rule
has held again (completed runs) and breaches again. Spend alerts fire at 50 % and 80 % of the daily cap, once
per day each. A worker evaluates the rules by itself and its dispatcher delivers the alert, signed, to an
alert-only URL that hears nothing else.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import SecretStr
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime
from agent.durable.alerts import RUN_RULES, AlertCheck, AlertMonitor, check_alerts, evaluate, fire_alerts
from agent.durable.store import ApprovalStats, GroupStats, Percentiles
from agent.durable.worker import Worker
from agent.settings import Settings
from budgets import DailySpend, SpendToday
from tests._cli import run_cli
from tests._http_server import LocalHTTPServer
from tests._processes import worker_env
from tests._web import install_web
from tests.scripted import research_model
from tests.test_webhooks import SECRET, Receiver, _document

QUESTION = "What changed in HTTP/3 compared to HTTP/2?"
NO_SPEND = SpendToday(day=date(2026, 12, 2), spent_usd=Decimal(0), reserved_usd=Decimal(0), cap_usd=None)


def healthy(**changes: object) -> GroupStats:
    """A window every default rule is happy with; `changes` break one figure at a time."""
    figures: dict[str, object] = {
        "runs": 40,
        "finished": 40,
        "completed": 39,
        "completion_rate": 39 / 40,
        "turns_avg": 5.0,
        "duration_seconds": Percentiles(p50=10, p95=30, p99=60),
        "tokens_per_run": 6_000.0,
        "cost_per_run_usd": Decimal("0.02"),
        "tool_calls": 100,
        "tool_errors": 2,
        "tool_error_rate": 0.02,
        "approvals": ApprovalStats(runs=2, rate=0.05),
    }
    return GroupStats.model_validate({**figures, **changes})


BREACHES = {
    "success_rate": {"completion_rate": 0.85},
    "steps_per_run": {"turns_avg": 8.5},
    "p99_duration": {"duration_seconds": Percentiles(p50=10, p95=60, p99=95)},
    "tokens_per_run": {"tokens_per_run": 12_000.0},
    "cost_per_run": {"cost_per_run_usd": Decimal("0.11")},
    "tool_error_rate": {"tool_error_rate": 0.06},
    "approval_rate": {"approvals": ApprovalStats(runs=9, rate=0.225)},
}
AT_THE_LINE = {  # exactly at a threshold is not a breach
    "success_rate": {"completion_rate": 0.90},
    "steps_per_run": {"turns_avg": 8.0},
    "p99_duration": {"duration_seconds": Percentiles(p50=10, p95=60, p99=90)},
    "tokens_per_run": {"tokens_per_run": 10_000.0},
    "cost_per_run": {"cost_per_run_usd": Decimal("0.10")},
    "tool_error_rate": {"tool_error_rate": 0.05},
    "approval_rate": {"approvals": ApprovalStats(runs=8, rate=0.20)},
}


def test_every_run_rule_has_a_breach_case() -> None:
    assert {rule.name for rule in RUN_RULES} == set(BREACHES) == set(AT_THE_LINE)


@pytest.mark.parametrize("rule", sorted(BREACHES))
def test_each_rule_breaches_past_its_default_threshold_alone(rule: str) -> None:
    settings = Settings()
    results = {r.rule: r for r in evaluate(healthy(**BREACHES[rule]), NO_SPEND, settings=settings)}
    assert [name for name, r in results.items() if r.breached] == [rule]
    assert results[rule].judged and rule in results[rule].message
    at_line = {r.rule: r for r in evaluate(healthy(**AT_THE_LINE[rule]), NO_SPEND, settings=settings)}
    assert at_line[rule].judged and not at_line[rule].breached


def test_thresholds_come_from_settings_and_small_windows_are_not_judged() -> None:
    strict = Settings(alert_max_steps_per_run=4, alert_min_success_rate=0.99)
    results = {r.rule: r for r in evaluate(healthy(), NO_SPEND, settings=strict)}
    assert results["steps_per_run"].breached and results["success_rate"].breached
    few = {r.rule: r for r in evaluate(healthy(finished=19, completion_rate=0.1), NO_SPEND, settings=Settings())}
    assert not any(r.judged or r.breached for name, r in few.items() if not name.startswith("spend_"))
    assert "19 finished runs (needs 20)" in few["success_rate"].message
    spends = [r for r in few.values() if r.rule.startswith("spend_")]
    assert [r.rule for r in spends] == ["spend_50", "spend_80"] and not any(r.judged for r in spends)


def test_spend_rules_fire_at_their_fraction_of_the_cap() -> None:
    def spend(spent: str) -> dict[str, bool]:
        today = SpendToday(
            day=date(2026, 12, 2), spent_usd=Decimal(spent), reserved_usd=Decimal(0), cap_usd=Decimal(10)
        )
        return {
            r.rule: r.breached for r in evaluate(healthy(), today, settings=Settings()) if r.rule.startswith("spend")
        }

    assert spend("4.99") == {"spend_50": False, "spend_80": False}
    assert spend("5") == {"spend_50": True, "spend_80": False}
    assert spend("8.5") == {"spend_50": True, "spend_80": True}


def test_bad_alert_settings_are_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match="alert_spend_fractions"):
        Settings(alert_spend_fractions=[0.5, 1.5])
    with pytest.raises(ValueError, match="alert_window"):
        Settings(alert_window="an hour")


# --- real runs -------------------------------------------------------------------------------------------


def _broken(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    raise RuntimeError("the model server fell over")


async def _events(runtime: Runtime) -> list[dict[str, object]]:
    rows = await runtime.pool.fetch("SELECT payload FROM webhook_events WHERE type = 'alert.fired' ORDER BY created_at")
    return [row["payload"] for row in rows]


async def test_a_breach_fires_once_across_workers_and_again_only_after_it_held(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    settings = runtime.settings.model_copy(update={"alert_min_runs": 3, "alert_min_success_rate": 0.5})
    env = worker_env(settings, RESEARCH_AGENT_ALERT_MIN_RUNS="3", RESEARCH_AGENT_ALERT_MIN_SUCCESS_RATE="0.5")
    for _ in range(3):
        assert (await runtime.research(QUESTION, model=FunctionModel(_broken))).status == "failed"
    await runtime.research(QUESTION, model=research_model()[0])

    check = await check_alerts(runtime.pool, settings)
    [breached] = check.breached
    assert breached.rule == "success_rate" and breached.value == 0.25 and check.finished_runs == 4

    shown = run_cli(env, "alerts", "check", "--since", "1h")
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "BREACHED" in shown.stdout and "success_rate 0.25 < 0.50" in shown.stdout
    as_json = run_cli(env, "alerts", "check", "--json")
    document = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and document["ok"] is False
    assert re.fullmatch(r"\d+(\.\d+)?", document["spent_usd"]), document["spent_usd"]  # plain dollars, not 0E-8
    assert [r["rule"] for r in document["results"] if r["breached"]] == ["success_rate"]
    quiet = run_cli(worker_env(settings), "alerts", "check")  # the default 20 runs: nothing judged, exit 0
    assert quiet.returncode == 0 and "all hold" in quiet.stdout

    # Two workers checking at the same moment: one event.
    both = await asyncio.gather(
        fire_alerts(runtime.pool, check, fired_by="worker-a"), fire_alerts(runtime.pool, check, fired_by="worker-b")
    )
    assert sorted(len(fired) for fired in both) == [0, 1]
    [event] = await _events(runtime)
    assert event["rule"] == "success_rate" and event["value"] == 0.25 and event["fired_by"] in ("worker-a", "worker-b")
    assert await fire_alerts(runtime.pool, await check_alerts(runtime.pool, settings), fired_by="worker-a") == []
    assert len(await _events(runtime)) == 1, "still the same breach: no second event"

    # It holds again (three completed runs: 4 of 7), which re-arms it; a new breach (4 of 9) fires anew.
    for _ in range(3):
        await runtime.research(QUESTION, model=research_model()[0])
    holding = await check_alerts(runtime.pool, settings)
    assert holding.breached == [] and holding.finished_runs == 7
    assert await fire_alerts(runtime.pool, holding, fired_by="worker-a") == []
    assert await runtime.pool.fetchval("SELECT breached FROM alert_state WHERE rule = 'success_rate'") is False
    for _ in range(2):
        await runtime.research(QUESTION, model=FunctionModel(_broken))
    again = await fire_alerts(runtime.pool, await check_alerts(runtime.pool, settings), fired_by="worker-b")
    assert [r.rule for r in again] == ["success_rate"]
    assert [e["rule"] for e in await _events(runtime)] == ["success_rate", "success_rate"]


async def test_spend_alerts_fire_at_half_and_four_fifths_of_the_cap_once_a_day(runtime: Runtime) -> None:
    settings = runtime.settings.model_copy(update={"daily_cap_usd": Decimal("1.00")})
    spend = DailySpend(runtime.pool, cap_usd=settings.daily_cap_usd)

    async def spend_and_fire(amount: str) -> list[str]:
        hold = await spend.reserve(Decimal(amount), holder="test")
        assert hold is not None
        await spend.settle(hold, Decimal(amount))
        fired = await fire_alerts(runtime.pool, await check_alerts(runtime.pool, settings), fired_by="w")
        return [r.rule for r in fired]

    assert await spend_and_fire("0.40") == []
    assert await spend_and_fire("0.15") == ["spend_50"]
    assert await spend_and_fire("0.10") == []  # 65 %: 50 % fired today already
    assert await spend_and_fire("0.20") == ["spend_80"]
    assert await spend_and_fire("0.05") == []
    events = await _events(runtime)
    today = datetime.now(UTC).date().isoformat()
    assert [(e["rule"], e["spend_day"]) for e in events] == [("spend_50", today), ("spend_80", today)]
    assert "of the $1.00 daily cap" in str(events[1]["message"])


async def test_a_worker_checks_by_itself_and_delivers_to_the_alert_only_url(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    alerts_only = Receiver(http_server, path="/alerts")
    settings = runtime.settings.model_copy(
        update={
            "alert_min_runs": 2,
            "alert_check_seconds": 0.2,
            "alert_webhooks": [alerts_only.url],
            "webhook_secret": SecretStr(SECRET),
        }
    )
    rt = Runtime(pool=runtime.pool, settings=settings)
    for _ in range(3):
        await rt.submit(QUESTION, model=FunctionModel(_broken))
    model_name = (await rt.list_runs())[0].config.model
    worker = Worker(rt, concurrency=1, models={model_name: FunctionModel(_broken)})
    task = asyncio.create_task(worker.run())
    try:
        [request] = await alerts_only.wait_for(1)
        document = _document(request)
        assert document["type"] == "alert.fired" and document["data"]["rule"] == "success_rate"
        assert document["data"]["fired_by"] == worker.worker_id
        # More checks while it stays breached: no second alert (checked directly, then after the worker's own).
        monitor = AlertMonitor(rt.pool, settings, worker_id="another-worker")
        assert await monitor.check_once() == []
        assert len(await _events(rt)) == 1
    finally:
        worker.stop()
        await task
    finished = await rt.pool.fetchval("SELECT count(*) FROM webhook_events WHERE type = 'run.finished'")
    assert finished == 3, "the runs were announced too"
    assert len(alerts_only.received) == 1, "the alert-only URL hears alerts, not run.finished"


def test_dollars_in_the_json_are_plain() -> None:
    """Postgres numeric(14, 8) zero reads as Decimal('0E-8'); `alerts check --json` prints "0"."""
    check = AlertCheck(
        window_seconds=3600,
        window_start=datetime(2026, 12, 2, tzinfo=UTC),
        window_end=datetime(2026, 12, 2, 1, tzinfo=UTC),
        runs=0,
        finished_runs=0,
        spend_day=date(2026, 12, 2),
        spent_usd=Decimal("0E-8"),
        daily_cap_usd=Decimal("5.00"),
        results=[],
    )
    dumped = check.model_dump(mode="json")
    assert (dumped["spent_usd"], dumped["daily_cap_usd"]) == ("0", "5")
