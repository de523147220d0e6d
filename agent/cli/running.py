"""How a command reaches the database, and how our errors become one clear line and an exit code.

Two ways in, by what the command needs; what each needs is imported inside it, never at the top, so that
`--help` and the commands that take the other way do not pay for it:

- `with_runtime(body)`: `agent.api.open_runtime`, i.e. telemetry, the runner and the models, for the
  commands that research, queue or replay runs and decide approvals.
- `with_stores(body)`: the settings and a pool with the run and approval stores, nothing else, for the
  read-only commands (`runs list|show`, `approvals list`, `kill-switch`, `spend`): they never import
  pydantic-ai, a provider SDK or logfire (tests/test_cli_startup.py), so they answer in a fraction of the
  time. Nothing they do is traced: they only read the tables, or flip the switch whose effect the
  workers trace.

Both load the settings with `Settings.load()` (a bad variable is named, exit 2) and print the slow steps of
a cold start (starting the embedded database, migrating it) to stderr as they happen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer
from rich.markup import escape

from agent.cli import console
from agent.cli.console import err
from agent.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    import asyncpg

    from agent.api import Runtime
    from agent.durable.approvals import ApprovalStore
    from agent.durable.store import RunStore
    from agent.events import StartupEvent
    from agent.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Stores:
    """What a read-only command works with: the settings, the pool, and the stores over it."""

    settings: Settings
    pool: asyncpg.Pool
    runs: RunStore
    approvals: ApprovalStore


def with_runtime(body: Callable[[Runtime], Awaitable[T]]) -> T:
    """Open the runtime, run `body`, and turn our errors into clear messages and exit codes."""
    import asyncio

    from agent.api import open_runtime
    from agent.settings import Settings
    from budgets import BudgetExceeded, SpendGate
    from tools import FetchError, SearchBackendError

    async def main() -> T:
        async with open_runtime(Settings.load(), on_startup=print_startup) as runtime:
            return await body(runtime)

    # `tools`/`budgets` errors share the root but were never a usage error: a traceback, as before.
    with exit_on_errors(passthrough=(BudgetExceeded, SpendGate, FetchError, SearchBackendError)):
        return asyncio.run(main())


def with_stores(body: Callable[[Stores], Awaitable[T]]) -> T:
    """Open a pool on the database (embedded or DATABASE_URL, migrated) without the runtime, run `body`, and
    turn our errors into clear messages and exit codes.

    No pass-through errors here: the modules that raise them (`BudgetGuard`, fetching, searching) are
    never imported on this path, so nothing can raise them.
    """
    import asyncio  # here, not at the top: `--help` does not need it

    from agent.durable.approvals import ApprovalStore
    from agent.durable.database import open_database
    from agent.durable.store import RunStore
    from agent.settings import Settings

    async def main() -> T:
        settings = Settings.load()
        pool = await open_database(settings, on_startup=print_startup)
        try:
            return await body(Stores(settings=settings, pool=pool, runs=RunStore(pool), approvals=ApprovalStore(pool)))
        finally:
            await pool.close()

    with exit_on_errors():
        return asyncio.run(main())


def print_startup(event: StartupEvent) -> None:
    """A slow step of a cold start, as it happens: `starting the database under ...`, `database ready in 2.1s`."""
    err.print(escape(event.message), style="dim")


@contextmanager
def exit_on_errors(*, passthrough: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """A mistake the user can fix becomes its message on stderr and an exit code, never a traceback
    (unless `--debug` asks for one)."""
    from agent.errors import InvalidQuestionError, ResearchAgentError, RunRefusedError

    try:
        yield
    except (InvalidQuestionError, RunRefusedError) as exc:
        fail("refused", exc, ExitCode.REFUSED)
    except passthrough:
        raise
    except ResearchAgentError as exc:  # ConfigurationError among them
        fail("error", exc, ExitCode.USAGE)
    except ValueError as exc:  # bad arguments
        fail("invalid configuration", exc, ExitCode.USAGE)


def fail(label: str, exc: BaseException, code: ExitCode) -> NoReturn:
    """`label: message` on stderr (escaped: rich would take `[groq]` in a message for markup), the traceback
    too with `--debug`, and exit with `code`. Call it from an `except` block."""
    if console.debug:
        err.print_exception()
    err.print(f"[red]{label}:[/red] {escape(str(exc))}")
    raise typer.Exit(code) from exc


@dataclass
class CtrlC:
    """Whether Ctrl-C reached `ask` while its run executed (see `interrupts_on_ctrl_c`)."""

    pressed: bool = False


@contextmanager
def interrupts_on_ctrl_c(runtime: Runtime) -> Iterator[CtrlC]:
    """While the block runs, Ctrl-C (SIGINT) interrupts the run `runtime.research` executes here: it ends
    `cancelled` / `interrupted` with its committed turns kept, and `research` returns that result to print.

    Enter it on the event loop. Only in the main thread, the one place signal handlers can be installed
    (in-process tests run commands in other threads): elsewhere this does nothing. Further presses call the
    idempotent `Runtime.interrupt` again; once the block is left after a press, SIGINT is ignored, since the
    command is only printing the result and exiting (`exit_now`): a second Ctrl-C leaves no traceback.
    """
    import asyncio
    import signal
    import threading

    state = CtrlC()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def on_sigint() -> None:
        if not state.pressed:
            state.pressed = True
            err.print("[yellow]interrupted[/yellow]: stopping the run and keeping what it did…")
        runtime.interrupt()

    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)  # asyncio.run's: cancel the main task
    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except NotImplementedError:  # Windows: asyncio.run's handling ends the run `cancelled` too, then exits 130
        installed = False
    else:
        installed = True
    if not installed:
        yield state
        return
    try:
        yield state
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if state.pressed:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        elif previous is not None:
            signal.signal(signal.SIGINT, previous)


def stop_on_signals(stop: Callable[[], None]) -> None:
    """`stop` on SIGINT and SIGTERM, for the rest of the event loop's life; only in the main thread (see above)."""
    import asyncio
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)


def exit_now(code: int) -> NoReturn:
    """Exit with `code` at once, without the interpreter's teardown. Only for Ctrl-C during `ask`.

    Why: the person pressed Ctrl-C and waits for their prompt. By the time this is called the run is
    stored `cancelled` (its finishing transaction committed about 10 ms after the signal), the pool is
    closed and the result is printed. What remained was the interpreter freeing the whole agent stack
    (pydantic-ai, provider SDKs, logfire, OpenTelemetry): 1.4-2.1 s of garbage collection on the dev
    machine, 0.65-0.77 s on a faster one, which nothing needs; with this, the process is gone 40-70 ms
    after the signal there (tests/test_interrupt.py prints it). The atexit handlers still run first
    (telemetry flushes its spans, the embedded server's handle list drops this process) and both streams
    are flushed: only the teardown is skipped.
    """
    import atexit
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
