"""The research agent: a pydantic-ai `Agent` with typed deps, three tools and a typed report.

Tools return structured failures instead of raising, so a bad URL or a dead search backend becomes
something the model can work around rather than a crashed run. The output validator sends
unverifiable citations back to the model; on its last retry it strips them instead, so a fabricated
citation never reaches a stored report.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Annotated, Any

import logfire
from pydantic import Field
from pydantic_ai import Agent, DeferredToolRequests, ModelRetry, RunContext

from agent.citations import UNCITED_ANSWER, as_not_answered, check_citations, is_uncited_answer, without_problems
from agent.deps import FetchOrigin, ResearchDeps
from agent.prompts import research_prompt
from agent.report import ResearchReport
from tools import (
    FetchedPage,
    FetchLimits,
    FetchUrlResult,
    LocalPages,
    PageCache,
    SearchResponse,
    ToolFailure,
    fetch_url,
    frame_untrusted,
    see_also_url,
    web_search,
)

OUTPUT_RETRIES = 3


class _SeenSources:
    """The run's page cache and corpus as `fetch_url` consults them, remembering which one served the page:
    the corpus, the cache, or neither (the network)."""

    def __init__(self, cache: PageCache, corpus: LocalPages | None) -> None:
        self._cache = cache
        self._corpus = corpus
        self.origin: FetchOrigin = "network"

    async def get_document(self, url: str) -> FetchedPage | None:
        page = None if self._corpus is None else await self._corpus.get_document(url)
        if page is not None:
            self.origin = "corpus"
        return page

    async def get_page(self, url: str) -> FetchedPage | None:
        page = await self._cache.get_page(url)
        if page is not None:
            self.origin = "cache"
        return page

    async def put_page(self, page: FetchedPage, *, ttl: timedelta) -> None:
        await self._cache.put_page(page, ttl=ttl)


SubQuestion = Annotated[str, Field(min_length=3, max_length=300)]


def _render_hits(response: SearchResponse) -> str:
    lines: list[str] = []
    for number, hit in enumerate(response.results, start=1):
        lines.append(f"{number}. {hit.title}\n   {hit.url}\n   {hit.snippet}")
    return "\n".join(lines) if lines else "(no results)"


def _with_see_also(report: ResearchReport) -> ResearchReport:
    """Each citation's public page (a python-docs corpus document's docs.python.org page), never the model's."""
    citations = [c.model_copy(update={"see_also": see_also_url(c.url)}) for c in report.citations]
    return report.model_copy(update={"citations": citations})


def _verified(report: ResearchReport, deps: ResearchDeps, *, last_attempt: bool) -> ResearchReport:
    """Every quote on a page this run fetched, and an answer only with a citation: otherwise the model is
    asked again (ModelRetry), and on its last attempt the bad citations are dropped and an uncited answer
    is marked not answered."""
    problems = check_citations(report, deps.sources)
    if problems:
        logfire.warn("unverifiable citations", run_id=deps.run_id, problems=[p.describe() for p in problems])
        if not last_attempt:
            fetched = ", ".join(sorted(deps.sources)) or "none yet"
            raise ModelRetry(
                "Some citations could not be verified:\n"
                + "\n".join(f"- {p.describe()}" for p in problems)
                + f"\nPages fetched in this run: {fetched}. Cite only fetched URLs and copy quotes verbatim"
                " from their text, or fetch the page first."
            )
        report = without_problems(report, problems)
    if is_uncited_answer(report):
        if not last_attempt:
            raise ModelRetry(UNCITED_ANSWER)
        report = as_not_answered(report)
    return _with_see_also(report)


ResearchOutput = ResearchReport | DeferredToolRequests
"""A report, or the tool calls a human must approve before the run can go on (see `agent.durable.approvals`)."""


def build_agent() -> Agent[ResearchDeps, ResearchOutput]:
    """A fresh agent; the model is chosen per run (a name or a `Model` instance)."""
    agent: Agent[ResearchDeps, ResearchOutput] = Agent(
        deps_type=ResearchDeps,
        output_type=[ResearchReport, DeferredToolRequests],
        instructions=research_prompt().text,
        retries={"tools": 2, "output": OUTPUT_RETRIES},
        name="research-agent",
    )

    @agent.tool
    async def record_plan(
        ctx: RunContext[ResearchDeps],
        sub_questions: Annotated[list[SubQuestion], Field(min_length=1, max_length=8)],
    ) -> dict[str, Any]:
        """Record your research plan: the sub-questions you will investigate. Call this once, first."""
        ctx.deps.plan = [q.strip() for q in sub_questions]
        logfire.info("plan recorded", run_id=ctx.deps.run_id, sub_questions=ctx.deps.plan)
        ctx.deps.emit("plan", "plan recorded", ctx.deps.plan)
        return {"ok": True, "plan": ctx.deps.plan}

    @agent.tool(name="web_search")
    async def web_search_tool(
        ctx: RunContext[ResearchDeps],
        query: str,
        max_results: int = 5,
    ) -> dict[str, Any] | ToolFailure:
        """Search the web. Returns titles, URLs and snippets (untrusted data)."""
        if ctx.deps.plan is None:
            return ToolFailure(error="invalid_argument", message="Call record_plan before searching.")
        ctx.deps.emit("search", f"search: {query}")
        outcome = await web_search(query, max_results, backend=ctx.deps.search)
        if isinstance(outcome, ToolFailure):
            ctx.deps.emit("tool_error", f"search failed: {outcome.message}")
            return outcome
        return {
            "ok": True,
            "query": outcome.query,
            "result_count": len(outcome.results),
            "results": frame_untrusted(_render_hits(outcome), source=f"web_search:{outcome.backend}"),
        }

    @agent.tool(name="fetch_url")
    async def fetch_url_tool(ctx: RunContext[ResearchDeps], url: str) -> FetchUrlResult | ToolFailure:
        """Fetch a web page and return its main text (untrusted data). Only fetched pages can be cited."""
        deps = ctx.deps
        config = deps.config
        deps.emit("fetch", f"fetch: {url}")
        seen = _SeenSources(deps.store, deps.corpus)
        result, page = await fetch_url(
            url,
            limits=FetchLimits(max_bytes=config.fetch_max_bytes, timeout_seconds=config.fetch_timeout_seconds),
            allow_hosts=frozenset(config.fetch_allow_hosts),
            max_chars=config.fetch_max_chars,
            cache=seen,
            cache_ttl=timedelta(seconds=config.page_cache_ttl_seconds),
            corpus=seen if deps.corpus is not None else None,
        )
        if page is not None:
            if ctx.tool_call_id is not None:  # the ledger records it (`tool_effects.origin`: `stats`' cache hit rate)
                deps.fetch_origins[ctx.tool_call_id] = seen.origin
            deps.sources[page.url] = page
            await deps.store.record_source(deps.run_id, page)
        if isinstance(result, ToolFailure):
            deps.emit("tool_error", f"fetch failed: {result.message}")
        return result

    @agent.output_validator
    async def verify_citations(ctx: RunContext[ResearchDeps], report: ResearchOutput) -> ResearchOutput:
        if isinstance(report, DeferredToolRequests):  # calls waiting for a human: nothing to verify yet
            return report
        return _verified(report, ctx.deps, last_attempt=ctx.last_attempt)

    return agent


@cache
def research_agent() -> Agent[ResearchDeps, ResearchOutput]:
    """The shared agent: it holds no per-run state, so one instance serves every run in a process."""
    return build_agent()
