"""Cross-run controls kept in PostgreSQL: the kill switch and the daily spend cap.

Both are shared by every process on the database, which is what makes them controls rather than
per-run budgets (see docs/decisions/0007-kill-switch-and-daily-cap.md):

- `KillSwitch`: a row in `control_flags`. Flipping it notifies `research_agent_controls` in the same
  transaction; `ControlWatcher` hears that (LISTEN on its own connection, plus a poll every second in
  case a notification is missed) and stops every run its process is executing. `RESEARCH_AGENT_DISABLED=1`
  turns it on for one process without touching the database.
- `DailySpend`: one row per UTC day in `daily_spend`. Before every model request the run reserves the
  request's worst-case cost with a single conditional upsert, and settles the actual cost after; the
  reservation is refused once `spent + reserved + next` would pass the cap, so any number of
  processes sharing the database can never together spend more than the cap.
- `RunSpend`: the two as `budgets.SpendHooks` for one run's `BudgetGuard`: a request never starts
  while the switch is on or when its worst case does not fit under today's cap.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import Any

import asyncpg
import logfire

from agent.durable.store import Connection
from agent.errors import RunRefusedError
from budgets import SpendGate, SpendHooks

CHANNEL = "research_agent_controls"
KILL_SWITCH = "kill_switch"
DISABLED_ENV = "RESEARCH_AGENT_DISABLED"
_TODAY = "(now() AT TIME ZONE 'UTC')::date"
_CENT_FRACTION = Decimal("0.00000001")  # daily_spend columns are numeric(14, 8)


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
            running = await conn.fetchval(
                "SELECT count(*) FROM runs WHERE status = 'running' AND lease_expires_at > now()"
            )
        return SwitchChange(state=self._state(row), running=int(running), requeued=[])

    async def turn_off(self, *, requeue: bool = True) -> SwitchChange:
        """Turn the switch off; with `requeue`, runs it killed are queued again to resume where they stopped."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._set(conn, enabled=False, reason=None)
            requeued: list[asyncpg.Record] = []
            if requeue:
                # As RunStore.requeue, for every run the switch stopped; their history is untouched.
                requeued = await conn.fetch(
                    "UPDATE runs SET status = 'queued', stop_reason = NULL, error = NULL, lease_owner = NULL,"
                    " lease_expires_at = NULL, finished_at = NULL, updated_at = now()"
                    " WHERE status = 'killed' AND stop_reason = $1 RETURNING id",
                    KILL_SWITCH,
                )
        return SwitchChange(state=self._state(row), requeued=[str(r["id"]) for r in requeued])

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


# --- daily spend ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class SpendToday:
    """Today's (UTC) spend across all runs, against this process's cap."""

    day: date
    spent_usd: Decimal
    reserved_usd: Decimal
    cap_usd: Decimal | None

    @property
    def remaining_usd(self) -> Decimal | None:
        if self.cap_usd is None:
            return None
        return max(self.cap_usd - self.spent_usd - self.reserved_usd, Decimal(0))

    @property
    def cap_reached(self) -> bool:
        return self.cap_usd is not None and self.spent_usd >= self.cap_usd

    def to_json(self) -> dict[str, Any]:
        def text(value: Decimal | None) -> str | None:
            return None if value is None else f"{value.quantize(_CENT_FRACTION):f}"

        return {
            "day": self.day.isoformat(),
            "spent_usd": text(self.spent_usd),
            "reserved_usd": text(self.reserved_usd),
            "daily_cap_usd": None if self.cap_usd is None else f"{self.cap_usd:f}",
            "remaining_usd": text(self.remaining_usd),
            "cap_reached": self.cap_reached,
        }


@dataclass(frozen=True, kw_only=True)
class Hold:
    """One reservation against a day's cap, released exactly once (by `settle` or `release_holds`)."""

    token: uuid.UUID
    day: date
    amount: Decimal
    holder: str | None = None


