"""Every SQL statement on `provider_health` and `provider_rate_usage` (migration 0014).

The circuit breaker's state machine and the rate-limit ledger live in Postgres so every worker shares them;
each transition is one atomic statement (row locks + READ COMMITTED re-checks), so two workers never both
claim the half-open probe and never both take the last request of a window. Times are the database's
(`statement_timestamp()`), so workers with skewed clocks still agree on when a breaker may probe and where a
rate window starts. The policy around these statements (when to count a failure, how long to wait) is in
`agent.durable.providers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from agent.durable.store.records import Executor

BreakerState = str
"""`closed`, `open` or `half_open`."""


@dataclass(frozen=True, kw_only=True)
class Admission:
    """What the breaker said to one request."""

    allowed: bool
    probe: bool = False
    """This request is the half-open breaker's one probe: its outcome decides the state."""
    state: BreakerState = "closed"
    consecutive_failures: int = 0
    retry_in: float | None = None
    """Refused: seconds until the open period ends (None: a probe is in flight, ask again soon)."""


@dataclass(frozen=True, kw_only=True)
class Reservation:
    """A rate-limit reservation: granted, or the seconds until the window it did not fit in ends."""

    granted: bool
    window_start: datetime
    wait_seconds: float


@dataclass(frozen=True, kw_only=True)
class ProviderState:
    """One provider model's breaker and its current rate window, as `provider_health` reports it."""

    key: str
    state: BreakerState
    """The stored state; an `open` breaker whose open period has passed lets the next request probe."""
    consecutive_failures: int
    opened_at: datetime | None
    open_seconds_left: float | None
    """Open: seconds until a probe may go through (0 when one may now)."""
    probe_in_flight: bool
    half_open_successes: int
    last_error: str | None
    last_failure_at: datetime | None
    updated_at: datetime | None
    window_requests: int = 0
    """Requests reserved in the current rate window (0 without a rate limit, or none yet)."""
    window_tokens: int = 0


_ADMIT = """
WITH claimed AS (
    UPDATE provider_health
    SET state = 'half_open',
        probe_until = statement_timestamp() + make_interval(secs => $3::float8),
        half_open_successes = CASE WHEN state = 'open' THEN 0 ELSE half_open_successes END,
        updated_at = statement_timestamp()
    WHERE key = $1 AND (
        (state = 'open' AND opened_at + make_interval(secs => $2::float8) <= statement_timestamp())
        OR (state = 'half_open' AND (probe_until IS NULL OR probe_until < statement_timestamp())))
    RETURNING 1
)
SELECT h.state, h.consecutive_failures, EXISTS (SELECT 1 FROM claimed) AS probe,
       extract(epoch FROM h.opened_at + make_interval(secs => $2::float8) - statement_timestamp())::float8 AS open_left
FROM provider_health h WHERE h.key = $1
"""


async def admit(pool: asyncpg.Pool, key: str, *, open_seconds: float, probe_seconds: float) -> Admission:
    """Closed: allowed. Open past its period, or half-open with no probe in flight: allowed as THE probe
    (claimed atomically). Otherwise refused, with how long until the open period ends."""
    row = await pool.fetchrow(_ADMIT, key, open_seconds, probe_seconds)
    if row is None:
        return Admission(allowed=True)
    failures = int(row["consecutive_failures"])
    if row["probe"]:
        return Admission(allowed=True, probe=True, state="half_open", consecutive_failures=failures)
    state = str(row["state"])
    if state == "closed":
        return Admission(allowed=True, consecutive_failures=failures)
    left = float(row["open_left"]) if state == "open" and row["open_left"] is not None else None
    return Admission(allowed=False, state=state, consecutive_failures=failures, retry_in=left)


