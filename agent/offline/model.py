"""A deterministic offline research model: no network, no key, and an answer made only of exact quotes.

`OfflineResearchModel` is a pydantic-ai `Model` that drives the real tools through a fixed policy:
plan, search, fetch the top three results in one turn, then answer with the BM25-best sentences of
the fetched pages (see `agent.offline.policy`). Every step is decided from the message history
alone, so a run resumed after a crash continues where it stopped; tool call ids are derived from the
history length too, so a turn regenerated from the same history is identical, ids included.

Usage is an estimate, since there is no tokenizer: ceil(characters / 4) for every text the request
carries (instructions, tool definitions, the user prompt, tool returns, retry feedback and the
model's earlier calls) as input, and for the tool names and JSON arguments it writes as output. The
cost is a genuine zero, set on each response so genai-prices is never asked about this model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, assert_never

from pydantic_ai.messages import (
    InstructionPart,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    RetryFeedbackPart,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.profiles import ModelProfileSpec
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage
from pydantic_core import to_jsonable_python

from agent.offline.policy import (
    NOT_FOUND,
    Page,
    compose_answer,
    first_queries,
    plan_for,
    reading_order,
    select_evidence,
    simpler_query,
    unframe,
    unmentioned,
    unmentioned_words,
    unresolved,
)
from agent.offline.subject import subject_of

__all__ = ["OfflineResearchModel", "offline_model"]

MODEL_NAME: Final = "offline"
PLAN_TOOL: Final = "record_plan"
SEARCH_TOOL: Final = "web_search"
FETCH_TOOL: Final = "fetch_url"
MAX_RESULTS: Final = 5
FETCHES_PER_ROUND: Final = 3
MAX_FETCH_ROUNDS: Final = 2
MAX_PLAN_ATTEMPTS: Final = 2
CHARS_PER_TOKEN: Final = 4

# A result block in `web_search`'s framed text: "N. title" then the URL on the next line, indented.
_RESULT_URL: Final = re.compile(r"^\d+\. [^\n]*\n {3}((?:https?|corpus)://\S+)$", re.MULTILINE)
# How the output validator names a citation it rejects: "citation N (url): reason".
_COMPLAINT: Final = re.compile(r"citation (\d+) \((.*?)\): ")
# The critique in a revision request (`agent.review.critic.revision_request`).
_CRITIQUE: Final = re.compile(r"<critique>\s*(\{.*\})\s*</critique>", re.DOTALL)
# The fences `prepare_messages` puts around output feedback when it renders it as user text.
_FEEDBACK_FENCES: Final = re.compile(r"<(?:retry_feedback|validation_errors)>")


@dataclass(frozen=True)
class _Calls:
    """Tool calls sent together in one response, as (tool, arguments): they run in parallel."""

    calls: list[tuple[str, dict[str, Any]]]

    @classmethod
    def of(cls, tool: str, args: list[dict[str, Any]]) -> _Calls:
        return cls([(tool, one) for one in args])


@dataclass(frozen=True)
class _Final:
    """The report, as the output tool's arguments."""

    report: dict[str, Any]


_Step = _Calls | _Final


@dataclass
class _Search:
    query: str
    urls: list[str]
    retryable: bool


@dataclass(frozen=True)
class _Revision:
    """A critic asked for a revision: what it found missing, and where the history stood then."""

    missing: list[str]
    searches_before: int
    fetch_rounds_before: int


@dataclass
class _Transcript:
    """What the history says has happened so far; rebuilt from scratch on every request."""

    question: str = ""
    plan: list[str] | None = None
    plan_attempts: int = 0
    searches: list[_Search] = field(default_factory=list)
    fetch_rounds: int = 0
    fetched_urls: list[str] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)
    rejected_quotes: set[tuple[str, str]] = field(default_factory=set)
    rejected_urls: set[str] = field(default_factory=set)
    unexplained_retry: bool = False
    revision: _Revision | None = None


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "\n".join(item for item in content if isinstance(item, str))
    return str(content)


def _as_dict(content: object) -> dict[str, Any]:
    data = to_jsonable_python(content, fallback=str)
    return data if isinstance(data, dict) else {}


