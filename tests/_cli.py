"""The `research-agent` command line run in this process (typer's `CliRunner`) or as a real process.

Starting a real process imports the whole stack again (seconds on a small machine), so most CLI tests
invoke `agent.cli.app` in process: same arguments, same environment (`Settings()` reads it), same exit
codes and the same stdout/stderr split. `run_cli_process` keeps the real thing for the smoke tests and for
anything that must be another process (SIGKILL, crash and kill-switch drills, the embedded server).

Each in-process invocation runs in a thread of its own with its own event loop (`asyncio.run`, as in the
real process), so async tests can call it, as they called `subprocess.run`. Invocations are serialised:
`CliRunner` swaps the process-wide `sys.stdout`, `sys.stderr` and `os.environ` while a command runs.
The one thing a command does differently here: it does not configure Logfire for the whole test process
(instrumenting asyncpg and httpx would change every later test, and the telemetry tests bring their own).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from tests._processes import ROOT

_LOCK = threading.Lock()


@dataclass(frozen=True)
class CliResult:
    """What a test reads from a command: the fields of `subprocess.CompletedProcess` it uses."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run_cli(env: Mapping[str, str], *args: str) -> CliResult:
    """`research-agent *args` in this process, with exactly `env` as its environment."""
    if threading.current_thread() is threading.main_thread() and not _loop_running():
        return _invoke(env, args)  # `worker` installs signal handlers: only the main thread may
    outcome: list[CliResult | BaseException] = []

    def target() -> None:
        try:
            outcome.append(_invoke(env, args))
        except BaseException as exc:  # re-raised in the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=target, name=f"cli {' '.join(args[:2])}", daemon=True)
    thread.start()
    thread.join()
    [result] = outcome
    if isinstance(result, BaseException):
        raise result
    return result


def run_cli_process(env: Mapping[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m agent *args` as a real process (smoke tests, cross-process drills)."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _loop_running() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _invoke(env: Mapping[str, str], args: tuple[str, ...]) -> CliResult:
    from typer.testing import CliRunner

    from agent.cli import app

    # The child environment is `env`, no more: variables only this process has are unset meanwhile.
    overrides: dict[str, str | None] = {key: None for key in os.environ if key not in env}
    overrides.update(env)
    with _LOCK, _plain_consoles(), _telemetry_left_alone():
        result = CliRunner().invoke(app, list(args), env=overrides, catch_exceptions=True)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # What the interpreter prints when a command dies of an exception, so assertions see it.
        stderr += "".join(traceback.format_exception(result.exception))
    return CliResult(args=args, returncode=result.exit_code, stdout=result.stdout, stderr=stderr)


@contextmanager
def _plain_consoles() -> Iterator[None]:
    """Render as for a pipe, whatever this process's stdout was when the CLI module created its consoles."""
    from agent.cli import console as module

    consoles = [value for value in vars(module).values() if type(value).__name__ == "Console"]
    assert consoles, "agent.cli.console no longer holds the CLI's consoles"
    saved = [(console, console._color_system) for console in consoles]
    for console in consoles:
        console._color_system = None
    try:
        yield
    finally:
        for console, color_system in saved:
            console._color_system = color_system


@contextmanager
def _telemetry_left_alone() -> Iterator[None]:
    """`configure_telemetry` is idempotent ("the first call wins"): mark it done while a command runs."""
    from agent import telemetry

    saved = telemetry._configured  # fails loudly if the flag is renamed
    telemetry._configured = True
    try:
        yield
    finally:
        telemetry._configured = saved
