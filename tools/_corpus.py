"""A local document corpus in PostgreSQL, searched with its built-in full-text search.

This is the offline search backend (docs/decisions/0006-corpus-search.md): no embedding model can be
downloaded offline, while Postgres FTS ships with the database the agent already runs. Documents are
keyed by a stable URL — `corpus://{collection}/{path}`, `corpus://python-docs/...` for the Python
reference — so search hits, fetches and citations all speak URLs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import anyio
import asyncpg
import asyncpg.pool

from tools._search import MAX_SNIPPET_CHARS, MAX_TITLE_CHARS, SearchBackendError
from tools._types import FetchedPage, SearchHit

__all__ = [
    "CollectionStats",
    "CorpusDocument",
    "CorpusHit",
    "CorpusSearchBackend",
    "CorpusStore",
    "UpsertCounts",
    "UpsertOutcome",
]

UpsertOutcome = Literal["inserted", "updated", "unchanged"]

MAX_QUERY_CHARS = 1000
MAX_SEARCH_LIMIT = 50
HEADLINE_SOURCE_CHARS = 100_000
"""ts_headline re-parses the body it is given: bound that work on huge documents (the match may then
fall outside the snippet, which starts at the beginning instead)."""
# Empty selectors keep snippets verbatim (exact quotes stay quotable); fragments are joined by " … ".
_HEADLINE_OPTIONS = 'StartSel="", StopSel="", MaxWords=40, MinWords=15, MaxFragments=2, FragmentDelimiter=" … "'
_WHITESPACE = re.compile(r"\s+")

_Executor = asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


@dataclass(frozen=True, kw_only=True)
class CorpusDocument:
    """One document to index; `url` is its identity (re-indexing the same URL updates it)."""

    url: str
    collection: str
    source: str | None
    title: str
    body: str


@dataclass(frozen=True, kw_only=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True, kw_only=True)
class CorpusHit:
    """A ranked match; `snippet` is plain text taken verbatim from the body (fragments joined by " … ")."""

    title: str
    url: str
    snippet: str
    score: float


@dataclass(frozen=True, kw_only=True)
class CollectionStats:
    name: str
    documents: int
    characters: int
    updated_at: datetime


def _content_hash(*, collection: str, source: str | None, title: str, body: str) -> str:
    """What decides "unchanged": every indexed field, length-prefixed so fields cannot run together."""
    digest = hashlib.sha256()
    for part in (collection, source or "", title, body):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


# Unchanged documents (same hash) are filtered by the WHERE clause: no row is returned and nothing is
# rewritten, so the tsvector is not recomputed. `xmax = 0` tells a fresh insert from an update.
_UPSERT_SQL = """
INSERT INTO corpus_documents AS d (url, collection, source, title, body, content_hash)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
ON CONFLICT (url) DO UPDATE SET
    collection = EXCLUDED.collection,
    source = EXCLUDED.source,
    title = EXCLUDED.title,
    body = EXCLUDED.body,
    content_hash = EXCLUDED.content_hash,
    updated_at = now()
WHERE d.content_hash IS DISTINCT FROM EXCLUDED.content_hash
RETURNING (xmax = 0) AS inserted
"""

# websearch_to_tsquery ANDs the terms (and understands "quotes", OR and -negation). Questions in
# natural language often include a word no document has, so the fallback ORs plainto_tsquery's terms.
_STRICT_QUERY = "websearch_to_tsquery('english', $1)"
_ANY_TERM_QUERY = "replace(plainto_tsquery('english', $1)::text, ' & ', ' | ')::tsquery"
TITLE_BONUS = 0.5
"""Added to the (0..1) body rank times the share of the question's terms among the title's words
(`_TITLE_WORDS`): a page titled "The nonlocal statement" beats pages that merely mention nonlocal
statements in passing."""
ALL_TERMS_BONUS = 1 + TITLE_BONUS
"""Added to documents that match every term, so their scores sit above any-term matches' (< 1.5)."""


_TITLE_WORDS = (
    "to_tsvector('english', split_part(coalesce(d.title, ''), '(', 1))"
    " || to_tsvector('english', translate(coalesce("
    "substring(split_part(d.title, '(', 1) FROM '\\.([A-Za-z_][A-Za-z0-9_]*)\\s*$'), ''), '_', ' '))"
)
"""A title's words as `tsv` weighs them A (migration 0008): its subject, the words before its first
parenthesis (a signature's name, not its parameters), plus the last component of a dotted name there, split
at '_': "str.join" and "join" count as title words of `str.join(self, iterable, /)`, "self" and "str" do not."""