def _reject(transcript: _Transcript, feedback: str, call: ToolCallPart | None) -> None:
    """Remember which citations a retry complained about, by (url, quote) of the answer it rejected."""
    complaints = _COMPLAINT.findall(feedback)
    if not complaints:
        transcript.unexplained_retry = True
        return
    citations = call.args_as_dict().get("citations", []) if call is not None else []
    for number, url in complaints:
        index = int(number) - 1
        cited = citations[index] if isinstance(citations, list) and 0 <= index < len(citations) else None
        if isinstance(cited, dict) and isinstance(cited.get("quote"), str):
            transcript.rejected_quotes.add((str(cited.get("url")), cited["quote"]))
        else:
            transcript.rejected_urls.add(url)


def _read_return(transcript: _Transcript, part: ToolReturnPart, call: ToolCallPart | None) -> None:
    args = call.args_as_dict() if call is not None else {}
    content = _as_dict(part.content)
    ok = part.outcome == "success" and content.get("ok") is True
    if part.tool_name == PLAN_TOOL:
        transcript.plan_attempts += 1
        if ok and isinstance(content.get("plan"), list):
            transcript.plan = [str(item) for item in content["plan"]]
    elif part.tool_name == SEARCH_TOOL:
        urls = _RESULT_URL.findall(str(content.get("results", ""))) if ok else []
        query = str(args.get("query", content.get("query", "")))
        transcript.searches.append(_Search(query=query, urls=urls, retryable=bool(content.get("retryable"))))
    elif part.tool_name == FETCH_TOOL:
        url = str(args.get("url", content.get("url", "")))
        transcript.fetched_urls.append(url)
        if ok:
            text, cut = unframe(str(content.get("text", "")))
            title = str(content.get("title", ""))
            transcript.pages.append(
                Page(url=url, title=title, text=text, truncated=cut or bool(content.get("truncated")))
            )


def _missing_topics(critique_json: str) -> list[str]:
    try:
        data = json.loads(critique_json)
    except ValueError:
        return []
    missing = data.get("missing") if isinstance(data, dict) else None
    return [str(item) for item in missing] if isinstance(missing, list) else []


def _read(messages: Sequence[ModelMessage], output_tools: frozenset[str]) -> _Transcript:
    transcript = _Transcript()
    calls: dict[str, ToolCallPart] = {}
    order: dict[str, int] = {}
    last_output: ToolCallPart | None = None
    prompts = 0
    for message in messages:
        if isinstance(message, ModelResponse):
            tool_calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
            calls.update((p.tool_call_id, p) for p in tool_calls)
            order.update((p.tool_call_id, len(order)) for p in tool_calls)
            transcript.fetch_rounds += any(p.tool_name == FETCH_TOOL for p in tool_calls)
            last_output = next((p for p in reversed(tool_calls) if p.tool_name in output_tools), last_output)
            continue
        # Parallel tool calls return in the order they finished; read them in the order they were made,
        # so the same calls always give the same transcript (and the same next step).
        by_call = sorted(message.parts, key=lambda p: order.get(getattr(p, "tool_call_id", ""), -1))
        for part in by_call:
            if isinstance(part, UserPromptPart):
                prompts += 1
                if prompts == 1:
                    transcript.question = " ".join(_text_of(part.content).split())
                elif (critique := _CRITIQUE.search(_text_of(part.content))) is not None:
                    transcript.revision = _Revision(
                        missing=_missing_topics(critique.group(1)),
                        searches_before=len(transcript.searches),
                        fetch_rounds_before=transcript.fetch_rounds,
                    )
                elif _FEEDBACK_FENCES.search(text := _text_of(part.content)):
                    _reject(transcript, text, last_output)  # retry feedback as `prepare_messages` renders it
            elif isinstance(part, ToolReturnPart) and part.tool_name in output_tools:
                if part.outcome == "retried":
                    _reject(transcript, part.model_response_str(), calls.get(part.tool_call_id, last_output))
            elif isinstance(part, ToolReturnPart):
                _read_return(transcript, part, calls.get(part.tool_call_id))
            elif isinstance(part, RetryFeedbackPart | RetryPromptPart):
                _reject(transcript, part.model_response(), last_output)
    return transcript


# --- decisions ----------------------------------------------------------------------------------------


def _report(answer: str, *, citations: list[dict[str, str]] | None = None, unresolved: list[str]) -> _Final:
    report = {"answered": bool(citations), "answer": answer, "citations": citations or [], "unresolved": unresolved}
    return _Final(report)


def _not_found(transcript: _Transcript, reason: str, *, missing: Sequence[str] = ()) -> _Final:
    """An honest "could not establish": `unresolved` names what is missing, then the question itself."""
    return _report(f"{NOT_FOUND} {reason}", unresolved=[*missing, transcript.question])


