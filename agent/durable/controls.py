"""Cross-run controls kept in PostgreSQL: the kill switch, and the daily spend cap as a run uses it.

Both are shared by every process on the database, which is what makes them controls rather than
per-run budgets (see docs/decisions/0007-kill-switch-and-daily-cap.md):

- `KillSwitch`: a row in `control_flags`. Flipping it notifies `research_agent_controls` in the same
  transaction; `ControlWatcher` hears that (LISTEN on its own connection, plus a poll every second in
  case a notification is missed) and stops every run its process is executing. `RESEARCH_AGENT_DISABLED=1`
  turns it on for one process without touching the database.
- `budgets.DailySpend`: one row per UTC day in `daily_spend`; a request reserves its
  worst case before it is sent, so all processes together never spend more than the cap.
- `RunSpend`: the two as `budgets.SpendHooks` for one run's `BudgetGuard`: a request never starts
  while the switch is on or when its worst case does not fit under today's cap.

The switch stays here, not in `budgets`, because it acts on runs (it stops them, and turning it off
queues again those it killed) and is followed by the worker and the API; see docs/decisions/0014-layout.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from agent.durable.background import BackgroundTask
from agent.durable.store import Connection, runs
from agent.errors import RunRefusedError
from budgets import DailySpend, Hold, SpendGate, SpendHooks

__all__ = [
    "CHANNEL",
    "DISABLED_ENV",
    "KILL_SWITCH",
    "ControlWatcher",
    "KillSwitch",
    "KillSwitchState",
    "RunSpend",
    "SharedControlWatcher",
    "SwitchChange",
    "ensure_accepting_runs",
]

CHANNEL = "research_agent_controls"
KILL_SWITCH = "kill_switch"
DISABLED_ENV = "RESEARCH_AGENT_DISABLED"


# --- kill switch ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class KillSwitchState:
    """The switch as one process sees it: the shared flag plus this process's env override."""

    flag: bool
    """The switch in Postgres, shared by every process."""
    env_override: bool
    """`RESEARCH_AGENT_DISABLED=1` in this process."""
    reason: str | None = None
    updated_at: datetime | None = None

    @property
    def on(self) -> bool:
        return self.flag or self.env_override

    def describe(self) -> str:
        if self.flag:
            why = f" ({self.reason})" if self.reason else ""
            return f"the kill switch is on{why}; turn it off with `research-agent kill-switch off`"
        if self.env_override:
            return f"research-agent is disabled in this process ({DISABLED_ENV}=1)"
        return "the kill switch is off"

    def to_json(self) -> dict[str, Any]:
        return {
            "on": self.on,
            "flag": self.flag,
            "env_override": self.env_override,
            "reason": self.reason,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


@dataclass(frozen=True, kw_only=True)
class SwitchChange:
    """What flipping the switch did."""

    state: KillSwitchState
    running: int = 0
    """Runs holding a live lease when the switch was turned on: they stop within about 2 s."""
    requeued: list[str]
    """Runs the switch had killed, queued again when it was turned off (workers resume them)."""


class KillSwitch:
    """The shared flag; `turn_on`/`turn_off` notify every listening process in the same transaction."""

    def __init__(self, pool: asyncpg.Pool, *, env_override: bool = False) -> None:
        self.pool = pool
        self.env_override = env_override

    async def state(self) -> KillSwitchState:
        row = await self.pool.fetchrow(
            "SELECT enabled, reason, updated_at FROM control_flags WHERE name = $1", KILL_SWITCH
        )
        return self._state(row)

    async def is_on(self) -> bool:
        return (await self.state()).on

    async def turn_on(self, *, reason: str | None = None) -> SwitchChange:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._set(conn, enabled=True, reason=reason)
            running = await runs.count_running(conn)
        return SwitchChange(state=self._state(row), running=running, requeued=[])

    async def turn_off(self, *, requeue: bool = True) -> SwitchChange:
        """Turn the switch off; with `requeue`, runs it killed are queued again to resume where they stopped."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._set(conn, enabled=False, reason=None)
            # As RunStore.requeue, for every run the switch stopped; their history is untouched.
            requeued = await runs.requeue_killed(conn, stop_reason="kill_switch") if requeue else []
        return SwitchChange(state=self._state(row), requeued=requeued)

    async def _set(self, conn: Connection, *, enabled: bool, reason: str | None) -> asyncpg.Record:
        row = await conn.fetchrow(
            "INSERT INTO control_flags (name, enabled, reason, updated_at) VALUES ($1, $2, $3, now())"
            " ON CONFLICT (name) DO UPDATE SET enabled = EXCLUDED.enabled, reason = EXCLUDED.reason,"
            " updated_at = EXCLUDED.updated_at RETURNING enabled, reason, updated_at",
            KILL_SWITCH,
            enabled,
            reason,
        )
        payload = json.dumps({"name": KILL_SWITCH, "enabled": enabled, "reason": (reason or "")[:500]})
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)  # delivered on commit
        assert row is not None
        return row

    def _state(self, row: asyncpg.Record | None) -> KillSwitchState:
        if row is None:
            return KillSwitchState(flag=False, env_override=self.env_override)
        return KillSwitchState(
            flag=bool(row["enabled"]),
            env_override=self.env_override,
            reason=row["reason"],
            updated_at=row["updated_at"],
        )


# --- per run --------------------------------------------------------------------------------------
@dataclass
class RunSpend:
    """The controls as `SpendHooks` for one execution of a run (one request in flight at a time)."""

    kill_switch: KillSwitch
    daily: DailySpend
    run_id: str | None = None
    _hold: Hold | None = None
    _recovered: bool = False

    def hooks(self) -> SpendHooks:
        return SpendHooks(reserve=self.reserve, settle=self.settle)

    async def reserve(self, amount: Decimal) -> None:
        state = await self.kill_switch.state()
        if state.on:
            raise SpendGate("kill_switch", f"stopped: {state.describe()}")
        await self.release()  # never two holds at once
        if not self._recovered and self.run_id is not None and self.daily.cap_usd is not None:
            # A previous execution of this run may have died mid-request, still holding its worst case.
            released = await self.daily.release_holds(self.run_id)
            if released:
                import logfire  # here, not at the top: reading the switch (`kill-switch status`) never loads telemetry

                logfire.info("released ${amount} held by a crashed execution", amount=str(released), run_id=self.run_id)
            self._recovered = True
        self._hold = await self.daily.reserve(amount, holder=self.run_id)

    async def settle(self, reserved: Decimal, actual: Decimal) -> None:
        hold, self._hold = self._hold, None
        await self.daily.settle(hold, actual)

    async def release(self) -> None:
        """Free what a request that never settled still holds (it was cancelled mid-flight): not billed."""
        hold, self._hold = self._hold, None
        if hold is not None:
            await self.daily.settle(hold, Decimal(0))


async def ensure_accepting_runs(pool: asyncpg.Pool, *, env_override: bool, cap_usd: Decimal | None) -> None:
    """Raise `RunRefusedError` when the kill switch is on or today's spend cap is already reached."""
    state = await KillSwitch(pool, env_override=env_override).state()
    if state.on:
        raise RunRefusedError(f"new runs are refused: {state.describe()}")
    if cap_usd is not None:
        today = await DailySpend(pool, cap_usd=cap_usd).today()
        if today.cap_reached:
            raise RunRefusedError(
                f"new runs are refused: the daily spend cap of ${cap_usd} is reached "
                f"(${today.spent_usd:.4f} spent on {today.day} UTC); it resets at midnight UTC, "
                "or raise RESEARCH_AGENT_DAILY_CAP_USD"
            )


# --- watching -------------------------------------------------------------------------------------
class ControlWatcher:
    """Follows the kill switch for one process and calls `on_kill` while it is on.

    A notification on `research_agent_controls` (LISTEN on a connection held for the purpose) acts
    within milliseconds; a poll every `poll_seconds` covers notifications missed while that connection
    was down, a switch that was already on at start, and the `RESEARCH_AGENT_DISABLED` override.
    `on_kill` is called on every check that finds the switch on, so it must be idempotent.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        on_kill: Callable[[KillSwitchState], object],
        env_override: bool = False,
        poll_seconds: float = 1.0,
    ) -> None:
        self.pool = pool
        self.kill_switch = KillSwitch(pool, env_override=env_override)
        self.poll_seconds = poll_seconds
        self._on_kill = on_kill
        self._state = KillSwitchState(flag=False, env_override=env_override)
        self._wake = asyncio.Event()
        self._conn: asyncpg.pool.PoolConnectionProxy[Any] | None = None
        self._background = BackgroundTask(self._watch, name="research-agent controls")

    @property
    def kill_switch_on(self) -> bool:
        return self._state.on

    async def __aenter__(self) -> ControlWatcher:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await self._listen()
            self._apply(await self.kill_switch.state())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            import logfire

            logfire.warn("control watcher: {error}; polling", error=str(exc))
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()
        await self._unlisten()

    async def _watch(self) -> None:
        failing = False
        while True:
            self._wake.clear()
            try:
                await self._listen()
                self._apply(await self.kill_switch.state())
                failing = False
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # a blip: keep polling
                if not failing:  # once per outage, not once a second
                    import logfire

                    logfire.warn("control watcher: {error}; polling until the database answers", error=str(exc))
                failing = True
                await self._unlisten()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    async def _listen(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        await self._unlisten()
        conn = await asyncio.wait_for(self.pool.acquire(), timeout=max(self.poll_seconds, 1.0))
        try:
            await conn.add_listener(CHANNEL, self._notified)
        except BaseException:
            await self.pool.release(conn)
            raise
        self._conn = conn

    async def _unlisten(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with suppress(Exception):
            if not conn.is_closed():
                await conn.remove_listener(CHANNEL, self._notified)
        with suppress(Exception):
            await self.pool.release(conn)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            data = json.loads(str(payload))
        except ValueError:
            data = {}
        if isinstance(data, dict) and data.get("name") == KILL_SWITCH and data.get("enabled"):
            # Act now; the check this wakes up confirms the state from the table.
            self._apply(
                KillSwitchState(flag=True, env_override=self._state.env_override, reason=data.get("reason") or None)
            )
        self._wake.set()

    def _apply(self, state: KillSwitchState) -> None:
        if state.on != self._state.on:
            import logfire

            logfire.warn("kill switch {state}", state="on" if state.on else "off", reason=state.reason)
        self._state = state
        if state.on:
            self._on_kill(state)


class SharedControlWatcher:
    """One `ControlWatcher` for any number of in-process runs (`Runtime.research`): one LISTEN connection.

    It runs while at least one run is being watched and stops when the last one finishes.
    """

    def __init__(self, pool: asyncpg.Pool, *, env_override: bool = False, poll_seconds: float = 1.0) -> None:
        self.pool = pool
        self.env_override = env_override
        self.poll_seconds = poll_seconds
        self._subscribers: list[Callable[[KillSwitchState], object]] = []
        self._watcher: ControlWatcher | None = None
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def watching(self, on_kill: Callable[[KillSwitchState], object]) -> AsyncIterator[None]:
        async with self._lock:
            self._subscribers.append(on_kill)
            if self._watcher is None:
                self._watcher = ControlWatcher(
                    self.pool, on_kill=self._fan_out, env_override=self.env_override, poll_seconds=self.poll_seconds
                )
                await self._watcher.start()
        try:
            yield
        finally:
            async with self._lock:
                self._subscribers.remove(on_kill)
                if not self._subscribers and self._watcher is not None:
                    watcher, self._watcher = self._watcher, None
                    await watcher.stop()

    def _fan_out(self, state: KillSwitchState) -> None:
        for on_kill in list(self._subscribers):
            on_kill(state)
