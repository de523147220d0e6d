"""Fetched pages: those a run cited from (`run_sources`) and the shared page cache (`page_cache`)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from agent.durable.store.records import Executor
from agent.durable.store.runs import ensure_lease, lease_held
from tools import FetchedPage


async def record_source(db: Executor, run_id: uuid.UUID, page: FetchedPage, *, worker_id: str | None = None) -> None:
    """The page as the run read it (the text its citations are checked against). With `worker_id`, only
    while that worker holds the lease, in the same statement: a stalled worker cannot overwrite the
    text its successor fetched (`LeaseLostError` instead)."""
    status = await db.execute(
        "INSERT INTO run_sources (run_id, url, final_url, title, text, fetched_at)"
        " SELECT $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::timestamptz"
        f" WHERE {lease_held(run='$1', worker='$7')}"
        " ON CONFLICT (run_id, url) DO UPDATE"
        " SET final_url = EXCLUDED.final_url, title = EXCLUDED.title, text = EXCLUDED.text,"
        " fetched_at = EXCLUDED.fetched_at",
        run_id,
        page.url,
        page.final_url,
        page.title,
        page.text,
        page.fetched_at,
        worker_id,
    )
    if status == "INSERT 0 0":
        await ensure_lease(db, run_id, worker_id)


async def load_sources(db: Executor, run_id: uuid.UUID) -> dict[str, FetchedPage]:
    rows = await db.fetch("SELECT * FROM run_sources WHERE run_id = $1 ORDER BY fetched_at", run_id)
    return {
        r["url"]: FetchedPage(
            url=r["url"],
            final_url=r["final_url"],
            status_code=200,
            content_type="",
            title=r["title"],
            text=r["text"],
            fetched_at=r["fetched_at"],
        )
        for r in rows
    }


async def get_page(db: Executor, url: str) -> FetchedPage | None:
    row = await db.fetchrow("SELECT * FROM page_cache WHERE url = $1 AND expires_at > now()", url)
    if row is None:
        return None
    return FetchedPage(
        url=row["url"],
        final_url=row["final_url"],
        status_code=row["status_code"],
        content_type=row["content_type"],
        title=row["title"],
        text=row["text"],
        fetched_at=row["fetched_at"],
    )


async def put_page(
    db: Executor,
    page: FetchedPage,
    *,
    ttl: timedelta,
    run_id: uuid.UUID | None = None,
    worker_id: str | None = None,
) -> None:
    """Cache `page` under its requested URL until `ttl` passes (a later fetch of it replaces it). With
    `worker_id`, the page was fetched on behalf of the run `run_id`: it is written only while that worker holds
    the run's lease, checked in the same statement, so a stalled worker cannot replace the page its successor
    cached with the stale one it fetched (`LeaseLostError` instead, and nothing written)."""
    if worker_id is not None and run_id is None:
        raise ValueError("put_page on behalf of a worker needs the run it holds the lease of")
    if ttl <= timedelta(0):
        return
    status = await db.execute(
        f"""
        INSERT INTO page_cache (url, final_url, status_code, content_type, title, text, fetched_at, expires_at)
        SELECT $1::text, $2::text, $3::int, $4::text, $5::text, $6::text, $7::timestamptz, now() + $8::interval
        WHERE {lease_held(run="$9", worker="$10")}
        ON CONFLICT (url) DO UPDATE SET final_url = EXCLUDED.final_url, status_code = EXCLUDED.status_code,
            content_type = EXCLUDED.content_type, title = EXCLUDED.title, text = EXCLUDED.text,
            fetched_at = EXCLUDED.fetched_at, expires_at = EXCLUDED.expires_at
        """,
        page.url,
        page.final_url,
        page.status_code,
        page.content_type,
        page.title,
        page.text,
        page.fetched_at,
        ttl,
        run_id,
        worker_id,
    )
    if status == "INSERT 0 0" and run_id is not None:  # fenced out: say so (an upsert otherwise always writes)
        await ensure_lease(db, run_id, worker_id)


PURGE_EXPIRED_PAGES = (
    "DELETE FROM page_cache WHERE expires_at <= now() AND url IN ("
    " SELECT url FROM page_cache WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
)
"""One batch of `purge_expired_pages` (`$1` rows at most): a range scan of `page_cache_expires_idx`."""


async def purge_expired_pages(db: Executor, *, batch_size: int = 1_000) -> int:
    """Delete the `page_cache` rows past their `expires_at` (which `get_page` never serves); how many.

    In batches of `batch_size`, each its own statement, so a sweep never holds many locks for long; rows
    another sweep (another worker) holds are skipped, and a row refreshed meanwhile is no longer expired
    when its lock is taken, so it stays.
    """
    total = 0
    while True:
        status = await db.execute(PURGE_EXPIRED_PAGES, batch_size)
        deleted = int(status.rsplit(" ", 1)[-1])
        total += deleted
        if deleted < batch_size:
            return total