def _no_evidence_reason(transcript: _Transcript) -> tuple[str, list[str]]:
    """Why the fetched pages gave nothing to quote, in the user's terms, and what is missing."""
    if transcript.rejected_quotes or transcript.rejected_urls:
        return "No quote from the fetched pages could be verified.", []
    absent = unmentioned(transcript.question, transcript.pages)
    if absent:
        words = ", ".join(f'"{word}"' for word in absent)
        return f"The pages I found never mention {words}.", [f"sources that discuss {words}"]
    subject = subject_of(transcript.question)
    if subject:
        return f"None of the pages I found discusses {subject.label}.", [f"a source about {subject.label}"]
    return "None of the fetched pages answers it.", []


def _answer(transcript: _Transcript, *, focus: Sequence[str] = ()) -> _Final:
    """The best-supported sentences of the fetched pages; `focus` adds terms a critic found missing."""
    if not transcript.pages:
        return _not_found(transcript, "None of the result pages could be fetched.")
    evidence = reading_order(
        select_evidence(
            " ".join([transcript.question, *focus]),
            transcript.pages,
            exclude_quotes=frozenset(transcript.rejected_quotes),
            exclude_urls=frozenset(transcript.rejected_urls),
        )
    )
    if not evidence:
        reason, missing = _no_evidence_reason(transcript)
        return _not_found(transcript, reason, missing=missing)
    citations = [{"url": e.page.url, "title": e.page.title, "quote": e.quote} for e in evidence]
    plan = transcript.plan or plan_for(transcript.question)
    return _report(
        compose_answer(evidence),
        citations=citations,
        unresolved=unresolved(transcript.question, plan, evidence),
    )


def _interleaved(rankings: Sequence[Sequence[str]]) -> list[str]:
    """The results of several searches, best of each first: 1st of each, then 2nd of each, and so on."""
    depth = max((len(r) for r in rankings), default=0)
    return list(dict.fromkeys(r[i] for i in range(depth) for r in rankings if i < len(r)))


def _search(query: str) -> _Calls:
    return _Calls.of(SEARCH_TOOL, [{"query": query, "max_results": MAX_RESULTS}])


def _revise(transcript: _Transcript, revision: _Revision) -> _Step:
    """One more search for what the critic found missing (unless the pages already mention it), one round
    of fetches, then answer again with those words in focus."""
    after = transcript.searches[revision.searches_before :]
    if revision.missing and not after and unmentioned_words(" ".join(revision.missing), transcript.pages):
        return _search(first_queries(" ".join(revision.missing))[-1])
    new = list(dict.fromkeys(u for s in after for u in s.urls if u not in transcript.fetched_urls))
    if new and transcript.fetch_rounds == revision.fetch_rounds_before:
        return _Calls.of(FETCH_TOOL, [{"url": url} for url in new[:FETCHES_PER_ROUND]])
    return _answer(transcript, focus=revision.missing)


def _next_step(transcript: _Transcript) -> _Step:
    """Plan, search (once more with fewer terms if nothing came back), fetch, answer; revise when asked."""
    if transcript.revision is not None and transcript.plan is not None:
        return _revise(transcript, transcript.revision)
    if transcript.unexplained_retry:
        return _not_found(transcript, "My answer could not be verified against the fetched pages.")
    if transcript.plan is None:
        if transcript.plan_attempts >= MAX_PLAN_ATTEMPTS:
            return _not_found(transcript, "The research plan could not be recorded.")
        return _Calls.of(PLAN_TOOL, [{"sub_questions": plan_for(transcript.question)}])  # searching waits for it
    first_round = [(SEARCH_TOOL, {"query": q, "max_results": MAX_RESULTS}) for q in first_queries(transcript.question)]
    if not transcript.searches:
        return _Calls(first_round)
    urls = _interleaved([search.urls for search in transcript.searches])
    if not urls:
        retry = simpler_query(transcript.question)
        first = transcript.searches[0]
        # The same query again only helps when the backend said its failure was transient.
        first_queries_sent = [args["query"] for _, args in first_round]
        if len(transcript.searches) == len(first_round) and (retry not in first_queries_sent or first.retryable):
            return _search(retry)
        return _not_found(transcript, "The search found no results.")
    pending = [url for url in urls if url not in transcript.fetched_urls]
    # A second round only when every page of the first failed.
    wants_fetch = transcript.fetch_rounds == 0 or (not transcript.pages and transcript.fetch_rounds < MAX_FETCH_ROUNDS)
    if pending and wants_fetch:
        return _Calls.of(FETCH_TOOL, [{"url": url} for url in pending[:FETCHES_PER_ROUND]])
    return _answer(transcript)


