"""Webhooks (issue 15, point 5; docs/decisions/0024-webhooks.md): signed JSON from an outbox, at least once.

A local receiver (tests/_http_server.py) records every delivery. Events are written in the transaction that
makes the change (run finished, approval parked or expired, kill switch flipped; `enqueue_event` for alerts)
and nothing is announced for a change that rolled back. A failing receiver is retried with backoff; URLs that
fetch_url may not reach are refused when the worker starts and at delivery; a worker SIGKILLed while the
receiver holds a delivery open leaves it to a second worker, which sends the same delivery id again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from agent.api import Runtime
from agent.durable.controls import KillSwitch
from agent.durable.database import APP_ROLE, create_pool
from agent.durable.store import FINISHED_STATUSES
from agent.durable.webhooks import WebhookDispatcher, check_webhooks, enqueue_event
from agent.durable.worker import Worker
from agent.errors import ConfigurationError
from agent.settings import Settings
from tests._cli import run_cli
from tests._http_server import LocalHTTPServer, Request, Response
from tests._processes import start_worker, until, worker_env
from tests._web import install_web
from tests.scripted import scripted_calls
from tools import BlockedURLError, ToolPolicyOverrides, post_webhook

CRASH_MODEL = "factory:tests.scripted:crash_model"
QUESTION = "What changed in HTTP/3 compared to HTTP/2?"
SECRET = "whsec-test-0123456789"


@dataclass
class Receiver:
    """A webhook endpoint on the local server: answers `statuses` in turn (then 200), can hold the first
    request open until `release` is set, and lets the test wait for the n-th request."""

    server: LocalHTTPServer
    path: str = "/hook"
    statuses: list[int] = field(default_factory=list)
    hold_first: bool = False
    received: list[tuple[float, Request]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.server.route(self.path, self._handle)

    @property
    def url(self) -> str:
        return self.server.url(self.path)

    def _handle(self, request: Request) -> Response:
        with self._changed:
            self.received.append((time.monotonic(), request))
            first = len(self.received) == 1
            status = self.statuses.pop(0) if self.statuses else 200
            self._changed.notify_all()
        if first and self.hold_first:
            self.release.wait(60)
        return Response(status=status, body=b"ok")

    async def wait_for(self, count: int, *, within: float = 30.0) -> list[Request]:
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: len(self.received) >= count, timeout=within)

        assert await asyncio.to_thread(wait), f"the receiver got {len(self.received)} of {count} requests"
        return [request for _, request in self.received]


def _document(request: Request) -> dict[str, Any]:
    assert request.method == "POST" and request.headers["content-type"] == "application/json"
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-research-agent-signature"], expected)
    document: dict[str, Any] = json.loads(request.body)
    assert request.headers["x-research-agent-event"] == document["type"]
    return document


def _hooked(settings: Settings, *urls: str, **extra: object) -> Settings:
    return settings.model_copy(update={"webhooks": list(urls), "webhook_secret": SecretStr(SECRET), **extra})


async def _deliveries(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT d.*, e.type FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id ORDER BY e.created_at"
    )


async def test_a_finished_run_is_announced_signed_once_with_its_outcome(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    receiver = Receiver(http_server)
    rt = Runtime(pool=runtime.pool, settings=_hooked(settings, receiver.url))
    run = await rt.submit(QUESTION, model=CRASH_MODEL)

    worker = Worker(rt, concurrency=1)  # the worker starts the dispatcher (agent/durable/worker.py)
    task = asyncio.create_task(worker.run())
    try:
        [request] = await receiver.wait_for(1)
        await until(lambda: _delivered(rt.pool, 1), what="the delivery to be recorded")
    finally:
        worker.stop()
        await task

    final = await rt.store.get_run(run.id)
    assert final.status == "completed", final.error
    document = _document(request)
    assert document["type"] == "run.finished"
    data = document["data"]
    assert data["run_id"] == run.id and data["status"] == "completed" and data["stop_reason"] == "completed"
    assert Decimal(data["cost_usd"]) == final.cost_usd > 0 and data["answered"] is True
    [delivery] = await _deliveries(rt.pool)
    assert request.headers["x-research-agent-delivery"] == str(delivery["id"])
    assert delivery["attempts"] == 1 and delivery["last_status"] == 200 and delivery["last_error"] is None
    assert delivery["destination_label"] == f"http://{http_server.host}"  # the URL itself is not stored
    stored = json.dumps([dict(r) for r in await rt.pool.fetch("SELECT * FROM webhook_events")], default=str)
    assert SECRET not in stored and receiver.path not in stored


async def _delivered(pool: asyncpg.Pool, count: int) -> bool:
    return int(await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE delivered_at IS NOT NULL")) >= count


async def test_approvals_and_the_kill_switch_are_announced_and_rollbacks_are_not(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    receiver = Receiver(http_server)
    hooked = _hooked(settings, receiver.url, tool_policy=ToolPolicyOverrides(tools={"fetch_url": "require_approval"}))
    rt = Runtime(pool=runtime.pool, settings=hooked)
    fetch = ("fetch_url", {"url": http_server.url("/pages/http3")})
    parked = await rt.research(
        "What is QUIC?", model=scripted_calls([("record_plan", {"sub_questions": ["?"]}), fetch])
    )
    assert parked.status == "awaiting_approval"
    await rt.pool.execute("UPDATE approvals SET expires_at = now() - interval '1 second'")  # its timeout passed
    [expired] = await rt.approvals.expire_due()

    switch = KillSwitch(rt.pool)
    await switch.turn_on(reason="incident 42")
    await switch.turn_on(reason="still on")  # no change: nothing to announce
    await switch.turn_off()
    await switch.turn_off()

    async with rt.pool.acquire() as conn:
        with pytest.raises(RuntimeError):  # changes that roll back announce nothing
            async with conn.transaction():
                await enqueue_event(conn, "alert.fired", {"rule": "rolled back"})
                await conn.execute("UPDATE runs SET status = 'failed' WHERE id = $1", uuid.UUID(parked.run_id))
                raise RuntimeError("rolled back")
        async with conn.transaction():  # what the alerts component will do, in its own transaction
            await enqueue_event(conn, "alert.fired", {"rule": "success_rate", "value": 0.8, "threshold": 0.9})

    dispatcher = WebhookDispatcher(rt.pool, hooked, worker_id="test")
    assert await dispatcher.deliver_due() == 5
    documents = sorted((_document(r) for r in await receiver.wait_for(5)), key=lambda d: str(d["created_at"]))
    by_type = {d["type"]: d["data"] for d in documents}
    assert sorted(by_type) == ["alert.fired", "approval.expired", "approval.requested", "kill_switch.changed"]
    assert [d["data"]["enabled"] for d in documents if d["type"] == "kill_switch.changed"] == [True, False]
    assert [d["data"]["reason"] for d in documents if d["type"] == "kill_switch.changed"] == ["incident 42", None]
    requested = by_type["approval.requested"]
    assert requested["run_id"] == parked.run_id and requested["tool"] == "fetch_url"
    assert requested["approval_id"] == expired.id and requested["args"] == {"url": http_server.url("/pages/http3")}
    assert by_type["approval.expired"]["approval_id"] == expired.id
    assert by_type["approval.expired"]["status"] == "expired"
    assert by_type["alert.fired"] == {"rule": "success_rate", "value": 0.8, "threshold": 0.9}
    assert len({r.headers["x-research-agent-delivery"] for r in await receiver.wait_for(5)}) == 5
    assert await dispatcher.deliver_due() == 0  # each delivered once


async def test_the_run_finished_trigger_covers_every_finished_status(database_url: str) -> None:
    """The trigger's list of terminal statuses is `FINISHED_STATUSES` (what `runs purge` calls finished)."""
    conn = await asyncpg.connect(database_url)
    try:
        definition = await conn.fetchval(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'runs_webhook_finished'"
        )
    finally:
        await conn.close()
    listed = definition.split("ARRAY[")[1].split("]")[0]
    assert sorted(part.split("'")[1] for part in listed.split(",")) == sorted(FINISHED_STATUSES)