class DailySpend:
    """Atomic reserve/settle against `daily_spend`; with no cap, spend is still recorded (for `spend`)."""

    def __init__(self, pool: asyncpg.Pool, *, cap_usd: Decimal | None) -> None:
        self.pool = pool
        self.cap_usd = cap_usd

    async def reserve(self, amount: Decimal, *, holder: str | None = None) -> Hold | None:
        """Hold `amount` (rounded up to the column's precision) against today's cap.

        Raises `SpendGate("daily_cap", ...)` when it does not fit. With no cap nothing is held (None).
        `holder` (a run id) lets a later execution release a hold its crashed predecessor left.
        """
        cap = self.cap_usd
        if cap is None:
            return None
        held = _round_up(amount)
        token = uuid.uuid4()
        # The upsert locks today's row and its WHERE sees the latest committed totals, so concurrent
        # reservations from any number of processes are serialised on that row. The hold is recorded
        # by the same statement.
        day: date | None = await self.pool.fetchval(
            f"""
            WITH reserved AS (
                INSERT INTO daily_spend AS d (day, reserved_usd) SELECT {_TODAY}, $1::numeric WHERE $1::numeric <= $2
                ON CONFLICT (day) DO UPDATE SET reserved_usd = d.reserved_usd + EXCLUDED.reserved_usd,
                       updated_at = now()
                WHERE d.spent_usd < $2 AND d.spent_usd + d.reserved_usd + EXCLUDED.reserved_usd <= $2
                RETURNING d.day
            ), hold AS (
                INSERT INTO daily_spend_holds (token, holder, day, amount)
                SELECT $3, $4, day, $1::numeric FROM reserved
            )
            SELECT day FROM reserved
            """,
            held,
            cap,
            token,
            holder,
        )
        if day is None:
            today = await self.today()
            in_flight = f", ${today.reserved_usd:.4f} held by requests in flight" if today.reserved_usd else ""
            raise SpendGate(
                "daily_cap",
                f"daily spend cap of ${cap} reached (${today.spent_usd:.4f} spent today (UTC){in_flight}; "
                f"the next request could cost up to ${held:.4f})",
            )
        return Hold(token=token, day=day, amount=held, holder=holder)

    async def settle(self, hold: Hold | None, actual: Decimal) -> None:
        """Record `actual` as spent (on the hold's day, else today) and release `hold` if still held."""
        await self.pool.execute(
            f"""
            WITH released AS (DELETE FROM daily_spend_holds WHERE token = $3 RETURNING amount)
            INSERT INTO daily_spend AS d (day, spent_usd) VALUES (coalesce($1, {_TODAY}), $2)
            ON CONFLICT (day) DO UPDATE SET spent_usd = d.spent_usd + EXCLUDED.spent_usd,
                   reserved_usd = greatest(d.reserved_usd - coalesce((SELECT sum(amount) FROM released), 0), 0),
                   updated_at = now()
            """,
            hold.day if hold else None,
            actual.quantize(_CENT_FRACTION, rounding=ROUND_HALF_EVEN),
            hold.token if hold else None,
        )

    async def release_holds(self, holder: str) -> Decimal:
        """Release what `holder` still holds from an execution that died mid-request (not billed)."""
        released = await self.pool.fetchval(
            """
            WITH hold AS (DELETE FROM daily_spend_holds WHERE holder = $1 RETURNING day, amount),
            per_day AS (SELECT day, sum(amount) AS amount FROM hold GROUP BY day),
            updated AS (
                UPDATE daily_spend AS d SET reserved_usd = greatest(d.reserved_usd - per_day.amount, 0),
                       updated_at = now()
                FROM per_day WHERE d.day = per_day.day
            )
            SELECT sum(amount) FROM hold
            """,
            holder,
        )
        return Decimal(0) if released is None else Decimal(released)

    async def today(self) -> SpendToday:
        row = await self.pool.fetchrow(
            f"SELECT {_TODAY} AS today, d.spent_usd, d.reserved_usd"
            f" FROM (SELECT 1) AS one LEFT JOIN daily_spend AS d ON d.day = {_TODAY}"
        )
        assert row is not None
        return SpendToday(
            day=row["today"],
            spent_usd=Decimal(0) if row["spent_usd"] is None else row["spent_usd"],
            reserved_usd=Decimal(0) if row["reserved_usd"] is None else row["reserved_usd"],
            cap_usd=self.cap_usd,
        )


def _round_up(amount: Decimal) -> Decimal:
    return max(amount, Decimal(0)).quantize(_CENT_FRACTION, rounding=ROUND_CEILING)


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
        self._task: asyncio.Task[None] | None = None

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
            logfire.warn("control watcher: {error}; polling", error=str(exc))
        self._task = asyncio.create_task(self._watch(), name="research-agent controls")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._unlisten()

    async def _watch(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._listen()
                self._apply(await self.kill_switch.state())
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # a blip: keep polling
                logfire.warn("control watcher: {error}", error=str(exc))
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
