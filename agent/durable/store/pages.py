"""Fetched pages: those a run cited from (`run_sources`) and the shared page cache (`page_cache`)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from agent.durable.store.records import Executor
from tools import FetchedPage


async def record_source(db: Executor, run_id: uuid.UUID, page: FetchedPage) -> None:
    await db.execute(
        "INSERT INTO run_sources (run_id, url, final_url, title, text, fetched_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, url) DO UPDATE"
        " SET final_url = EXCLUDED.final_url, title = EXCLUDED.title, text = EXCLUDED.text,"
        " fetched_at = EXCLUDED.fetched_at",
        run_id,
        page.url,
        page.final_url,
        page.title,
        page.text,
        page.fetched_at,
    )


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


async def put_page(db: Executor, page: FetchedPage, *, ttl: timedelta) -> None:
    if ttl <= timedelta(0):
        return
    await db.execute(
        """
        INSERT INTO page_cache (url, final_url, status_code, content_type, title, text, fetched_at, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8)
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
    )
