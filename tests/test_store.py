"""The run store: migrations, atomic turns, commit-before-next-request, prefixes, page cache."""

from __future__ import annotations

import asyncio
import re
import typing
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RunUsage

from agent.api import Runtime
from agent.config import RunStatus, StopReason
from agent.durable.database import apply_migrations, load_migrations
from agent.durable.store import StepRecord, TurnCommit
from agent.errors import RunNotFoundError
from tests._http_server import LocalHTTPServer
from tests._web import install_web
from tests.scripted import ResearchScript
from tools import FetchedPage


async def test_migrations_are_numbered_and_idempotent(runtime: Runtime) -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert await apply_migrations(runtime.pool) == []  # already applied by the template
    versions = await runtime.pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in versions] == [m.version for m in migrations]


async def test_a_failed_turn_commit_leaves_nothing_behind(runtime: Runtime) -> None:
    store = runtime.store
    run = await runtime.submit("atomic turns?")
    await store.claim_run(run.id, worker_id="w", lease_seconds=30)
    first = [ModelRequest(parts=[UserPromptPart("atomic turns?")])]
    await store.commit_turn(
        run.id,
        worker_id="w",
        turn=TurnCommit(messages=first, first_seq=0, steps=[], usage=RunUsage(), elapsed_seconds=0.1),
    )
    # The second turn reuses message seq 0: the insert fails half way through the turn.
    bad = TurnCommit(
        messages=[ModelResponse(parts=[TextPart("a")])],
        first_seq=0,
        steps=[StepRecord(seq=0, kind="model", name="m")],
        usage=RunUsage(requests=1, input_tokens=10),
        elapsed_seconds=0.2,
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.commit_turn(run.id, worker_id="w", turn=bad)
    after = await store.get_run(run.id)
    assert after.usage.requests == 0 and after.message_count == 1
    assert await store.get_steps(run.id) == []
    assert len(await store.load_messages(run.id)) == 1


async def test_every_message_is_committed_before_the_next_model_request(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    script = ResearchScript(max_fetches=2)
    observed: list[tuple[int, int]] = []

    async def checking_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        committed = await runtime.pool.fetchval("SELECT count(*) FROM run_messages")
        observed.append((len(messages), committed))
        return script.decide(messages, info)

    result = await runtime.research("What changed in HTTP/3?", model=FunctionModel(checking_model))
    assert result.status == "completed"
    assert len(observed) == 5
    assert all(sent == committed for sent, committed in observed), observed


async def test_readers_never_see_half_a_turn(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server)
    script = ResearchScript(max_fetches=2)
    snapshots: list[tuple[int, int, int, int]] = []
    done = asyncio.Event()

    async def reader() -> None:
        async with runtime.pool.acquire() as conn:
            while not done.is_set():
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    row = await conn.fetchrow(
                        "SELECT r.message_count, r.requests,"
                        " (SELECT count(*) FROM run_messages m WHERE m.run_id = r.id) AS messages,"
                        " (SELECT count(*) FROM run_steps s WHERE s.run_id = r.id AND s.kind = 'model') AS models"
                        " FROM runs r LIMIT 1"
                    )
                if row is not None:
                    snapshots.append((row["message_count"], row["messages"], row["requests"], row["models"]))
                await asyncio.sleep(0)

    async def slow_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(0.02)
        return script.decide(messages, info)

    task = asyncio.create_task(reader())
    result = await runtime.research("What changed in HTTP/3?", model=FunctionModel(slow_model))
    done.set()
    await task
    assert result.status == "completed"
    assert len(snapshots) > 10
    # The run row, its messages and its model steps always move together.
    assert all(count == messages and requests == models for count, messages, requests, models in snapshots)


async def test_run_ids_resolve_by_unique_prefix(runtime: Runtime) -> None:
    run = await runtime.submit("prefix lookup")
    assert (await runtime.store.get_run(run.id[:8])).id == run.id
    with pytest.raises(RunNotFoundError, match="too short"):
        await runtime.store.get_run(run.id[:3])
    with pytest.raises(RunNotFoundError, match="no run"):
        await runtime.store.get_run("ffffffff")


async def test_page_cache_honours_its_ttl(runtime: Runtime) -> None:
    page = FetchedPage(
        url="https://example.org/a",
        final_url="https://example.org/a",
        status_code=200,
        content_type="text/html",
        title="A",
        text="body",
        fetched_at=datetime.now(UTC),
    )
    await runtime.store.put_page(page, ttl=timedelta(seconds=60))
    cached = await runtime.store.get_page(page.url)
    assert cached is not None and cached.text == "body"
    await runtime.store.put_page(page, ttl=timedelta(milliseconds=1))
    await asyncio.sleep(0.01)
    assert await runtime.store.get_page(page.url) is None


def _literal_values(tp: object) -> list[object]:
    """A Literal's values, nested Literals flattened (`StopReason` composes `budgets.CapReason`)."""
    values: list[object] = []
    for arg in typing.get_args(tp):
        values.extend(_literal_values(arg) if typing.get_origin(arg) is typing.Literal else [arg])
    return values


async def test_the_runs_check_constraints_equal_the_status_and_stop_reason_literals(runtime: Runtime) -> None:
    rows = await runtime.pool.fetch(
        "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint"
        " WHERE conrelid = 'runs'::regclass AND contype = 'c'"
    )
    checks = {r["conname"]: re.findall(r"'([a-z_]+)'::text", r["definition"]) for r in rows}
    for constraint, literal in (("runs_status_check", RunStatus), ("runs_stop_reason_check", StopReason)):
        values = _literal_values(literal)
        assert len(values) == len(set(values)), literal
        assert sorted(checks[constraint]) == sorted(values), constraint


async def test_the_database_refuses_an_unknown_status_or_stop_reason(runtime: Runtime) -> None:
    run = await runtime.submit("checked statuses")
    for column, value in (("status", "paused"), ("stop_reason", "bored")):
        with pytest.raises(asyncpg.CheckViolationError):
            await runtime.pool.execute(f"UPDATE runs SET {column} = $2 WHERE id = $1", uuid.UUID(run.id), value)
    assert (await runtime.store.get_run(run.id)).status == "queued"
