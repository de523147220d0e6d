"""The daily spend cap: one atomic counter per UTC day in Postgres, shared by every run in every process.

Each model request reserves its worst-case cost before it is sent and settles the actual cost after,
so `spent + reserved` can never pass the cap, however many workers run at once.
"""

from __future__ import annotations

import asyncio
import json
import signal
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime
from agent.durable.controls import KillSwitch, RunSpend
from agent.errors import RunRefusedError
from agent.settings import Settings
from budgets import DailySpend, SpendGate
from tests._cli import run_cli as cli
from tests._http_server import LocalHTTPServer
from tests._processes import expire_lease, start_worker, wait_for, worker_env
from tests._web import install_web
from tests.scripted import ResearchScript

COSTLY_MODEL = "factory:tests._costly:costly_model"
CRASH_MODEL = "factory:tests.scripted:crash_model"
TODAY = "(now() AT TIME ZONE 'UTC')::date"


def capped(runtime: Runtime, cap: str) -> Runtime:
    """The same database seen by a process whose settings set a daily cap."""
    return Runtime(pool=runtime.pool, settings=runtime.settings.model_copy(update={"daily_cap_usd": Decimal(cap)}))


async def test_reserve_and_settle_keep_spent_plus_held_under_the_cap(runtime: Runtime) -> None:
    daily = DailySpend(runtime.pool, cap_usd=Decimal("1.00"))
    first = await daily.reserve(Decimal("0.4"))
    second = await daily.reserve(Decimal("0.5"))
    assert first is not None and second is not None and first.day == second.day
    with pytest.raises(SpendGate) as refused:
        await daily.reserve(Decimal("0.2"))  # 0.4 + 0.5 held: 0.2 more would pass $1.00
    assert refused.value.reason == "daily_cap"
    assert "daily spend cap of $1.00 reached" in str(refused.value)
    assert "$0.9000 held by requests in flight" in str(refused.value)

    today = await daily.today()
    assert (today.spent_usd, today.reserved_usd, today.remaining_usd) == (0, Decimal("0.9"), Decimal("0.1"))

    await daily.settle(first, Decimal("0.1"))  # cheaper than its worst case
    today = await daily.today()
    assert (today.spent_usd, today.reserved_usd) == (Decimal("0.1"), Decimal("0.5"))
    third = await daily.reserve(Decimal("0.4"))  # 0.1 + 0.5 + 0.4 fills the cap exactly: allowed
    with pytest.raises(SpendGate):
        await daily.reserve(Decimal("0.00000001"))

    await daily.settle(second, Decimal("0.5"))
    await daily.settle(third, Decimal("0.4"))
    await daily.settle(third, Decimal(0))  # a hold is released once, however often it is settled
    today = await daily.today()
    assert (today.spent_usd, today.reserved_usd, today.cap_reached) == (Decimal("1.0"), 0, True)
    with pytest.raises(SpendGate):
        await daily.reserve(Decimal(0))  # reached: even a free request is refused
    assert await runtime.pool.fetchval("SELECT count(*) FROM daily_spend_holds") == 0

    # With no cap nothing is held, but spend is still counted for `research-agent spend`.
    uncapped = DailySpend(runtime.pool, cap_usd=None)
    assert await uncapped.reserve(Decimal(5)) is None
    await uncapped.settle(None, Decimal("0.25"))
    today = await uncapped.today()
    assert (today.spent_usd, today.reserved_usd, today.remaining_usd) == (Decimal("1.25"), 0, None)