async def test_a_failing_receiver_is_retried_with_backoff_and_given_up_after_the_cap(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer
) -> None:
    flaky = Receiver(http_server, path="/flaky", statuses=[500, 503])
    down = Receiver(http_server, path="/down", statuses=[500] * 10)
    hooked = _hooked(
        settings,
        flaky.url,
        down.url,
        webhook_backoff_seconds=0.2,
        webhook_backoff_max_seconds=5,
        webhook_max_attempts=3,
    )
    async with runtime.pool.acquire() as conn:
        await enqueue_event(conn, "alert.fired", {"rule": "p99_latency"})

    dispatcher = WebhookDispatcher(runtime.pool, hooked, worker_id="test")
    await dispatcher.start()
    try:
        await flaky.wait_for(3)
        await down.wait_for(3)
        await until(lambda: _settled(runtime.pool), what="both deliveries to settle")
    finally:
        await dispatcher.stop()

    rows = {r["destination_label"] + str(r["delivered_at"] is None): r for r in await _deliveries(runtime.pool)}
    assert len(rows) == 2
    [ok] = [r for r in rows.values() if r["delivered_at"] is not None]
    [gave_up] = [r for r in rows.values() if r["delivered_at"] is None]
    assert ok["attempts"] == 3 and ok["last_status"] == 200 and "HTTP 503" in ok["last_error"]
    assert gave_up["attempts"] == 3 and gave_up["gave_up_at"] is not None and "HTTP 500" in gave_up["last_error"]
    for receiver in (flaky, down):
        assert len(receiver.received) == 3  # exactly: the success is not repeated, the cap is kept
        assert len({r.headers["x-research-agent-delivery"] for _, r in receiver.received}) == 1
        assert len({r.body for _, r in receiver.received}) == 1  # the same signed body every time
        times = [at for at, _ in receiver.received]
        # Equal jitter: the n-th retry waits at least half of 0.2 s * 2**(n-1).
        assert times[1] - times[0] >= 0.1 and times[2] - times[1] >= 0.2
    delays = [dispatcher.retry_delay(n) for n in range(1, 12)]
    assert all(0.1 * 2 ** (n - 1) <= d <= 0.2 * 2 ** (n - 1) for n, d in enumerate(delays[:4], start=1))
    assert max(delays) <= 5 and min(delays[-3:]) >= 2.5  # capped at webhook_backoff_max_seconds


