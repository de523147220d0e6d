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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import typer

from agent.cli.console import err
from agent.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    import asyncpg

    from agent.api import Runtime
    from agent.durable.approvals import ApprovalStore
    from agent.durable.store import RunStore
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
        async with open_runtime(Settings()) as runtime:
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
        settings = Settings()
        pool = await open_database(settings)
        try:
            return await body(Stores(settings=settings, pool=pool, runs=RunStore(pool), approvals=ApprovalStore(pool)))
        finally:
            await pool.close()

    with exit_on_errors():
        return asyncio.run(main())


@contextmanager
def exit_on_errors(*, passthrough: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """A mistake the user can fix becomes one line on stderr and an exit code, never a traceback."""
    from agent.errors import ConfigurationError, InvalidQuestionError, ResearchAgentError, RunRefusedError

    try:
        yield
    except (InvalidQuestionError, RunRefusedError) as exc:
        err.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(ExitCode.REFUSED) from exc
    except passthrough:
        raise
    except (ConfigurationError, ResearchAgentError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(ExitCode.USAGE) from exc
    except ValueError as exc:  # settings validation (pydantic) and bad arguments
        err.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(ExitCode.USAGE) from exc