async def test_run_hooks_hold_one_request_at_a_time_and_never_release_twice(runtime: Runtime) -> None:
    daily = DailySpend(runtime.pool, cap_usd=Decimal(2))

    def run_spend(run_id: str | None = None) -> RunSpend:
        return RunSpend(kill_switch=KillSwitch(runtime.pool), daily=daily, run_id=run_id)

    async def totals() -> tuple[Decimal, Decimal]:
        today = await daily.today()
        return today.spent_usd, today.reserved_usd

    spend = run_spend()
    await spend.reserve(Decimal("0.123456781"))  # finer than the column: held rounded up
    assert await totals() == (0, Decimal("0.12345679"))
    await spend.settle(Decimal("0.123456781"), Decimal("0.05"))
    assert await totals() == (Decimal("0.05"), 0)

    await spend.reserve(Decimal("0.3"))
    await spend.release()  # the request was cancelled mid-flight: not billed, nothing left held
    await spend.release()
    assert await totals() == (Decimal("0.05"), 0)

    # An execution that died mid-request left its hold; the run's next execution releases it first.
    crashed = run_spend("run-1")
    await crashed.reserve(Decimal("0.4"))  # ... and its process is SIGKILLed here
    assert await totals() == (Decimal("0.05"), Decimal("0.4"))
    resumed = run_spend("run-1")
    await resumed.reserve(Decimal("0.1"))
    assert await totals() == (Decimal("0.05"), Decimal("0.1"))
    # The old execution was only paused (its lease expired): its late response is billed, but the hold
    # its successor already released is not released a second time.
    await crashed.settle(Decimal("0.4"), Decimal("0.01"))
    assert await totals() == (Decimal("0.06"), Decimal("0.1"))
    await resumed.settle(Decimal("0.1"), Decimal("0.02"))
    assert await totals() == (Decimal("0.08"), 0)
    assert await runtime.pool.fetchval("SELECT count(*) FROM daily_spend_holds") == 0

    await KillSwitch(runtime.pool).turn_on(reason="drill")
    with pytest.raises(SpendGate) as refused:
        await spend.reserve(Decimal("0.01"))
    assert refused.value.reason == "kill_switch" and "drill" in str(refused.value)
    assert await totals() == (Decimal("0.08"), 0)


async def test_concurrent_reservations_never_overcommit(runtime: Runtime) -> None:
    daily = DailySpend(runtime.pool, cap_usd=Decimal("0.10"))
    results = await asyncio.gather(*(daily.reserve(Decimal("0.01")) for _ in range(25)), return_exceptions=True)
    granted = [r for r in results if not isinstance(r, BaseException)]
    assert len(granted) == 10
    assert all(isinstance(r, SpendGate) and r.reason == "daily_cap" for r in results if isinstance(r, BaseException))
    assert (await daily.today()).reserved_usd == Decimal("0.10")


async def test_new_runs_are_refused_once_todays_cap_is_reached(runtime: Runtime, settings: Settings) -> None:
    limited = capped(runtime, "0.05")
    before = await limited.submit("Accepted while under the cap?", model=CRASH_MODEL)
    assert before.status == "queued"
    await DailySpend(runtime.pool, cap_usd=None).settle(None, Decimal("0.05"))

    with pytest.raises(RunRefusedError, match=r"daily spend cap of \$0\.05 is reached \(\$0\.0500 spent"):
        await limited.submit("Refused at the cap?", model=CRASH_MODEL)
    with pytest.raises(RunRefusedError):
        await limited.research("Refused in process too?", model=CRASH_MODEL)
    assert [r.id for r in await runtime.list_runs()] == [before.id]  # nothing was queued

    env = worker_env(settings, RESEARCH_AGENT_DAILY_CAP_USD="0.05")
    asked, shown, human, uncapped = await asyncio.gather(
        asyncio.to_thread(cli, env, "ask", "Refused from the command line?", "--model", CRASH_MODEL),
        asyncio.to_thread(cli, env, "spend", "--json"),
        asyncio.to_thread(cli, env, "spend"),
        asyncio.to_thread(cli, worker_env(settings), "spend"),
    )
    assert asked.returncode == 5, asked.stderr
    assert "refused" in asked.stderr and "daily spend cap of $0.05 is reached" in asked.stderr
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) | {"day": None} == {
        "day": None,
        "spent_usd": "0.05000000",
        "reserved_usd": "0.00000000",
        "daily_cap_usd": "0.05",
        "remaining_usd": "0.00000000",
        "cap_reached": True,
    }
    assert "$0.0500 spent of the $0.05 daily cap" in human.stdout and "cap reached" in human.stdout
    assert "no daily cap" in uncapped.stdout