async def _settled(pool: asyncpg.Pool) -> bool:
    return not await pool.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE delivered_at IS NULL AND gave_up_at IS NULL"
    )


async def test_urls_the_fetch_rules_refuse_are_refused_at_start_and_at_delivery(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer
) -> None:
    receiver = Receiver(http_server)
    closed = settings.model_copy(update={"fetch_allow_hosts": []})

    # At configuration time: loopback without the allow-list, and cloud metadata even with it.
    for hooked, refused in [
        (_hooked(closed, receiver.url), receiver.url),
        (_hooked(settings, "http://169.254.169.254/latest/hook"), "http://169.254.169.254/latest/hook"),
    ]:
        with pytest.raises(ConfigurationError) as raised:
            await Worker(Runtime(pool=runtime.pool, settings=hooked)).run()
        assert "RESEARCH_AGENT_WEBHOOKS" in str(raised.value) and refused in str(raised.value)
        assert "RESEARCH_AGENT_FETCH_ALLOW_HOSTS" in str(raised.value)
    await check_webhooks(_hooked(settings, receiver.url))  # allow-listed like fetch_url: accepted
    env = worker_env(settings, RESEARCH_AGENT_WEBHOOKS=receiver.url, RESEARCH_AGENT_FETCH_ALLOW_HOSTS="")
    refused_cli = run_cli(env, "worker", "--exit-when-idle")
    assert refused_cli.returncode == 2 and "RESEARCH_AGENT_WEBHOOKS" in refused_cli.stderr, refused_cli.stderr
    assert "private/internal address 127.0.0.1" in refused_cli.stderr

    with pytest.raises(ConfigurationError, match="RESEARCH_AGENT_WEBHOOKS"):
        _env_settings(RESEARCH_AGENT_WEBHOOKS="ftp://example.com/hook")
    loaded = _env_settings(RESEARCH_AGENT_WEBHOOKS=f" {receiver.url} , https://hooks.example.com/x ")
    assert loaded.webhooks == [receiver.url, "https://hooks.example.com/x"]

    # At delivery (the name may resolve elsewhere by then): refused before connecting, recorded, retried later.
    with pytest.raises(BlockedURLError):
        await post_webhook(receiver.url, body=b"{}", headers={}, allow_hosts=frozenset(), timeout_seconds=5)
    async with runtime.pool.acquire() as conn:
        await enqueue_event(conn, "alert.fired", {"rule": "tool_error_rate"})
    dispatcher = WebhookDispatcher(runtime.pool, _hooked(closed, receiver.url), worker_id="test")  # start() skipped
    assert await dispatcher.deliver_due() == 1
    [delivery] = await _deliveries(runtime.pool)
    assert delivery["delivered_at"] is None and delivery["gave_up_at"] is None
    assert (
        "private/internal address 127.0.0.1" in delivery["last_error"] and receiver.path not in delivery["last_error"]
    )
    assert receiver.received == []