_FAILURE = """
INSERT INTO provider_health AS h (key, state, consecutive_failures, opened_at, last_error, last_failure_at, updated_at)
VALUES ($1, CASE WHEN $2::integer <= 1 THEN 'open' ELSE 'closed' END, 1,
        CASE WHEN $2::integer <= 1 THEN statement_timestamp() END, $3, statement_timestamp(), statement_timestamp())
ON CONFLICT (key) DO UPDATE SET
    consecutive_failures = h.consecutive_failures + 1,
    state = CASE WHEN h.state = 'closed' AND h.consecutive_failures + 1 >= $2::integer THEN 'open' ELSE h.state END,
    opened_at = CASE WHEN h.state = 'closed' AND h.consecutive_failures + 1 >= $2::integer
                     THEN statement_timestamp() ELSE h.opened_at END,
    last_error = EXCLUDED.last_error,
    last_failure_at = EXCLUDED.last_failure_at,
    updated_at = EXCLUDED.updated_at
RETURNING state, opened_at = last_failure_at AS opened_now, consecutive_failures
"""


async def record_failure(pool: asyncpg.Pool, key: str, *, threshold: int, error: str) -> bool:
    """A provider failure outside a probe; True when it opened the breaker (the `threshold`-th in a row).

    A failure while the breaker is already open or half-open (a request that started before it opened) is
    counted but changes nothing: only the probe's outcome moves a half-open breaker.
    """
    row = await pool.fetchrow(_FAILURE, key, threshold, error[:1000])
    return bool(row and row["opened_now"])


async def record_success(pool: asyncpg.Pool, key: str) -> None:
    """A success outside a probe: a closed breaker's count of consecutive failures starts again."""
    await pool.execute(
        "UPDATE provider_health SET consecutive_failures = 0, updated_at = statement_timestamp()"
        " WHERE key = $1 AND state = 'closed' AND consecutive_failures > 0",
        key,
    )


async def probe_failed(pool: asyncpg.Pool, key: str, *, error: str) -> None:
    """The probe failed: open again for a full period."""
    await pool.execute(
        "UPDATE provider_health SET state = 'open', opened_at = statement_timestamp(), probe_until = NULL,"
        " half_open_successes = 0, consecutive_failures = consecutive_failures + 1, last_error = $2,"
        " last_failure_at = statement_timestamp(), updated_at = statement_timestamp()"
        " WHERE key = $1 AND state = 'half_open'",
        key,
        error[:1000],
    )


async def probe_succeeded(pool: asyncpg.Pool, key: str, *, successes_to_close: int) -> bool:
    """The probe succeeded: one success more; closed (True) after `successes_to_close`, else the next probe may go."""
    row = await pool.fetchrow(
        "UPDATE provider_health SET half_open_successes = half_open_successes + 1, probe_until = NULL,"
        " state = CASE WHEN half_open_successes + 1 >= $2 THEN 'closed' ELSE 'half_open' END,"
        " consecutive_failures = CASE WHEN half_open_successes + 1 >= $2 THEN 0 ELSE consecutive_failures END,"
        " opened_at = CASE WHEN half_open_successes + 1 >= $2 THEN NULL ELSE opened_at END,"
        " updated_at = statement_timestamp()"
        " WHERE key = $1 AND state = 'half_open' RETURNING state",
        key,
        successes_to_close,
    )
    return bool(row and row["state"] == "closed")


async def probe_abandoned(pool: asyncpg.Pool, key: str) -> None:
    """The probe ended without a verdict (cancelled, or an error of ours): the next request may probe."""
    await pool.execute(
        "UPDATE provider_health SET probe_until = NULL, updated_at = statement_timestamp()"
        " WHERE key = $1 AND state = 'half_open'",
        key,
    )


_RESERVE = """
WITH w AS (
    SELECT to_timestamp(floor(extract(epoch FROM statement_timestamp())::float8 / $5::float8) * $5::float8) AS start
),
reserved AS (
    INSERT INTO provider_rate_usage AS u (key, window_start, requests, tokens)
    SELECT $1, w.start, 1, $2 FROM w
    ON CONFLICT (key, window_start) DO UPDATE
    SET requests = u.requests + 1, tokens = u.tokens + EXCLUDED.tokens
    WHERE ($3::integer IS NULL OR u.requests + 1 <= $3)
      AND ($4::bigint IS NULL OR u.tokens + EXCLUDED.tokens <= $4)
    RETURNING requests
)
SELECT w.start, EXISTS (SELECT 1 FROM reserved) AS granted,
       (SELECT requests FROM reserved) = 1 AS first,
       extract(epoch FROM w.start + make_interval(secs => $5::float8) - statement_timestamp())::float8 AS left_seconds
FROM w
"""


