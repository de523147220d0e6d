"""The webhook outbox (migrations/0013_webhooks.sql): events, their deliveries, claims and outcomes.

Events announcing a state change are written by triggers in the transaction that makes the change;
`enqueue_event` writes any other event (an alert) in the caller's transaction. A dispatcher fans each event
out to one delivery per destination, claims due deliveries with `FOR UPDATE SKIP LOCKED` (so workers share
them) by pushing `next_attempt_at` past the attempt's time limit, and records the outcome under its claim.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from agent.durable.store.records import Executor, JSONValue

__all__ = [
    "EVENT_TYPES",
    "RETENTION_DAYS",
    "ClaimedDelivery",
    "claim_due",
    "enqueue_event",
    "fan_out",
    "prune",
    "record_failure",
    "record_success",
]

EVENT_TYPES: Final = ("run.finished", "approval.requested", "approval.expired", "alert.fired", "kill_switch.changed")
"""The events this project produces (the table takes any `word.word` type)."""
RETENTION_DAYS: Final = 7
"""Events (and their deliveries) older than this are deleted, delivered or not."""


@dataclass(frozen=True, kw_only=True)
class ClaimedDelivery:
    """A delivery this dispatcher holds until `next_attempt_at` (its claim), with its event."""

    id: str
    destination: str
    attempts: int
    """Including this one."""
    claim: str
    event_id: str
    event_type: str
    payload: JSONValue
    created_at: datetime


async def enqueue_event(db: Executor, event_type: str, payload: Mapping[str, JSONValue]) -> str:
    """Write one event for the webhooks; pass the connection of the transaction making the change it
    announces, so the event commits (or rolls back) with it. Returns the event id."""
    event_id = await db.fetchval(
        "INSERT INTO webhook_events (type, payload) VALUES ($1, $2) RETURNING id", event_type, dict(payload)
    )
    return str(event_id)


async def fan_out(
    db: Executor, destinations: Mapping[str, str], *, limit: int = 500, only: Mapping[str, str] | None = None
) -> int:
    """One delivery per destination (key -> label) for up to `limit` undispatched events; returns events taken.

    `only` (key -> event type) limits a destination to one type of event (the alert-only URLs); the others
    hear every event.
    """
    keys, labels = list(destinations), list(destinations.values())
    types = [(only or {}).get(key, "") for key in keys]
    taken = await db.fetchval(
        """
        WITH taken AS (
            SELECT id, type FROM webhook_events WHERE dispatched_at IS NULL
            ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED
        ), deliveries AS (
            INSERT INTO webhook_deliveries (event_id, destination, destination_label)
            SELECT taken.id, d.key, d.label
            FROM taken, unnest($1::text[], $2::text[], $4::text[]) AS d (key, label, only_type)
            WHERE d.only_type = '' OR d.only_type = taken.type
            ON CONFLICT (event_id, destination) DO NOTHING
        ), marked AS (
            UPDATE webhook_events SET dispatched_at = now() WHERE id IN (SELECT id FROM taken) RETURNING 1
        )
        SELECT count(*) FROM marked
        """,
        keys,
        labels,
        limit,
        types,
    )
    return int(taken)


async def claim_due(
    db: Executor, *, worker_id: str, destinations: Sequence[str], claim_seconds: float, limit: int
) -> list[ClaimedDelivery]:
    """Claim up to `limit` due deliveries to `destinations` (oldest first) for `claim_seconds`, counting an attempt.

    A claim that runs out (the worker died mid-delivery) makes the delivery due again: at least once.
    """
    claim = f"{worker_id}/{uuid.uuid4().hex[:12]}"
    rows = await db.fetch(
        """
        UPDATE webhook_deliveries d
        SET attempts = d.attempts + 1, claimed_by = $1, last_attempt_at = now(),
            next_attempt_at = now() + make_interval(secs => $3)
        FROM webhook_events e
        WHERE e.id = d.event_id AND d.id IN (
            SELECT id FROM webhook_deliveries
            WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now()
              AND destination = ANY($2::text[])
            ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED)
        RETURNING d.id, d.destination, d.attempts, d.claimed_by, e.id AS event_id, e.type, e.payload, e.created_at
        """,
        claim,
        list(destinations),
        claim_seconds,
        limit,
    )
    return [
        ClaimedDelivery(
            id=str(r["id"]),
            destination=r["destination"],
            attempts=r["attempts"],
            claim=r["claimed_by"],
            event_id=str(r["event_id"]),
            event_type=r["type"],
            payload=r["payload"],
            created_at=r["created_at"],
        )
        for r in rows
    ]


async def record_success(db: Executor, delivery: ClaimedDelivery, *, status: int) -> bool:
    """Mark delivered; False when the claim had run out and another worker took the delivery over."""
    done = await db.execute(
        "UPDATE webhook_deliveries SET delivered_at = now(), last_status = $3, claimed_by = NULL"
        " WHERE id = $1 AND claimed_by = $2 AND delivered_at IS NULL",
        uuid.UUID(delivery.id),
        delivery.claim,
        status,
    )
    return done == "UPDATE 1"


async def record_failure(
    db: Executor, delivery: ClaimedDelivery, *, error: str, status: int | None, retry_in: float | None
) -> bool:
    """Record a failed attempt: due again in `retry_in` seconds, or given up (`retry_in` None)."""
    done = await db.execute(
        """
        UPDATE webhook_deliveries
        SET last_error = $3, last_status = $4, claimed_by = NULL,
            next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at
                                   ELSE now() + make_interval(secs => $5::float8) END,
            gave_up_at = CASE WHEN $5::float8 IS NULL THEN now() END
        WHERE id = $1 AND claimed_by = $2 AND delivered_at IS NULL
        """,
        uuid.UUID(delivery.id),
        delivery.claim,
        error[:2000],
        status,
        retry_in,
    )
    return done == "UPDATE 1"


async def prune(db: Executor) -> int:
    """Delete events older than `RETENTION_DAYS` with their deliveries; returns the events deleted."""
    done = await db.execute(
        "DELETE FROM webhook_events WHERE created_at < now() - make_interval(days => $1)", RETENTION_DAYS
    )
    return int(done.split()[-1])