def _env_settings(**env: str) -> Settings:
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, env):
        return Settings.load()


async def test_a_delivery_cut_short_by_a_worker_crash_is_sent_again_by_another_worker(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    receiver = Receiver(http_server, hold_first=True)
    run = await runtime.submit(QUESTION, model=CRASH_MODEL)
    env = worker_env(
        settings,
        RESEARCH_AGENT_WEBHOOKS=receiver.url,
        RESEARCH_AGENT_WEBHOOK_SECRET=SECRET,
        RESEARCH_AGENT_WEBHOOK_TIMEOUT_SECONDS="2",  # a claim lasts 2 * 2 + 1 s
    )
    first = start_worker(env, log=tmp_path / "worker-a.log")
    try:
        [held] = await receiver.wait_for(1)  # the run finished and its event is being delivered: held open
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        receiver.release.set()
        if first.poll() is None:
            first.kill()
    [cut_short] = await _deliveries(runtime.pool)
    assert cut_short["attempts"] == 1 and cut_short["delivered_at"] is None and cut_short["last_error"] is None

    second = start_worker(env, log=tmp_path / "worker-b.log")
    try:
        again = (await receiver.wait_for(2))[1]  # only once the dead worker's claim has run out
        await until(lambda: _delivered(runtime.pool, 1), what="the second worker to record the delivery")
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=20)
        finally:
            if second.poll() is None:
                second.kill()

    assert again.headers["x-research-agent-delivery"] == held.headers["x-research-agent-delivery"]
    assert again.body == held.body and _document(again)["data"]["run_id"] == run.id
    [delivered] = await _deliveries(runtime.pool)
    assert delivered["attempts"] == 2 and delivered["last_status"] == 200
    assert receiver.received[1][0] - receiver.received[0][0] >= 4.0  # not before the claim ran out (5 s)
    assert len(receiver.received) == 2


@pytest.fixture
async def app_pool(app_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(app_url, max_size=3)
    try:
        assert await pool.fetchval("SELECT current_user") == APP_ROLE
        yield pool
    finally:
        await pool.close()


async def test_the_app_role_writes_claims_and_delivers_events(
    app_pool: asyncpg.Pool, settings: Settings, http_server: LocalHTTPServer
) -> None:
    receiver = Receiver(http_server)
    await KillSwitch(app_pool).turn_on(reason="drill")  # the trigger inserts as the app role
    async with app_pool.acquire() as conn:
        await enqueue_event(conn, "alert.fired", {"rule": "spend_80"})
    dispatcher = WebhookDispatcher(app_pool, _hooked(settings, receiver.url), worker_id="app")
    assert await dispatcher.deliver_due() == 2
    assert sorted(_document(r)["type"] for r in await receiver.wait_for(2)) == ["alert.fired", "kill_switch.changed"]
    assert await _delivered(app_pool, 2)
