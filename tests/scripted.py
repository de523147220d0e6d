"""A scripted research model for tests: a pydantic-ai `FunctionModel` driven only by the history.

Because each step is decided from the messages alone, a run resumed in another process continues
exactly where it stopped. `crash_model()` is importable as `factory:tests.scripted:crash_model` by
worker subprocesses; it appends one line per call to the file named by `RA_SCRIPT_LOG` and, when
`RA_SCRIPT_HANG_AT` names a message count, hangs on that call (after writing `RA_SCRIPT_HANG_MARK`)
so a test can SIGKILL the worker in the middle of a model call; with `RA_SCRIPT_WAIT_FOR` it goes on once
that file exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_core import to_jsonable_python

_URL = re.compile(r"https?://\S+")
_FRAME_LINE = re.compile(r"^\s*</?untrusted_data[^>]*>\s*$", re.MULTILINE)


@dataclass
class History:
    question: str = ""
    planned: bool = False
    searched: bool = False
    search_urls: list[str] = field(default_factory=list)
    fetched: dict[str, str] = field(default_factory=dict)  # url -> page text
    failed_fetches: list[str] = field(default_factory=list)
    retry_prompts: list[str] = field(default_factory=list)


def search_results(messages: list[ModelMessage]) -> str:
    """Everything `web_search` returned so far, as one string (scripted models pick URLs from it)."""
    return " ".join(
        str(part.content)
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart) and part.tool_name == "web_search"
    )


def read_history(messages: list[ModelMessage]) -> History:
    state = History()
    for message in messages:
        if not isinstance(message, ModelRequest):
            continue
        for part in message.parts:
            if isinstance(part, UserPromptPart) and not state.question:
                state.question = str(part.content)
            elif isinstance(part, RetryPromptPart):
                state.retry_prompts.append(part.model_response())
            elif isinstance(part, ToolReturnPart) and part.outcome == "retried":
                state.retry_prompts.append(part.model_response_str())
            elif isinstance(part, ToolReturnPart) and part.outcome == "denied":  # a human said no: work around it
                state.failed_fetches.append(part.model_response_str())
            elif isinstance(part, ToolReturnPart):
                content = to_jsonable_python(part.content, fallback=str)
                if part.tool_name == "record_plan":
                    state.planned = True
                elif part.tool_name == "web_search":
                    state.searched = True
                    if isinstance(content, dict) and content.get("ok"):
                        state.search_urls += [u for u in _URL.findall(content["results"]) if u not in state.search_urls]
                elif part.tool_name == "fetch_url":
                    if isinstance(content, dict) and content.get("ok"):
                        state.fetched[content["url"]] = _FRAME_LINE.sub("", content["text"]).strip()
                    elif isinstance(content, dict):
                        state.failed_fetches.append(str(content.get("message")))
    return state


def first_sentence(text: str) -> str:
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if len(sentence.strip()) >= 20:
            return sentence.strip()
    return text.strip()[:200]


@dataclass
class ResearchScript:
    """Plan → search → fetch up to `max_fetches` pages one per turn → answer quoting each page."""

    max_fetches: int = 2
    fabricate_quote: bool = False
    calls: list[int] = field(default_factory=list)

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls.append(len(messages))
        return self.decide(messages, info)

    def decide(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        state = read_history(messages)
        if not state.planned:
            return _call("record_plan", {"sub_questions": [f"What is known about: {state.question}?"]})
        if not state.searched:
            return _call("web_search", {"query": state.question, "max_results": 5})
        pending = [u for u in state.search_urls if u not in state.fetched]
        if pending and len(state.fetched) + len(state.failed_fetches) < self.max_fetches:
            return _call("fetch_url", {"url": pending[0]})
        citations = [
            {
                "url": url,
                "title": "",
                "quote": "This sentence was never on the page at all."
                if self.fabricate_quote
                else first_sentence(text),
            }
            for url, text in state.fetched.items()
        ]
        if state.retry_prompts and self.fabricate_quote:
            # A model that fixes its citations once told: quote the page for real.
            citations = [{"url": u, "title": "", "quote": first_sentence(t)} for u, t in state.fetched.items()]
        answer = " ".join(c["quote"] for c in citations) or "I could not find sources."
        return _call(info.output_tools[0].name, {"answer": answer, "citations": citations, "unresolved": []})


def _call(tool: str, args: dict[str, object]) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(tool_name=tool, args=args)])


def research_model(**kwargs: object) -> tuple[FunctionModel, ResearchScript]:
    script = ResearchScript(**kwargs)  # type: ignore[arg-type]
    return FunctionModel(script, model_name="scripted-research"), script


def crash_model() -> FunctionModel:
    """The scripted model for worker subprocesses, instrumented through environment variables."""
    script = ResearchScript(max_fetches=int(os.environ.get("RA_SCRIPT_MAX_FETCHES", "2")))
    log = Path(os.environ["RA_SCRIPT_LOG"]) if os.environ.get("RA_SCRIPT_LOG") else None
    hang_at = int(os.environ.get("RA_SCRIPT_HANG_AT", "-1"))
    mark = os.environ.get("RA_SCRIPT_HANG_MARK")
    # RA_SCRIPT_WAIT_FOR: at the hanging call, wait until this file exists instead of for an hour.
    wait_for = Path(os.environ["RA_SCRIPT_WAIT_FOR"]) if os.environ.get("RA_SCRIPT_WAIT_FOR") else None

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if log is not None:
            with log.open("a") as handle:
                entry = {
                    "pid": os.getpid(),
                    "messages": len(messages),
                    "question": read_history(messages).question,
                }
                handle.write(json.dumps(entry) + "\n")
        if len(messages) == hang_at:
            if mark:
                Path(mark).write_text(str(os.getpid()))
            if wait_for is None:
                await asyncio.Event().wait()  # never set: the test kills this process (or cancels the call)
            while wait_for is not None and not wait_for.exists():  # noqa: ASYNC110 - another process creates it
                await asyncio.sleep(0.05)
        return script.decide(messages, info)

    return FunctionModel(respond, model_name="scripted-crash")


def text_response(text: str) -> ModelResponse:
    return ModelResponse(parts=[TextPart(text)])


def scripted_calls(calls: list[tuple[str, dict[str, object]]]) -> FunctionModel:
    """A model that issues `calls` one per turn, then answers without citations."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = sum(isinstance(m, ModelResponse) for m in messages)
        if turn < len(calls):
            name, args = calls[turn]
            return ModelResponse(parts=[ToolCallPart(name, args)])
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"answer": "done", "citations": []})])

    return FunctionModel(respond)


