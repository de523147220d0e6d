"""Loop detection and per-tool caps, decided from the run's own message history.

The same tool with the same arguments a second time is answered with the earlier result instead of
running again; a search that brings no URL the run has not already seen counts as a repetition too.
The next repetition after that stops the run (`loop`). A tool called more often than its per-tool cap
stops the run (`tool_calls`). Everything is recomputed from `ctx.messages`, so a resumed run keeps
its counts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.capabilities.abstract import ValidatedToolArgs, WrapToolExecuteHandler
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart
from pydantic_ai.tools import ToolDefinition
from pydantic_core import to_jsonable_python

from budgets._stops import BudgetExceeded

DUPLICATE = "duplicate_call"
STALE_SEARCH_FLAG = "no_new_urls"
_URL = re.compile(r"(?:https?|corpus)://[^\s\"'<>]+")


@dataclass(frozen=True, kw_only=True)
class _Past:
    """What earlier, completed tool calls of this run looked like."""

    results: dict[str, object]  # call key -> the first result for it
    calls_per_tool: dict[str, int]
    repeats: int
    seen_urls: set[str]


def call_key(tool_name: str, args: Mapping[str, object]) -> str:
    normalized = {k: " ".join(v.casefold().split()) if isinstance(v, str) else v for k, v in args.items()}
    return f"{tool_name}:{json.dumps(normalized, sort_keys=True, default=str)}"


def _content(part: ToolReturnPart) -> object:
    return to_jsonable_python(part.content, fallback=str)


def _read_history(messages: Sequence[ModelMessage], *, exclude_call: str) -> _Past:
    calls: dict[str, ToolCallPart] = {}
    for message in messages:
        if isinstance(message, ModelResponse):
            for response_part in message.parts:
                if isinstance(response_part, ToolCallPart) and response_part.tool_call_id != exclude_call:
                    calls[response_part.tool_call_id] = response_part
    results: dict[str, object] = {}
    per_tool: dict[str, int] = {}
    repeats = 0
    seen: set[str] = set()
    for message in messages:
        if not isinstance(message, ModelRequest):
            continue
        for part in message.parts:
            if not isinstance(part, ToolReturnPart) or part.tool_call_id not in calls:
                continue
            call = calls[part.tool_call_id]
            content = _content(part)
            if isinstance(content, dict) and (content.get("error") == DUPLICATE or content.get(STALE_SEARCH_FLAG)):
                repeats += 1
            if part.outcome == "success":
                per_tool[call.tool_name] = per_tool.get(call.tool_name, 0) + 1
                results.setdefault(call_key(call.tool_name, call.args_as_dict()), content)
            if call.tool_name == "fetch_url":
                seen.add(str(call.args_as_dict().get("url", "")))
            seen.update(_URL.findall(json.dumps(content, default=str)) if call.tool_name == "web_search" else ())
    return _Past(results=results, calls_per_tool=per_tool, repeats=repeats, seen_urls=seen)


def _earlier_in_batch(messages: Sequence[ModelMessage], call: ToolCallPart) -> int:
    """Calls to the same tool that precede `call` in its own response (parallel calls count too)."""
    for message in reversed(messages):
        if isinstance(message, ModelResponse):
            ids = [
                p.tool_call_id for p in message.parts if isinstance(p, ToolCallPart) and p.tool_name == call.tool_name
            ]
            if call.tool_call_id in ids:
                return ids.index(call.tool_call_id)
    return 0


@dataclass
class ToolCallGuard(AbstractCapability[Any]):
    """Stops loops and enforces per-tool caps before a tool runs."""

    per_tool: Mapping[str, int] = field(default_factory=dict)
    search_tool: str = "web_search"

    async def wrap_tool_execute(
        self,
        ctx: RunContext[Any],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: ValidatedToolArgs,
        handler: WrapToolExecuteHandler,
    ) -> Any:
        past = _read_history(ctx.messages, exclude_call=call.tool_call_id)
        cap = self.per_tool.get(call.tool_name)
        earlier = past.calls_per_tool.get(call.tool_name, 0) + _earlier_in_batch(ctx.messages, call)
        if cap is not None and earlier >= cap:
            raise BudgetExceeded("tool_calls", f"per-tool cap: {call.tool_name} may be called {cap} times per run")
        key = call_key(call.tool_name, call.args_as_dict())  # as sent, like the history it is compared with
        if key in past.results:
            if past.repeats >= 1:
                raise BudgetExceeded(
                    "loop", f"loop detected: {call.tool_name} called again with the same arguments after a repeat"
                )
            return {
                "ok": False,
                "error": DUPLICATE,
                "message": f"Already done: {call.tool_name} was called with these arguments earlier in this run. "
                "Here is the earlier result; repeating the same call again will stop the run.",
                "earlier_result": past.results[key],
            }
        result = await handler(args)
        if call.tool_name == self.search_tool:
            result = self._mark_stale(result, past)
        return result

    def _mark_stale(self, result: Any, past: _Past) -> Any:
        data = to_jsonable_python(result, fallback=str)
        if not isinstance(data, dict) or not data.get("ok"):
            return result
        urls = set(_URL.findall(json.dumps(data, default=str)))
        if not urls or urls - past.seen_urls:  # an empty search is a miss, not a repetition
            return result
        if past.repeats >= 1:
            raise BudgetExceeded("loop", "loop detected: another search returned no URL this run has not seen")
        return {
            **data,
            STALE_SEARCH_FLAG: True,
            "note": "This search found no new URLs. Fetch a result you have not read, or answer; "
            "another search without new URLs will stop the run.",
        }
