"""A fake OpenAI-compatible server on the local HTTP server, with scripted faults and a scriptable judge.

Research conversations arrive on `/v1/chat/completions` (the agent talks Chat Completions to a configured
`openai_base_url`, see `agent.models`). The conversation is decided from the request's messages alone
(like `tests/scripted.py`), so a run resumed later continues where it stopped: record_plan → web_search →
fetch_url(page) → final_result quoting the page verbatim. The answer text is the quote, unless `answers`
names the model asked for: then that model answers with its own text (still citing the quote), so two
"models" served by the same fake can differ in quality.

Grading requests — any request offering tools, none of them the agent's, e.g. pydantic-evals' `LLMJudge`
asking for its `GradingOutput` — are answered by calling the output tool offered, with arguments fitting
its JSON schema: numbers get the score, booleans `score >= 0.5`, strings a reason (`fake judge MODEL:
score S`), arrays `[]`. The score is `judge(model, text)` (`text`: the user messages of the request), by
default `default_judge`: 1.0 when the graded answer (the `answer` in the judge prompt's <Output> section)
contains `quote`, else 0.0 — also 0.0 for a request without such a section, like the run's own critic
(`critic_model`), which tests of the judge turn off or script with `judge`. Graders are served on both
`/v1/chat/completions` and `/v1/responses`: with `openai_base_url` set, `agent.models` sends `openai:NAME`
and `openai-chat:NAME` through Chat Completions and `openai-responses:NAME` through the Responses API (as
the eval's judge is resolved too), while pydantic-ai resolving `openai:NAME` itself uses the Responses API.

`request_model` and `request_text` read a recorded `Request` (`LocalHTTPServer.requests`) of either API,
for tests that look at what was sent (headers, retries) rather than at what was answered.

Every request is recorded with its arrival time, the model asked for, the conversation step (the number
of messages, or Responses input items, it carries) and what was answered, so tests can count retries per
step and measure the spacing between attempts; each answered grading request is also kept in
`judge_calls` with the text it graded and the score given.

Faults: `inject(...)` queues one-shot faults (consumed in order by the first matching request);
`rule` is consulted for every request that no injected fault matched and returns a fault or None.
A fault is an HTTP error status (with optional headers such as Retry-After) or a hang: the server
waits `hang_seconds` (longer than the client's timeout) before answering. Faults apply to grading
requests too (match them by the judge's `model`).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests._http_server import LocalHTTPServer, Request, Response

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
AGENT_TOOLS = frozenset({"record_plan", "web_search", "fetch_url"})
_URL = re.compile(r"https?://[^\s\"'\\<>]+")
# pydantic-evals' judge prompt: <Input>, <Output>, <ExpectedOutput>, <Rubric> sections, one per line; the
# first <Output> section is the graded output (the rubric may mention "<Output>" in its prose, later).
_OUTPUT_SECTION = re.compile(r"<Output>\n(.*?)\n</Output>", re.DOTALL)

Judge = Callable[[str, str], float]
"""(model asked for, text of the grading request) → the score to give."""
Answer = str | Callable[[str], str | None]
"""A model's answer text, or a function of the question giving it (None: the quote, as by default)."""


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


@dataclass(frozen=True)
class JudgeCall:
    """A grading request the fake answered."""

    at: float
    model: str
    api: str  # "chat" (Chat Completions) or "responses" (Responses API)
    tool: str  # the output tool called
    text: str  # the user message it graded
    score: float
    arguments: dict[str, Any]

    @property
    def answer(self) -> str | None:
        """The answer it graded, from pydantic-evals' <Output> section (None: no such section)."""
        return graded_answer(self.text)


@dataclass
class _Injected:
    fault: Fault
    step: int | None
    model: str | None


def graded_answer(text: str) -> str | None:
    """The `answer` of the output a judge request grades (the <Output> section's JSON, else its text)."""
    section = _OUTPUT_SECTION.search(text)
    if section is None:
        return None
    try:
        output = json.loads(section.group(1))
    except json.JSONDecodeError:
        return section.group(1)
    return str(output.get("answer", "")) if isinstance(output, dict) else section.group(1)


