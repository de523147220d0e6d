"""A fake OpenAI-compatible Chat Completions server on the local HTTP server, with scripted faults.

The conversation is decided from the request's messages alone (like `tests/scripted.py`), so a run
resumed later continues where it stopped: record_plan → web_search → fetch_url(page) → final_result
quoting the page verbatim. Every request is recorded with its arrival time, the model asked for, the
conversation step (the number of messages it carries) and what was answered, so tests can count
retries per step and measure the spacing between attempts.

Faults: `inject(...)` queues one-shot faults (consumed in order by the first matching request);
`rule` is consulted for every request that no injected fault matched and returns a fault or None.
A fault is an HTTP error status (with optional headers such as Retry-After) or a hang: the server
waits `hang_seconds` (longer than the client's timeout) before answering.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests._http_server import LocalHTTPServer, Request, Response

CHAT_PATH = "/v1/chat/completions"
AGENT_TOOLS = frozenset({"record_plan", "web_search", "fetch_url"})
_URL = re.compile(r"https?://[^\s\"'\\<>]+")


@dataclass(frozen=True)
class Fault:
    status: int = 500
    message: str = "the upstream model server failed"
    headers: dict[str, str] = field(default_factory=dict)
    hang_seconds: float = 0.0


@dataclass(frozen=True)
class Call:
    at: float  # time.monotonic() when the request arrived
    model: str
    step: int  # number of messages in the request: one value per conversation step
    status: int | str  # 200, an error status, or "hang"
    tool: str | None = None  # the tool the answer called


@dataclass
class _Injected:
    fault: Fault
    step: int | None
    model: str | None


class FakeOpenAI:
    """Serves `/v1/chat/completions` on `server`; `base_url` is what `openai_base_url` should be."""

    def __init__(self, server: LocalHTTPServer, *, page_url: str, quote: str, title: str = "") -> None:
        self.server = server
        self.page_url = page_url
        self.quote = quote
        self.title = title
        self.calls: list[Call] = []
        self.rule: Callable[[str, int], Fault | None] | None = None
        self.release = threading.Event()  # set to end any hang early (teardown)
        self._injected: list[_Injected] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        server.route(CHAT_PATH, self._handle)

    @property
    def base_url(self) -> str:
        return self.server.url("/v1")

    # --- scripting faults ------------------------------------------------------------------------
    def inject(self, *faults: Fault, step: int | None = None, model: str | None = None) -> None:
        """Queue one-shot faults for the next requests matching `step` / `model` (None: any)."""
        with self._lock:
            self._injected += [_Injected(fault, step, model) for fault in faults]

    def _fault_for(self, model: str, step: int) -> Fault | None:
        with self._lock:
            for index, pending in enumerate(self._injected):
                if pending.step in (None, step) and pending.model in (None, model):
                    return self._injected.pop(index).fault
        return self.rule(model, step) if self.rule else None

    # --- what the server saw ---------------------------------------------------------------------
    def attempts(self, *, model: str | None = None, step: int | None = None) -> list[Call]:
        return [c for c in self.calls if model in (None, c.model) and step in (None, c.step)]

    def successes_by_step(self, *, model: str | None = None) -> Counter[int]:
        return Counter(c.step for c in self.attempts(model=model) if c.status == 200)

    # --- the handler -----------------------------------------------------------------------------
    def _handle(self, request: Request) -> Response:
        arrived = time.monotonic()
        body = json.loads(request.body)
        model = str(body["model"])
        messages: list[dict[str, Any]] = body["messages"]
        step = len(messages)
        fault = self._fault_for(model, step)
        if fault is not None and fault.hang_seconds:
            self._record(Call(arrived, model, step, "hang"))
            self.release.wait(fault.hang_seconds)
            return _error(504, "gateway timeout after hanging", {})
        if fault is not None:
            self._record(Call(arrived, model, step, fault.status))
            return _error(fault.status, fault.message, fault.headers)
        tool, args = self._decide(messages, body.get("tools") or [])
        self._record(Call(arrived, model, step, 200, tool))
        return _completion(model, tool, args, call_id=f"call_{step}_{next(self._ids)}", step=step)

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _decide(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        names_by_id = {
            tc["id"]: tc["function"]["name"]
            for m in messages
            if m.get("role") == "assistant"
            for tc in m.get("tool_calls") or []
        }
        results: dict[str, str] = {}
        for m in messages:
            if m.get("role") == "tool":
                results[names_by_id.get(m.get("tool_call_id", ""), "?")] = _text(m.get("content"))
        question = next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")
        if "record_plan" not in results:
            return "record_plan", {"sub_questions": [f"What do sources say about: {question[:200]}"]}
        if "web_search" not in results:
            return "web_search", {"query": question[:200], "max_results": 3}
        if "fetch_url" not in results:
            wanted = self.page_url.rstrip("/")
            found = [u for u in _URL.findall(results["web_search"]) if u.rstrip("/") == wanted]
            return "fetch_url", {"url": found[0] if found else self.page_url}
        output_tool = next(t["function"]["name"] for t in tools if t.get("function", {}).get("name") not in AGENT_TOOLS)
        citation = {"url": self.page_url, "title": self.title, "quote": self.quote}
        return output_tool, {"answer": self.quote, "citations": [citation], "unresolved": []}


def _text(content: object) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _error(status: int, message: str, headers: dict[str, str]) -> Response:
    payload = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return Response(
        status=status,
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **headers},
    )


def _completion(model: str, tool: str, args: dict[str, Any], *, call_id: str, step: int) -> Response:
    payload = {
        "id": f"chatcmpl-{call_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": tool, "arguments": json.dumps(args)},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 100 + 10 * step, "completion_tokens": 20, "total_tokens": 120 + 10 * step},
    }
    return Response(body=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
