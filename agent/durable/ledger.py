"""A capability that makes tool calls durable and crash-proof.

A tool with outside effects (search, fetch) runs at most once per tool call id: its result is
written to the `tool_effects` ledger as soon as it returns, and a resumed run that re-issues the same
call gets the recorded result instead of repeating the work. Unexpected tool exceptions become
structured failures the model can read, so a tool bug never crashes a run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import logfire
from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.capabilities.abstract import ValidatedToolArgs, WrapToolExecuteHandler
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import ToolDefinition
from pydantic_core import to_jsonable_python

from agent.deps import ResearchDeps
from agent.durable.outage import database_unavailable
from agent.durable.store import ToolEffect
from agent.errors import LeaseLostError


@dataclass
class ToolLedger(AbstractCapability[ResearchDeps]):
    recorded: dict[str, ToolEffect] = field(default_factory=dict)
    """Results already in the ledger when the run (re)started, by tool call id."""
    durable_tools: frozenset[str] = frozenset({"web_search", "fetch_url"})
    latencies_ms: dict[str, float] = field(default_factory=dict)

    async def wrap_tool_execute(
        self,
        ctx: RunContext[ResearchDeps],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: ValidatedToolArgs,
        handler: WrapToolExecuteHandler,
    ) -> Any:
        deps = ctx.deps
        durable = call.tool_name in self.durable_tools
        if durable:
            recorded = self.recorded.get(call.tool_call_id)
            if recorded is not None:
                logfire.info(
                    "tool result replayed from ledger",
                    run_id=deps.run_id,
                    tool=call.tool_name,
                    tool_call_id=call.tool_call_id,
                )
                self.latencies_ms[call.tool_call_id] = recorded.latency_ms
                return recorded.result
        started = time.perf_counter()
        result = await handler(args)
        latency_ms = (time.perf_counter() - started) * 1000
        self.latencies_ms[call.tool_call_id] = latency_ms
        if durable:
            await deps.store.put_tool_effect(
                deps.run_id,
                tool_call_id=call.tool_call_id,
                tool_name=call.tool_name,
                args=call.args_as_dict(),
                result=to_jsonable_python(result),
                latency_ms=latency_ms,
                origin=deps.fetch_origins.pop(call.tool_call_id, None),
            )
        return result

    async def on_tool_execute_error(
        self,
        ctx: RunContext[ResearchDeps],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: ValidatedToolArgs,
        error: Exception,
    ) -> Any:
        if isinstance(error, LeaseLostError) or database_unavailable(error):
            raise error  # another worker has the run, or the store is down: stop the run, do not tell the model
        logfire.exception("tool crashed", run_id=ctx.deps.run_id, tool=call.tool_name, _exc_info=error)
        return {
            "ok": False,
            "error": "internal_error",
            "message": f"{call.tool_name} failed unexpectedly ({type(error).__name__}); try something else.",
        }
