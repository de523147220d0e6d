"""Human approval: a call the policy wants approved parks the run durably; any process decides; a worker resumes.

The cross-process test uses real worker processes: one runs until the run parks, the
`research-agent approvals` command decides (from the test process, tests/_cli.py), and later workers
finish the run.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from pydantic_ai.messages import ModelRequest, ToolReturnPart

from agent.api import Runtime
from agent.durable.worker import Worker
from agent.errors import ApprovalError
from agent.models import model_label
from agent.settings import Settings
from tests._cli import run_cli as _cli
from tests._http_server import LocalHTTPServer
from tests._processes import start_worker, worker_env
from tests._web import install_web
from tests.scripted import scripted_calls
from tools import ToolPolicyOverrides

CRASH_MODEL = "factory:tests.scripted:crash_model"
QUESTION = "What changed in HTTP/3 compared to HTTP/2?"
NEEDS_APPROVAL = ToolPolicyOverrides(tools={"fetch_url": "require_approval"})


def _worker_until_idle(env: dict[str, str], log: Path) -> None:
    worker = start_worker(env, "--exit-when-idle", log=log)
    try:
        worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise
    assert worker.returncode == 0, log.read_text()


async def _pending_id(runtime: Runtime, run_id: str) -> str:
    pending = await runtime.approvals.find(run_id=run_id, pending_only=True)
    assert len(pending) == 1, pending
    return pending[0].id


async def test_approval_parks_the_run_and_decisions_from_other_processes_resume_it(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    rt = Runtime(pool=runtime.pool, settings=settings.model_copy(update={"tool_policy": NEEDS_APPROVAL}))
    run = await rt.submit(QUESTION, model=CRASH_MODEL)
    script_log = tmp_path / "model-calls.jsonl"
    env = worker_env(settings, RA_SCRIPT_LOG=str(script_log))

    # 1. A worker runs plan + search, then the first fetch needs a human: the run parks and the worker goes idle.
    _worker_until_idle(env, tmp_path / "worker-1.log")
    parked = await rt.store.get_run(run.id)
    assert parked.status == "awaiting_approval" and parked.lease_owner is None
    assert parked.stop_reason == "approval_required"
    assert sum(http_server.hits[p] for p in ("/pages/http3", "/pages/http2")) == 0  # nothing fetched yet
    listed = _cli(env, "approvals", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [request] = json.loads(listed.stdout)
    assert request["run_id"] == run.id and request["tool"] == "fetch_url" and request["status"] == "pending"
    assert request["args"]["url"].endswith("/pages/http3")

    # 2. Approved from another process: the run is queued, and a new worker fetches the page.
    approved = _cli(env, "approvals", "approve", request["id"], "--note", "docs site is fine")
    assert approved.returncode == 0, approved.stderr
    assert (await rt.store.get_run(run.id)).status == "queued"
    again = _cli(env, "approvals", "approve", request["id"])
    assert again.returncode == 2 and "already approved" in again.stderr
    _worker_until_idle(env, tmp_path / "worker-2.log")
    assert http_server.hits["/pages/http3"] == 1
    second = await rt.store.get_run(run.id)
    assert second.status == "awaiting_approval"  # the next fetch needs a human too

    # 3. Rejected with a reason: the model is told and answers from what it has.
    rejection = await _pending_id(rt, run.id)
    rejected = _cli(env, "approvals", "reject", rejection, "--reason", "internal mirror, not allowed")
    assert rejected.returncode == 0, rejected.stderr
    _worker_until_idle(env, tmp_path / "worker-3.log")

    final = await rt.store.get_run(run.id)
    assert final.status == "completed", final.error
    assert final.report and [c["url"] for c in final.report["citations"]] == [http_server.url("/pages/http3")]
    assert http_server.hits["/pages/http2"] == 0
    denied = [
        part
        for message in await rt.store.load_messages(run.id)
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart) and part.outcome == "denied"
    ]
    assert len(denied) == 1 and "internal mirror, not allowed" in str(denied[0].content)
    audit = [(row.tool, row.decision) for row in await rt.store.audit_rows(run.id)]
    assert audit == [
        ("record_plan", "allow"),
        ("web_search", "allow"),
        ("fetch_url", "require_approval"),
        ("fetch_url", "approved"),
        ("fetch_url", "allow"),
        ("fetch_url", "require_approval"),
        ("fetch_url", "rejected"),
    ]
    calls = [json.loads(line) for line in script_log.read_text().splitlines()]
    assert all(n == 1 for n in Counter(c["messages"] for c in calls).values()), f"a model call was repeated: {calls}"
    view = await rt.get_run(run.id)
    assert [(a.status, a.decided_by is not None) for a in view.approvals] == [("approved", True), ("rejected", True)]
    assert view.approvals[0].note == "docs site is fine"


async def test_an_undecided_request_times_out_as_a_rejection_and_asking_again_is_refused(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    page = http_server.url("/pages/http3")
    rt = Runtime(
        pool=runtime.pool,
        settings=settings.model_copy(update={"tool_policy": NEEDS_APPROVAL, "approval_timeout_seconds": 0.3}),
    )
    fetch = ("fetch_url", {"url": page})
    model = scripted_calls([("record_plan", {"sub_questions": ["QUIC?"]}), fetch, fetch])
    result = await rt.research("What is QUIC?", model=model)
    assert result.status == "awaiting_approval" and result.report is None

    with pytest.raises(ApprovalError, match="no approval request"):
        await rt.decide_approval("ap_doesnotexist", approve=True)
    await asyncio.sleep(0.4)
    with pytest.raises(ApprovalError, match="timed out"):  # too late to approve
        await rt.decide_approval(await _pending_id_any(rt, result.run_id), approve=True)

    assert (await rt.store.get_run(result.run_id)).status == "queued"
    worker = Worker(rt, exit_when_idle=True, models={model_label(model): model}, concurrency=1)
    [final] = await worker.run()

    assert final.status == "completed", final.error
    assert http_server.hits["/pages/http3"] == 0
    rows = await rt.store.audit_rows(result.run_id)
    assert [(r.tool, r.decision) for r in rows][1:] == [
        ("fetch_url", "require_approval"),
        ("fetch_url", "expired"),
        ("fetch_url", "deny"),  # the model asked again: a human already refused it
    ]
    assert "already refused" in rows[-1].reason
    messages = await rt.store.load_messages(result.run_id)
    returns = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]
    timed_out = [p for p in returns if p.outcome == "denied"]
    assert len(timed_out) == 1 and "timed out" in str(timed_out[0].content)


async def _pending_id_any(runtime: Runtime, run_id: str) -> str:
    """The run's one request, pending or overdue (not yet expired by a sweep)."""
    [request] = await runtime.approvals.find(run_id=run_id, pending_only=False)
    return request.id


async def test_approvals_table_rejects_unknown_statuses(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO approvals (id, run_id, tool_call_id, tool, reason, status, expires_at)"
                " VALUES ('ap_x', gen_random_uuid(), 'c', 't', 'r', 'maybe', now())"
            )
    finally:
        await conn.close()


async def test_ask_exits_6_and_names_the_pending_requests(
    runtime: Runtime, settings: Settings, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    env = worker_env(
        settings,
        RESEARCH_AGENT_MODEL=CRASH_MODEL,
        RESEARCH_AGENT_TOOL_POLICY=NEEDS_APPROVAL.model_dump_json(),
    )
    asked = _cli(env, "ask", QUESTION)

    assert asked.returncode == 6, asked.stdout + asked.stderr
    [pending] = await runtime.approvals.find(pending_only=True)
    assert pending.id in asked.stdout and "approvals approve" in asked.stdout
    assert (await runtime.store.get_run(pending.run_id)).status == "awaiting_approval"