def _search_sql(tsquery: str) -> str:
    """Rank on the GIN-indexed tsv first, then build headlines only for the rows that are returned.

    ts_rank_cd normalization 1|32: divided by 1 + log(length) (long pages do not win on sheer size),
    then scaled to 0..1 so the title bonus has a fixed meaning.
    """
    return f"""
SELECT hit.title, hit.url, hit.score + $5::float8 AS score,
       ts_headline('english', left(d.body, {HEADLINE_SOURCE_CHARS}), hit.query, '{_HEADLINE_OPTIONS}') AS snippet
FROM (
    SELECT d.id, coalesce(d.title, '') AS title, d.url, q.query,
           ts_rank_cd(d.tsv, q.query, 1 | 32) + {TITLE_BONUS} * (
               SELECT count(*) FROM unnest(tsvector_to_array({_TITLE_WORDS})) t WHERE t = ANY(q.terms)
           )::float8 / greatest(cardinality(q.terms), 1) AS score
    FROM corpus_documents d,
         (SELECT {tsquery} AS query, tsvector_to_array(to_tsvector('english', $1)) AS terms) q
    WHERE d.tsv @@ q.query
      AND ($2::text IS NULL OR d.collection = $2)
      AND NOT (d.url = ANY($4::text[]))
    ORDER BY score DESC, d.id
    LIMIT $3
) hit
JOIN corpus_documents d ON d.id = hit.id
ORDER BY hit.score DESC, hit.id
"""


_STRICT_SEARCH = _search_sql(_STRICT_QUERY)
_ANY_TERM_SEARCH = _search_sql(_ANY_TERM_QUERY)