async def reserve(
    pool: asyncpg.Pool, key: str, *, tokens: int, rpm: int | None, tpm: int | None, window_seconds: float
) -> Reservation:
    """Reserve one request and `tokens` in the current window, if they fit under `rpm` / `tpm` (None: no limit).

    The first request of a window always fits (a request larger than `tpm` takes a window of its own: callers
    cap `tokens` at `tpm`). The first reservation of a window also deletes that key's rows of windows long past.
    """
    row = await pool.fetchrow(_RESERVE, key, tokens, rpm, tpm, window_seconds)
    assert row is not None
    if row["first"]:
        await pool.execute(
            "DELETE FROM provider_rate_usage WHERE key = $1"
            " AND window_start < $2::timestamptz - make_interval(secs => $3::float8)",
            key,
            row["start"],
            max(3_600.0, 10 * window_seconds),
        )
    return Reservation(
        granted=bool(row["granted"]), window_start=row["start"], wait_seconds=max(0.0, float(row["left_seconds"]))
    )


async def settle(pool: asyncpg.Pool, key: str, *, window_start: datetime, tokens_delta: int) -> None:
    """Replace a reservation's token bound by what the request really used (`tokens_delta` = used - reserved)."""
    await pool.execute(
        "UPDATE provider_rate_usage SET tokens = greatest(0, tokens + $3) WHERE key = $1 AND window_start = $2",
        key,
        window_start,
        tokens_delta,
    )


_HEALTH = """
WITH w AS (
    SELECT to_timestamp(floor(extract(epoch FROM statement_timestamp())::float8 / $2::float8) * $2::float8) AS start
),
keys AS (
    SELECT key FROM provider_health
    UNION SELECT u.key FROM provider_rate_usage u, w WHERE u.window_start = w.start
)
SELECT k.key, coalesce(h.state, 'closed') AS state, coalesce(h.consecutive_failures, 0) AS consecutive_failures,
       h.opened_at,
       CASE WHEN h.state = 'open' THEN greatest(
           0, extract(epoch FROM h.opened_at + make_interval(secs => $1::float8) - statement_timestamp())
       )::float8 END AS open_left,
       coalesce(h.state = 'half_open' AND h.probe_until IS NOT NULL AND h.probe_until >= statement_timestamp(), false)
           AS probe,
       coalesce(h.half_open_successes, 0) AS half_open_successes, h.last_error, h.last_failure_at, h.updated_at,
       coalesce(u.requests, 0) AS window_requests, coalesce(u.tokens, 0) AS window_tokens
FROM keys k
LEFT JOIN provider_health h ON h.key = k.key
LEFT JOIN provider_rate_usage u ON u.key = k.key AND u.window_start = (SELECT start FROM w)
ORDER BY k.key
"""


async def health(db: Executor, *, open_seconds: float, window_seconds: float) -> list[ProviderState]:
    """Every provider model a breaker has seen fail or that reserved in the current rate window (the others are
    closed with nothing reserved); on a pool, or in a caller's transaction (`stats`)."""
    rows = await db.fetch(_HEALTH, open_seconds, window_seconds)
    return [
        ProviderState(
            key=row["key"],
            state=row["state"],
            consecutive_failures=row["consecutive_failures"],
            opened_at=row["opened_at"],
            open_seconds_left=row["open_left"],
            probe_in_flight=bool(row["probe"]),
            half_open_successes=row["half_open_successes"],
            last_error=row["last_error"],
            last_failure_at=row["last_failure_at"],
            updated_at=row["updated_at"],
            window_requests=int(row["window_requests"]),
            window_tokens=int(row["window_tokens"]),
        )
        for row in rows
    ]
