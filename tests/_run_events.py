"""The run-event invariant (migrations/0016_run_events.sql), checked on every test database before it is dropped.

A run in a finished status has exactly one terminal event after its last `run.requeued`, named after that
status; any other run has none. conftest.py checks it for every database a test used, so the whole suite's
workload (crashes, kill switch, approvals, caps, outages, hand-written rows) is held to it.
"""

from __future__ import annotations

import asyncpg

from agent.durable.store import FINISHED_STATUSES, TERMINAL_EVENTS

_VIOLATIONS = """
WITH requeued AS (
    SELECT run_id, max(id) AS id FROM run_events WHERE name = 'run.requeued' GROUP BY run_id
), terminal AS (
    SELECT e.run_id, array_agg(e.name ORDER BY e.id) AS names
    FROM run_events e LEFT JOIN requeued q USING (run_id)
    WHERE e.name = ANY($1::text[]) AND e.id > coalesce(q.id, 0)
    GROUP BY e.run_id
)
SELECT r.id, r.status, coalesce(t.names, '{}') AS names
FROM runs r LEFT JOIN terminal t ON t.run_id = r.id
"""


def terminal_event(status: str) -> str:
    return "run.limit_exceeded" if status == "budget_exceeded" else f"run.{status}"


async def terminal_event_violations(db: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    """One line per run that breaks the invariant; empty when every run keeps it."""
    problems = []
    for row in await db.fetch(_VIOLATIONS, sorted(TERMINAL_EVENTS)):
        names = list(row["names"])
        expected = [terminal_event(row["status"])] if row["status"] in FINISHED_STATUSES else []
        if names != expected:
            problems.append(f"run {row['id']} is {row['status']} with terminal events {names}, expected {expected}")
    return problems


async def check_run_events(url: str) -> list[str]:
    """The violations in the database at `url`; none when it cannot be reached (a test stopped its server)."""
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError):
        return []
    try:
        if await conn.fetchval("SELECT to_regclass('run_events') IS NULL"):
            return []  # a test that rolled the schema back
        return await terminal_event_violations(conn)
    finally:
        await conn.close()