class CorpusStore:
    """Plain-SQL access to `corpus_documents` over a pool (or, inside `exclusive`, one connection)."""

    def __init__(self, pool: _Executor) -> None:
        self._db = pool

    async def upsert_document(
        self, *, url: str, collection: str, source: str | None, title: str, body: str
    ) -> UpsertOutcome:
        """Insert or update the document at `url`; an identical document is left untouched."""
        counts = await self.upsert_documents(
            [CorpusDocument(url=url, collection=collection, source=source, title=title, body=body)]
        )
        if counts.inserted:
            return "inserted"
        return "updated" if counts.updated else "unchanged"

    async def upsert_documents(self, documents: Sequence[CorpusDocument]) -> UpsertCounts:
        """Upsert a batch in one statement (one round trip); a later duplicate URL in the batch wins."""
        latest = {doc.url: doc for doc in documents}
        if not latest:
            return UpsertCounts()
        docs = list(latest.values())
        rows = await self._db.fetch(
            _UPSERT_SQL,
            [d.url for d in docs],
            [d.collection for d in docs],
            [d.source for d in docs],
            [d.title for d in docs],
            [d.body for d in docs],
            [_content_hash(collection=d.collection, source=d.source, title=d.title, body=d.body) for d in docs],
        )
        inserted = sum(1 for row in rows if row["inserted"])
        return UpsertCounts(inserted=inserted, updated=len(rows) - inserted, unchanged=len(docs) - len(rows))

    async def search(self, query: str, *, limit: int, collection: str | None = None) -> list[CorpusHit]:
        """Best matches first: documents with every term, then (filling up to `limit`) any term.

        Scores are comparable within one result list only; they decrease down the list.
        """
        text = query.strip()[:MAX_QUERY_CHARS]
        count = max(1, min(limit, MAX_SEARCH_LIMIT))
        if not text:
            return []
        rows = list(await self._db.fetch(_STRICT_SEARCH, text, collection, count, [], ALL_TERMS_BONUS))
        if len(rows) < count:
            found = [row["url"] for row in rows]
            rows.extend(await self._db.fetch(_ANY_TERM_SEARCH, text, collection, count - len(rows), found, 0.0))
        return [
            CorpusHit(title=row["title"], url=row["url"], snippet=row["snippet"], score=float(row["score"]))
            for row in rows
        ]

    async def get_document(self, url: str) -> FetchedPage | None:
        """The stored document as a page, so `fetch_url` can serve corpus URLs without a network."""
        row = await self._db.fetchrow("SELECT url, title, body, updated_at FROM corpus_documents WHERE url = $1", url)
        if row is None:
            return None
        return FetchedPage(
            url=row["url"],
            final_url=row["url"],
            status_code=200,
            content_type="text/plain",
            title=row["title"] or "",
            text=row["body"] or "",
            fetched_at=row["updated_at"],
        )

    async def collections(self) -> list[CollectionStats]:
        rows = await self._db.fetch(
            "SELECT collection, count(*) AS documents, coalesce(sum(length(body)), 0) AS characters,"
            " max(updated_at) AS updated_at FROM corpus_documents GROUP BY collection ORDER BY collection"
        )
        return [
            CollectionStats(
                name=row["collection"],
                documents=row["documents"],
                characters=int(row["characters"]),
                updated_at=row["updated_at"],
            )
            for row in rows
        ]

    async def count(self, collection: str | None = None) -> int:
        value = await self._db.fetchval(
            "SELECT count(*) FROM corpus_documents WHERE $1::text IS NULL OR collection = $1", collection
        )
        return int(value or 0)

    async def prune(self, collection: str, *, keep: Collection[str]) -> int:
        """Delete the collection's documents whose URL is not in `keep` (a rebuilt collection's leftovers)."""
        result = await self._db.execute(
            "DELETE FROM corpus_documents WHERE collection = $1 AND NOT (url = ANY($2::text[]))",
            collection,
            list(keep),
        )
        return int(result.rsplit(" ", 1)[-1])

    async def collection_version(self, name: str) -> str | None:
        """The version marker of a program-built collection, or None if it was never completed."""
        value = await self._db.fetchval("SELECT version FROM corpus_collections WHERE name = $1", name)
        return None if value is None else str(value)

    async def mark_collection(self, name: str, *, version: str) -> None:
        """Record that `name` is complete as produced by `version` (call inside `exclusive`)."""
        await self._db.execute(
            "INSERT INTO corpus_collections (name, version, documents) "
            "VALUES ($1, $2, (SELECT count(*) FROM corpus_documents WHERE collection = $1)) "
            "ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, documents = EXCLUDED.documents,"
            " indexed_at = now()",
            name,
            version,
        )

    @asynccontextmanager
    async def exclusive(self, collection: str) -> AsyncIterator[CorpusStore]:
        """A store bound to one transaction holding a lock on `collection`'s (re)build.

        Two processes building the same collection serialise here; the second then sees the first's
        marker. Everything written through the yielded store commits (or rolls back) together.
        """
        if not isinstance(self._db, asyncpg.Pool):
            raise RuntimeError("CorpusStore.exclusive needs a store created on a pool")
        async with self._db.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"corpus:{collection}")
            yield CorpusStore(conn)


def _squash(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _bound(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class CorpusSearchBackend:
    """The corpus as a `SearchBackend`.

    It does not use `clean_hits`: that keeps http(s) URLs only and drops fragments, but corpus URLs are
    `corpus://…`, and mirrored web pages may differ only by fragment (`statements.html#pass`).
    `prepare` (e.g. `lambda: ensure_python_docs(store)`) runs once, before the first search.
    """

    name = "corpus"

    def __init__(
        self,
        store: CorpusStore,
        *,
        collection: str | None = None,
        prepare: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._store = store
        self._collection = collection
        self._prepare = prepare
        self._prepared = prepare is None
        self._prepare_lock = anyio.Lock()

    async def search(self, query: str, *, max_results: int) -> list[SearchHit]:
        try:
            if not self._prepared:
                async with self._prepare_lock:
                    if not self._prepared and self._prepare is not None:
                        await self._prepare()
                        self._prepared = True
            hits = await self._store.search(query, limit=max(1, max_results), collection=self._collection)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise SearchBackendError(
                f"the local corpus could not be searched ({type(exc).__name__}: {_bound(str(exc), 200)})",
                retryable=True,
            ) from exc
        results: list[SearchHit] = []
        seen: set[str] = set()
        for hit in hits[: max(1, max_results)]:
            if hit.url in seen:
                continue
            seen.add(hit.url)
            results.append(
                SearchHit(
                    title=_bound(_squash(hit.title) or hit.url, MAX_TITLE_CHARS),
                    url=hit.url,
                    snippet=_bound(_squash(hit.snippet), MAX_SNIPPET_CHARS),
                )
            )
        return results