def _cannot_research(question: str, missing: Sequence[str]) -> _Final:
    return _report(  # answered: False (no citations)
        f"The offline model cannot research this question: this agent does not offer {', '.join(missing)}.",
        unresolved=[question],
    )


# --- usage ----------------------------------------------------------------------------------------------


def _tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _instructions(messages: Sequence[ModelMessage], params: ModelRequestParameters) -> str:
    if params.instruction_parts is not None:
        return InstructionPart.join(params.instruction_parts) or ""
    requests = [m for m in messages if isinstance(m, ModelRequest) and m.instructions]
    return (requests[-1].instructions or "") if requests else ""


def _input_tokens(messages: Sequence[ModelMessage], params: ModelRequestParameters) -> int:
    texts = [_instructions(messages, params)]
    for tool in [*params.function_tools, *params.output_tools]:
        texts += [tool.name, tool.description or "", json.dumps(tool.parameters_json_schema, sort_keys=True)]
    for message in messages:
        if isinstance(message, ModelResponse):
            texts += _response_texts(message.parts)
            continue
        for part in message.parts:
            if isinstance(part, UserPromptPart):
                texts.append(_text_of(part.content))
            elif isinstance(part, SystemPromptPart):
                texts.append(part.content)
            elif isinstance(part, ToolReturnPart):
                texts.append(part.model_response_str())
            elif isinstance(part, RetryFeedbackPart | RetryPromptPart):
                texts.append(part.model_response())
    return sum(_tokens(text) for text in texts)


def _response_texts(parts: Sequence[ModelResponsePart]) -> list[str]:
    texts: list[str] = []
    for part in parts:
        if isinstance(part, TextPart | ThinkingPart):
            texts.append(part.content)
        elif isinstance(part, ToolCallPart):
            texts += [part.tool_name, part.args_as_json_str()]
    return texts


# --- the model ----------------------------------------------------------------------------------------


class OfflineResearchModel(Model):
    """Researches through the agent's own tools with a fixed, deterministic policy; see the module docs."""

    def __init__(self, *, settings: ModelSettings | None = None, profile: ModelProfileSpec | None = None) -> None:
        super().__init__(settings=settings, profile=profile)

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    @property
    def system(self) -> str:
        return MODEL_NAME

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        _, params = self.prepare_request(model_settings, model_request_parameters)
        parts = self._respond(messages, params)
        usage = RequestUsage(
            input_tokens=_input_tokens(messages, params),
            output_tokens=sum(_tokens(text) for text in _response_texts(parts)),
        )
        usage.cost = Decimal(0)  # nothing is billed; a zero here keeps genai-prices from reporting "unknown"
        return ModelResponse(
            parts=parts,
            usage=usage,
            model_name=self.model_name,
            provider_name=self.system,
            finish_reason="tool_call" if any(isinstance(p, ToolCallPart) for p in parts) else "stop",
        )

    def _respond(self, messages: Sequence[ModelMessage], params: ModelRequestParameters) -> list[ModelResponsePart]:
        output_tools = [tool.name for tool in params.output_tools]
        transcript = _read(messages, frozenset(output_tools))
        offered = {tool.name for tool in params.function_tools}
        missing = [name for name in (PLAN_TOOL, SEARCH_TOOL, FETCH_TOOL) if name not in offered]
        step = _cannot_research(transcript.question, missing) if missing else _next_step(transcript)
        call_id = f"offline-{len(messages)}"  # the same history gives the same ids (see the module docs)
        match step:
            case _Calls(calls=calls):
                return [ToolCallPart(tool, args, tool_call_id=f"{call_id}-{i}") for i, (tool, args) in enumerate(calls)]
            case _Final(report=report) if output_tools:
                return [ToolCallPart(output_tools[0], report, tool_call_id=f"{call_id}-0")]
            case _Final(report=report):
                return [TextPart(report["answer"])]
            case _:
                assert_never(step)


def offline_model() -> OfflineResearchModel:
    """A fresh offline model; importable as `factory:agent.offline.model:offline_model` for workers."""
    return OfflineResearchModel()