async def test_a_running_run_stops_at_the_cap_and_keeps_its_partial_findings(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    urls = install_web(http_server)
    cap = Decimal("1.00")
    script = ResearchScript(max_fetches=2)
    calls = 0

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal calls
        calls += 1
        if calls == 3:  # meanwhile, other runs spend everything this request has not reserved
            await runtime.pool.execute(f"UPDATE daily_spend SET spent_usd = $1 - reserved_usd WHERE day = {TODAY}", cap)
        return script.decide(messages, info)

    model = FunctionModel(respond, model_name="scripted-research")
    result = await capped(runtime, str(cap)).research("What changed in HTTP/3 compared to HTTP/2?", model=model)

    assert (result.status, result.stop_reason) == ("budget_exceeded", "daily_cap")
    assert result.error and "daily spend cap of $1.00 reached" in result.error
    assert calls == 3 and result.usage.requests == 3  # the 4th request was never sent
    assert result.partial is not None
    assert result.partial.plan and "HTTP/3" in result.partial.plan[0]
    assert result.partial.sources == [urls[0]]  # the page fetched before the cap was reached

    view = await runtime.get_run(result.run_id)
    event = view.steps[-1]
    assert (event.kind, event.name, event.ok) == ("event", "daily_cap", False)
    assert "daily spend cap" in event.summary
    assert ("tool", "fetch_url") in [(s.kind, s.name) for s in view.steps]

    today = await DailySpend(runtime.pool, cap_usd=cap).today()
    assert today.reserved_usd == 0 and today.spent_usd <= cap


async def test_worker_processes_sharing_the_cap_never_exceed_it_together(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    cap = Decimal("0.35")  # 8 runs would cost about $0.54: each is 4 requests that use their whole allowance
    runs = [await runtime.submit(f"How does HTTP/3 differ, variant {i}?", model=COSTLY_MODEL) for i in range(8)]
    script_log = tmp_path / "calls.jsonl"
    env = worker_env(
        settings, RESEARCH_AGENT_DAILY_CAP_USD=str(cap), RA_SCRIPT_LOG=str(script_log), RA_SCRIPT_MAX_FETCHES="1"
    )
    workers = [
        start_worker(env, "--concurrency", "2", "--exit-when-idle", log=tmp_path / f"worker-{i}.log") for i in range(3)
    ]

    peak = Decimal(0)
    try:
        while any(w.poll() is None for w in workers):
            row = await runtime.pool.fetchrow(f"SELECT spent_usd, reserved_usd FROM daily_spend WHERE day = {TODAY}")
            if row is not None:
                peak = max(peak, row["spent_usd"] + row["reserved_usd"])
            await asyncio.sleep(0.01)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for i, w in enumerate(workers):
        assert await asyncio.to_thread(w.wait, 60) == 0, (tmp_path / f"worker-{i}.log").read_text()

    finals = [await runtime.store.get_run(r.id) for r in runs]
    today = await DailySpend(runtime.pool, cap_usd=cap).today()
    total_cost = sum((f.cost_usd for f in finals), Decimal(0))
    outcomes = sorted((f.status, f.stop_reason) for f in finals)
    print(f"cap ${cap}: spent ${today.spent_usd}, peak spent+held ${peak}, outcomes {outcomes}")
    assert today.spent_usd <= cap, outcomes
    assert total_cost <= cap
    assert today.spent_usd == total_cost  # every dollar counted today is charged to a run
    assert today.reserved_usd == 0  # every reservation was settled or released
    assert peak <= cap  # sampled while the workers ran: spent + held never passed the cap
    assert today.spent_usd >= cap * Decimal("0.4"), "the cap was never approached: the test proves nothing"
    assert set(outcomes) <= {("completed", "completed"), ("budget_exceeded", "daily_cap")}, outcomes
    assert ("budget_exceeded", "daily_cap") in outcomes
    calls = [json.loads(line) for line in script_log.read_text().splitlines()]
    assert len({c["pid"] for c in calls}) >= 2  # runs really were spread over several processes


async def test_a_worker_killed_mid_request_leaves_no_reservation_behind_once_the_run_resumes(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    run = await runtime.submit("What changed in HTTP/3 compared to HTTP/2?", model=CRASH_MODEL)
    mark = tmp_path / "hanging"
    env = worker_env(settings, RESEARCH_AGENT_DAILY_CAP_USD="1")
    daily = DailySpend(runtime.pool, cap_usd=Decimal(1))

    first = start_worker(dict(env, RA_SCRIPT_HANG_AT="7", RA_SCRIPT_HANG_MARK=str(mark)), log=tmp_path / "a.log")
    try:
        await asyncio.to_thread(wait_for, mark.exists, timeout=30, what="the model call to hang")
        held = (await daily.today()).reserved_usd
        assert held > 0  # the hanging request's worst case
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
    finally:
        if first.poll() is None:
            first.kill()
    assert (await daily.today()).reserved_usd == held  # the dead worker could not release it
    await expire_lease(runtime.pool, run.id)

    second = start_worker(env, "--max-runs", "1", log=tmp_path / "b.log")
    try:
        assert await asyncio.to_thread(second.wait, 60) == 0, (tmp_path / "b.log").read_text()
    finally:
        if second.poll() is None:
            second.kill()
    final = await runtime.store.get_run(run.id)
    assert final.status == "completed", final.error
    today = await daily.today()
    assert today.reserved_usd == 0  # released when the run resumed, not left until midnight
    assert today.spent_usd == final.cost_usd