class FakeOpenAI:
    """Serves `/v1/chat/completions` and `/v1/responses` on `server`; `base_url` is what `openai_base_url`
    (or `OPENAI_BASE_URL`) should be."""

    def __init__(
        self,
        server: LocalHTTPServer,
        *,
        page_url: str,
        quote: str,
        title: str = "",
        answers: Mapping[str, Answer] | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.server = server
        self.page_url = page_url
        self.quote = quote
        self.title = title
        self.answers: dict[str, Answer] = dict(answers or {})
        self.judge: Judge = judge or self.default_judge
        self.calls: list[Call] = []
        self.judge_calls: list[JudgeCall] = []
        self.rule: Callable[[str, int], Fault | None] | None = None
        self.release = threading.Event()  # set to end any hang early (teardown)
        self._injected: list[_Injected] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        server.route(CHAT_PATH, self._handle)
        server.route(RESPONSES_PATH, self._handle)

    @property
    def base_url(self) -> str:
        return self.server.url("/v1")

    # --- scripting faults and answers ------------------------------------------------------------
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

    def default_judge(self, model: str, text: str) -> float:
        """1.0 when the graded answer contains the page's quote, else 0.0 (`model` is not consulted)."""
        answer = graded_answer(text)
        return 1.0 if answer is not None and self.quote in answer else 0.0

    def answer_for(self, model: str, question: str) -> str:
        """The answer text `model` gives to `question`: its entry in `answers`, else the quote."""
        given = self.answers.get(model)
        text = given(question) if callable(given) else given
        return self.quote if text is None else text

    # --- what the server saw ---------------------------------------------------------------------
    def attempts(self, *, model: str | None = None, step: int | None = None) -> list[Call]:
        return [c for c in self.calls if model in (None, c.model) and step in (None, c.step)]

    def successes_by_step(self, *, model: str | None = None) -> Counter[int]:
        return Counter(c.step for c in self.attempts(model=model) if c.status == 200)

    def judged(self, *, model: str | None = None) -> list[JudgeCall]:
        """The grading requests answered (for `model`, or any)."""
        with self._lock:
            return [c for c in self.judge_calls if model in (None, c.model)]

    # --- the handler -----------------------------------------------------------------------------
    def _handle(self, request: Request) -> Response:
        arrived = time.monotonic()
        body = json.loads(request.body)
        model = str(body["model"])
        api = "responses" if request.path == RESPONSES_PATH else "chat"
        messages = _messages(body, api)
        tools = _tools(body, api)
        step = len(messages)
        fault = self._fault_for(model, step)
        if fault is not None and fault.hang_seconds:
            self._record(Call(arrived, model, step, "hang"))
            self.release.wait(fault.hang_seconds)
            return _error(504, "gateway timeout after hanging", {})
        if fault is not None:
            self._record(Call(arrived, model, step, fault.status))
            return _error(fault.status, fault.message, fault.headers)
        call_id = f"call_{step}_{next(self._ids)}"
        if tools and not any(t["name"] in AGENT_TOOLS for t in tools):
            text = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "user")
            tool, args = self._grade(model, tools, text, api=api, arrived=arrived)
        elif api == "chat":
            tool, args = self._decide(messages, body.get("tools") or [], model=model)
        else:
            self._record(Call(arrived, model, step, 400))
            return _error(400, f"the fake cannot answer this {api} request (tools: {[t['name'] for t in tools]})", {})
        self._record(Call(arrived, model, step, 200, tool))
        if api == "responses":
            return _responses_completion(model, tool, args, call_id=call_id, step=step)
        return _completion(model, tool, args, call_id=call_id, step=step)

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _grade(
        self, model: str, tools: list[dict[str, Any]], text: str, *, api: str, arrived: float
    ) -> tuple[str, dict[str, Any]]:
        tool = next((t for t in tools if t["name"] == "final_result"), tools[0])
        score = float(self.judge(model, text))
        args = _fill(tool.get("parameters") or {}, score=score, reason=f"fake judge {model}: score {score:g}")
        with self._lock:
            self.judge_calls.append(JudgeCall(arrived, model, api, tool["name"], text, score, args))
        return str(tool["name"]), args

    def _decide(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], *, model: str = ""
    ) -> tuple[str, dict[str, Any]]:
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
        return output_tool, {"answer": self.answer_for(model, question), "citations": [citation], "unresolved": []}


def request_model(request: Request) -> str:
    """The model a recorded request to either API asked for."""
    return str(json.loads(request.body)["model"])


def request_text(request: Request) -> str:
    """The user messages of a recorded request to either API: for a grading request, the text it grades."""
    api = "responses" if request.path == RESPONSES_PATH else "chat"
    messages = _messages(json.loads(request.body), api)
    return "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "user")


def _messages(body: dict[str, Any], api: str) -> list[dict[str, Any]]:
    """Chat `messages`, or Responses `input` items (a bare string input is one user message)."""
    if api == "chat":
        return list(body["messages"])
    given = body.get("input")
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    return [item for item in given or [] if isinstance(item, dict)]


def _tools(body: dict[str, Any], api: str) -> list[dict[str, Any]]:
    """Function tools as {name, parameters}, from either API's shape."""
    tools: list[dict[str, Any]] = []
    for tool in body.get("tools") or []:
        spec = tool.get("function", {}) if api == "chat" else tool
        if "name" in spec:
            tools.append({"name": str(spec["name"]), "parameters": spec.get("parameters") or {}})
    return tools


def _fill(schema: dict[str, Any], *, score: float, reason: str) -> dict[str, Any]:
    """Arguments fitting an object schema: numbers get the score, booleans `score >= 0.5`, strings the reason."""
    args: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        if kind == "number":
            args[name] = score
        elif kind == "integer":
            args[name] = round(score)
        elif kind == "boolean":
            args[name] = score >= 0.5
        elif kind == "string":
            args[name] = reason
        elif kind == "array":
            args[name] = []
        elif name in (schema.get("required") or []):
            args[name] = None
    return args


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


def _responses_completion(model: str, tool: str, args: dict[str, Any], *, call_id: str, step: int) -> Response:
    payload = {
        "id": f"resp_{call_id}",
        "object": "response",
        "created_at": int(time.time()),
        "model": model,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 0.0,
        "top_p": 1.0,
        "tool_choice": "required",
        "tools": [],
        "output": [
            {
                "type": "function_call",
                "id": f"fc_{call_id}",
                "call_id": call_id,
                "name": tool,
                "arguments": json.dumps(args),
                "status": "completed",
            }
        ],
        "usage": {
            "input_tokens": 100 + 10 * step,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 20,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 120 + 10 * step,
        },
    }
    return Response(body=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