NOT_ANSWERED = "The fetched pages do not say when QUIC was standardised, so I cannot answer that."
MISSING = "the year QUIC became an IETF standard (neither page gives a date)"


def unanswered_model() -> FunctionModel:
    """Plan, search, fetch one page, then say plainly that the sources do not establish an answer
    (`answered: false`, no citations, what is missing under `unresolved`). Importable as a factory."""
    script = ResearchScript(max_fetches=1)

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        state = read_history(messages)
        pending = [u for u in state.search_urls if u not in state.fetched]
        if not state.searched or (pending and not state.fetched and not state.failed_fetches):
            return script.decide(messages, info)
        report = {"answered": False, "answer": NOT_ANSWERED, "citations": [], "unresolved": [MISSING]}
        return _call(info.output_tools[0].name, report)

    return FunctionModel(respond, model_name="scripted-unanswered")


def huge_args_model() -> FunctionModel:
    """A poison model for worker subprocesses: after planning it searches with a 5 MB query, and once that
    is refused it says plainly that it found nothing. Importable as a factory."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        state = read_history(messages)
        if not state.planned:
            return _call("record_plan", {"sub_questions": [state.question]})
        if (
            not state.retry_prompts
            and not state.searched
            and not any(
                isinstance(part, ToolReturnPart) and part.tool_name == "web_search"
                for message in messages
                if isinstance(message, ModelRequest)
                for part in message.parts
            )
        ):
            return _call("web_search", {"query": "x" * 5_000_000, "max_results": 3})
        report = {"answered": False, "answer": NOT_ANSWERED, "citations": [], "unresolved": [MISSING]}
        return _call(info.output_tools[0].name, report)

    return FunctionModel(respond, model_name="scripted-huge-args")


CRITIC_ISSUE = "The answer names no source for its claim about the IETF."
CRITIC_MISSING = "when QUIC was standardised"
CRITIC_UNSUPPORTED = "QUIC was standardised by the IETF."


def weak_critic() -> FunctionModel:
    """A critic that always scores 0.35 with one issue, one missing part and one unsupported claim."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        critique = {
            "score": 0.35,
            "issues": [CRITIC_ISSUE],
            "missing": [CRITIC_MISSING],
            "unsupported_claims": [CRITIC_UNSUPPORTED],
        }
        return _call(info.output_tools[0].name, critique)

    return FunctionModel(respond, model_name="scripted-critic")
