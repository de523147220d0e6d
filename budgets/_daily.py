"""The daily spend cap: one row per UTC day in `daily_spend`, shared by every process on the database.

Before every model request a run reserves the request's worst-case cost with a single conditional
upsert, and settles the actual cost after; the reservation is refused once `spent + reserved + next`
would pass the cap, so any number of processes sharing the database can never together spend more
than the cap (see docs/decisions/0007-kill-switch-and-daily-cap.md). The tables are created by the
agent's migrations (0003_controls.sql); this module only needs a pool.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import Any

import asyncpg

from budgets._stops import SpendGate

_TODAY = "(now() AT TIME ZONE 'UTC')::date"
_CENT_FRACTION = Decimal("0.00000001")  # daily_spend columns are numeric(14, 8)


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
    """`amount` (never below zero) rounded up to what the `daily_spend` columns hold: a hold never falls short."""
    return max(amount, Decimal(0)).quantize(_CENT_FRACTION, rounding=ROUND_CEILING)
