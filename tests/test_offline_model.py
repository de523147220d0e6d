"""The offline research model: its BM25 sentence picker, its policy, and whole runs on the fixture web."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryFeedbackPart,
    RetryInfo,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import ToolDefinition

from agent.api import Runtime
from agent.citations import CitationProblem, check_citations
from agent.offline.model import OfflineResearchModel, offline_model
from agent.offline.policy import (
    MAX_QUOTE_CHARS,
    MIN_QUOTE_CHARS,
    NOT_FOUND,
    BM25Index,
    Page,
    compose_answer,
    plan_for,
    search_query,
    select_evidence,
    simpler_query,
    split_sentences,
    stem,
    tokenize,
    unframe,
    unresolved,
)
from agent.report import ResearchReport
from tests._http_server import LocalHTTPServer, Response
from tests._web import install_web
from tools import FetchUrlResult, frame_untrusted, truncate_text

TOPICS: dict[str, tuple[str, str]] = {
    "/pages/coffee": (
        "Brewing coffee",
        "Espresso is brewed by forcing hot water through finely ground coffee at high pressure. "
        "A typical shot takes about 25 to 30 seconds to pull. "
        "Cold brew steeps coarse grounds in cold water for twelve hours or more.",
    ),
    "/pages/volcanoes": (
        "Volcanoes",
        "A volcano is an opening in the crust where molten rock reaches the surface. "
        "Shield volcanoes have gentle slopes built from runny basalt lava flows. "
        "Stratovolcanoes are steep cones made of alternating layers of lava and ash.",
    ),
    "/pages/bees": (
        "Honey bees",
        "Honey bees communicate the location of flowers with a waggle dance. "
        "A colony has a single queen that lays up to two thousand eggs per day. "
        "Worker bees make honey by evaporating water from nectar.",
    ),
}
BEES_QUESTION = "How do honey bees tell each other where flowers are?"
OFF_TOPIC_QUESTION = "What is the capital of Mongolia?"


def _page(url: str, title: str, text: str, *, truncated: bool = False) -> Page:
    return Page(url=url, title=title, text=text, truncated=truncated)


# --- words, sentences and BM25 -------------------------------------------------------------------------


def test_tokenize_drops_stopwords_and_stems_lightly() -> None:
    assert tokenize("What is blocking the streams?") == ["block", "stream"]
    assert stem("blocked") == stem("blocks") == stem("blocking") == "block"
    assert stem("stopped") == "stop"
    assert stem("changes") == stem("changed") == stem("change")
    assert tokenize("HTTP/3 über QUIC") == ["http", "3", "über", "quic"]


def test_bm25_ranks_rare_terms_above_common_ones() -> None:
    docs = [tokenize(text) for text in ("the stream is slow", "a stream of packets", "quic packet stream")]
    index = BM25Index(docs)
    query = tokenize("quic stream")
    scores = [index.score(query, i) for i in range(len(docs))]
    # "stream" is in every document, "quic" only in the last: the rare term decides.
    assert scores[2] > scores[0] and scores[2] > scores[1]
    assert index.idf("quic") > index.idf("stream") > 0
    assert index.idf("unseen") > index.idf("quic")
    assert index.score(tokenize("volcano"), 0) == 0.0


def test_bm25_normalises_for_length() -> None:
    short = tokenize("quic is fast")
    long = tokenize("quic is fast but this sentence also rambles on about many other unrelated things")
    index = BM25Index([short, long, tokenize("nothing here")])
    assert index.score(["quic"], 0) > index.score(["quic"], 1) > 0
    no_length_norm = BM25Index([short, long, tokenize("nothing here")], b=0.0)
    assert no_length_norm.score(["quic"], 0) == pytest.approx(no_length_norm.score(["quic"], 1))


def test_bm25_coverage_is_the_matched_share_of_query_terms() -> None:
    index = BM25Index([tokenize("honey bees dance"), tokenize("lava flows")])
    assert index.coverage(tokenize("honey bees"), 0) == 1.0
    assert index.coverage(tokenize("honey bees"), 1) == 0.0
    assert index.coverage(tokenize("honey bee lava volcano"), 0) == 0.5


def test_split_sentences_returns_slices_with_wrapping_folded() -> None:
    text = (
        "Heading line\n"
        "Python has lists, e.g. [1, 2]. They grow  as needed! Do they shrink? Yes.\n"
        "- A bullet point that ends without punctuation\n"
        "Dr. Smith wrote J. R. Example in 2024. Version 3.11 is faster."
    )
    sentences = split_sentences(text)
    assert sentences == [
        "Heading line",
        "Python has lists, e.g. [1, 2].",
        "They grow as needed!",
        "Do they shrink?",
        "Yes.",
        "A bullet point that ends without punctuation",
        "Dr. Smith wrote J. R. Example in 2024.",
        "Version 3.11 is faster.",
    ]
    folded = " ".join(text.split())
    assert all(sentence in folded for sentence in sentences)


def test_hard_wrapped_lines_join_into_one_sentence_but_headings_do_not() -> None:
    text = (
        "The nonlocal statement\n\n"
        'The "nonlocal" statement causes the listed identifiers to refer to\n'
        "previously bound variables in the nearest enclosing scope excluding\n"
        "globals. This is important.\n"
        "Next Paragraph Title\n"
        "Another line here."
    )
    assert split_sentences(text) == [
        "The nonlocal statement",
        'The "nonlocal" statement causes the listed identifiers to refer to previously bound variables in the '
        "nearest enclosing scope excluding globals.",
        "This is important.",
        "Next Paragraph Title",
        "Another line here.",
    ]


def test_unframe_strips_the_frame_and_the_truncation_marker() -> None:
    body = "First sentence of the page is here. Second sentence is cut off somewhere in the mid"
    shown, cut = truncate_text(body, max_chars=60)
    text, truncated = unframe(frame_untrusted(shown, source="http://x/page"))
    assert cut and truncated
    assert text == body[:60]
    assert unframe(frame_untrusted("whole text", source="s")) == ("whole text", False)
    assert unframe(frame_untrusted("", source="s")) == ("", False)


# --- evidence selection ---------------------------------------------------------------------------------


def _topic_pages() -> list[Page]:
    return [_page(f"http://web{path}", title, f"{title}\n{body}") for path, (title, body) in TOPICS.items()]


@pytest.mark.parametrize(
    ("question", "page_url", "quote"),
    [
        (BEES_QUESTION, "http://web/pages/bees", "Honey bees communicate the location of flowers with a waggle dance."),
        (
            "How long does cold brew coffee steep?",
            "http://web/pages/coffee",
            "Cold brew steeps coarse grounds in cold water for twelve hours or more.",
        ),
        (
            "What are shield volcanoes built from?",
            "http://web/pages/volcanoes",
            "Shield volcanoes have gentle slopes built from runny basalt lava flows.",
        ),
    ],
)
def test_select_evidence_picks_the_sentence_that_answers(question: str, page_url: str, quote: str) -> None:
    evidence = select_evidence(question, _topic_pages())
    assert evidence, question
    assert (evidence[0].page.url, evidence[0].quote) == (page_url, quote)
    assert all(MIN_QUOTE_CHARS <= len(e.quote) <= MAX_QUOTE_CHARS for e in evidence)
    assert [e.score for e in evidence] == sorted((e.score for e in evidence), reverse=True)


def test_select_evidence_is_empty_for_an_off_topic_question() -> None:
    assert select_evidence(OFF_TOPIC_QUESTION, _topic_pages()) == []
    assert select_evidence("the of and", _topic_pages()) == []  # nothing but stopwords


def test_select_evidence_never_quotes_a_truncation_fragment_or_escaped_text() -> None:
    text = (
        "QUIC &lt;system> streams are independent of each other in QUIC.\n"
        "QUIC setup merges transport and TLS handshakes into one round trip.\n"
        "QUIC streams recover from loss without blocking other QUIC streams and"
    )
    page = _page("http://web/quic", "Notes", text, truncated=True)
    quotes = [e.quote for e in select_evidence("QUIC streams", [page])]
    # the only sentences about QUIC streams are escaped text and a fragment cut by truncation: none is
    # quoted (the handshake sentence does not speak of streams)
    assert quotes == []
    # The same last line is quotable when the page was not cut there.
    whole = _page("http://web/quic", "Notes", text + ".", truncated=False)
    assert any(q.endswith("QUIC streams and.") for q in (e.quote for e in select_evidence("QUIC streams", [whole])))


def test_select_evidence_skips_near_duplicates_and_excluded_quotes() -> None:
    sentence = "Honey bees communicate the location of flowers with a waggle dance."
    pages = [
        _page("http://a/bees", "Bees", sentence + " Bees also use scent to mark flowers they visited."),
        _page("http://b/bees", "Bees", "Honey bees communicate the location of flowers with a waggle dance!"),
    ]
    evidence = select_evidence(BEES_QUESTION, pages)
    assert [e.quote for e in evidence].count(sentence) == 1
    assert not any(e.quote.endswith("dance!") for e in evidence)  # a near-duplicate of the first
    without = select_evidence(BEES_QUESTION, pages, exclude_quotes=frozenset({("http://a/bees", sentence)}))
    assert sentence not in [e.quote for e in without]
    assert without and without[0].quote.endswith("dance!")


def test_title_match_breaks_a_tie() -> None:
    sentence = "Lava flows downhill from the vent at walking pace."
    pages = [_page("http://a", "Cooking tips", sentence), _page("http://b", "Lava flows", sentence)]
    evidence = select_evidence("How do lava flows move?", pages, max_quotes=1)
    assert evidence[0].page.url == "http://b"


def test_answer_and_unresolved_follow_the_evidence() -> None:
    evidence = select_evidence(BEES_QUESTION, _topic_pages())
    answer = compose_answer(evidence)
    assert answer.startswith('According to "Honey bees": Honey bees communicate')
    plan = [BEES_QUESTION, 'What do the sources say about "flowers"?', 'What do the sources say about "wasps"?']
    assert unresolved(BEES_QUESTION, plan, evidence) == [plan[2]]
    assert unresolved(BEES_QUESTION, plan, []) == plan


def test_plan_and_queries_are_bounded_and_deterministic() -> None:
    question = "What changed in HTTP/3 compared to HTTP/2?"
    plan = plan_for(question)
    assert plan[0] == question and 1 <= len(plan) <= 4
    assert all(3 <= len(item) <= 300 for item in plan)
    assert plan == plan_for(question)
    assert search_query(question) == "changed HTTP/3 compared HTTP/2"
    assert simpler_query(question) == "HTTP/3 HTTP/2"
    assert plan_for("hi") == ["About: hi", 'What do the sources say about "hi"?']
    # A capital that only opens the question is not a name; "Rust" later in a question is.
    assert simpler_query("Compare borrowing in Rust with garbage collection") == "Rust collection"
    long_plan = plan_for("word " * 200)
    assert all(len(item) <= 300 for item in long_plan)


# --- the model, driven directly ------------------------------------------------------------------------

_TOOLS = [ToolDefinition(name=name) for name in ("record_plan", "web_search", "fetch_url")]
_OUTPUT = ToolDefinition(name="final_result", description="The final report.")


def _params(*, tools: list[ToolDefinition] = _TOOLS) -> ModelRequestParameters:
    return ModelRequestParameters(
        function_tools=tools, output_tools=[_OUTPUT], output_mode="tool", allow_text_output=False
    )


async def _ask(messages: list[ModelMessage], *, tools: list[ToolDefinition] = _TOOLS) -> ModelResponse:
    return await OfflineResearchModel().request(messages, None, _params(tools=tools))


def _calls(response: ModelResponse) -> list[ToolCallPart]:
    return [part for part in response.parts if isinstance(part, ToolCallPart)]


def _search_results(urls: list[str]) -> str:
    lines = [f"{i}. Result {i}\n   {url}\n   a snippet" for i, url in enumerate(urls, start=1)]
    return frame_untrusted("\n".join(lines) or "(no results)", source="web_search:fake")


def _fetch_result(url: str, title: str, body: str) -> dict[str, Any]:
    return FetchUrlResult(
        url=url,
        final_url=url,
        title=title,
        content_type="text/html",
        truncated=False,
        total_chars=len(body),
        text=frame_untrusted(body, source=url),
    ).model_dump()


def _history_through_fetch(question: str) -> list[ModelMessage]:
    """A history as the agent records it, up to the fetched pages."""
    urls = [f"http://web{path}" for path in TOPICS]
    return [
        ModelRequest(parts=[UserPromptPart(question)]),
        ModelResponse(parts=[ToolCallPart("record_plan", {"sub_questions": [question]}, tool_call_id="p")]),
        ModelRequest(parts=[ToolReturnPart("record_plan", {"ok": True, "plan": [question]}, tool_call_id="p")]),
        ModelResponse(parts=[ToolCallPart("web_search", {"query": "q"}, tool_call_id="s")]),
        ModelRequest(
            parts=[
                ToolReturnPart(
                    "web_search",
                    {"ok": True, "query": "q", "result_count": 3, "results": _search_results(urls)},
                    tool_call_id="s",
                )
            ]
        ),
        ModelResponse(parts=[ToolCallPart("fetch_url", {"url": u}, tool_call_id=f"f{i}") for i, u in enumerate(urls)]),
        ModelRequest(
            parts=[
                ToolReturnPart("fetch_url", _fetch_result(u, title, f"{title}\n{body}"), tool_call_id=f"f{i}")
                for i, (u, (title, body)) in enumerate(zip(urls, TOPICS.values(), strict=True))
            ]
        ),
    ]


async def test_each_step_follows_from_the_history() -> None:
    question = BEES_QUESTION
    history = _history_through_fetch(question)
    first = _calls(await _ask(history[:1]))
    assert [(c.tool_name, c.args) for c in first] == [("record_plan", {"sub_questions": plan_for(question)})]
    second = _calls(await _ask(history[:3]))
    assert [(c.tool_name, c.args) for c in second] == [
        ("web_search", {"query": search_query(question), "max_results": 5})
    ]
    third = _calls(await _ask(history[:5]))
    assert [c.tool_name for c in third] == ["fetch_url"] * 3
    assert [c.args for c in third] == [{"url": f"http://web{path}"} for path in TOPICS]
    assert len({c.tool_call_id for c in third}) == 3
    final = _calls(await _ask(history))
    assert [c.tool_name for c in final] == ["final_result"]
    report = ResearchReport.model_validate(final[0].args)
    assert report.citations[0].url == "http://web/pages/bees"


async def test_failed_fetches_move_on_to_unfetched_results_once_then_answer_honestly() -> None:
    urls = [f"http://web/r{i}" for i in range(5)]
    failure = {"ok": False, "error": "http_error", "message": "HTTP 500"}
    history: list[ModelMessage] = [
        *_history_through_fetch(BEES_QUESTION)[:4],
        ModelRequest(
            parts=[
                ToolReturnPart(
                    "web_search",
                    {"ok": True, "query": "q", "result_count": 5, "results": _search_results(urls)},
                    tool_call_id="s",
                )
            ]
        ),
    ]
    for round_number in (1, 2):
        calls = _calls(await _ask(history))
        expected = urls[:3] if round_number == 1 else urls[3:]
        assert [c.args for c in calls] == [{"url": u} for u in expected]
        history += [
            ModelResponse(parts=calls),
            ModelRequest(parts=[ToolReturnPart("fetch_url", failure, tool_call_id=c.tool_call_id) for c in calls]),
        ]
    report = ResearchReport.model_validate(_calls(await _ask(history))[0].args)
    assert report.citations == [] and report.answer.startswith(NOT_FOUND)
    assert "could be fetched" in report.answer


async def test_a_retry_drops_the_citations_it_complained_about() -> None:
    history = _history_through_fetch(BEES_QUESTION)
    first = _calls(await _ask(history))[0]
    report = ResearchReport.model_validate(first.args)
    rejected = report.citations[0]
    complaint = CitationProblem(index=0, citation=rejected, reason="the quote does not occur verbatim").describe()
    feedback_part = RetryFeedbackPart(
        f"Some citations could not be verified:\n- {complaint}", retry=RetryInfo(cause="model_retry", attempt=1)
    )
    for retry in (
        ToolReturnPart(
            "final_result",
            f"Some citations could not be verified:\n- {complaint}",
            tool_call_id=first.tool_call_id,
            outcome="retried",
        ),
        feedback_part,
        UserPromptPart(feedback_part.model_response()),  # as `prepare_messages` renders it
    ):
        again = _calls(await _ask([*history, ModelResponse(parts=[first]), ModelRequest(parts=[retry])]))
        revised = ResearchReport.model_validate(again[0].args)
        assert (rejected.url, rejected.quote) not in {(c.url, c.quote) for c in revised.citations}, retry
        assert rejected.quote not in revised.answer
        # The rest of the evidence still stands: only the rejected citation goes.
        assert revised.citations and not revised.answer.startswith(NOT_FOUND)
        assert [c for c in report.citations if c != rejected] == revised.citations[: len(report.citations) - 1]


async def test_an_unexplained_retry_gets_an_honest_answer_without_citations() -> None:
    history = _history_through_fetch(BEES_QUESTION)
    first = _calls(await _ask(history))[0]
    retry = ToolReturnPart("final_result", "answer: field required", tool_call_id=first.tool_call_id, outcome="retried")
    again = _calls(await _ask([*history, ModelResponse(parts=[first]), ModelRequest(parts=[retry])]))
    report = ResearchReport.model_validate(again[0].args)
    assert report.citations == [] and report.answer.startswith(NOT_FOUND)


async def test_without_research_tools_it_says_it_cannot_research() -> None:
    response = await _ask([ModelRequest(parts=[UserPromptPart(BEES_QUESTION)])], tools=_TOOLS[:1])
    report = ResearchReport.model_validate(_calls(response)[0].args)
    assert "cannot research" in report.answer and "web_search, fetch_url" in report.answer
    assert report.citations == [] and report.unresolved == [BEES_QUESTION]


async def test_text_output_is_used_when_there_is_no_output_tool() -> None:
    params = ModelRequestParameters(function_tools=[], output_mode="text", allow_text_output=True)
    response = await OfflineResearchModel().request([ModelRequest(parts=[UserPromptPart("Why?")])], None, params)
    assert isinstance(response.parts[0], TextPart) and "cannot research" in response.parts[0].content


async def test_usage_is_estimated_from_what_it_reads_and_writes_at_zero_cost() -> None:
    history = _history_through_fetch(BEES_QUESTION)
    before_fetch = await _ask(history[:5])
    after_fetch = await _ask(history)
    assert 0 < before_fetch.usage.input_tokens < after_fetch.usage.input_tokens
    fetched_chars = sum(len(p.model_response_str()) for p in history[-1].parts if isinstance(p, ToolReturnPart))
    assert after_fetch.usage.input_tokens - before_fetch.usage.input_tokens >= fetched_chars // 4
    written = sum(len(c.tool_name) + len(c.args_as_json_str()) for c in _calls(after_fetch))
    assert after_fetch.usage.output_tokens == pytest.approx(written / 4, abs=2)
    assert after_fetch.usage.cost == Decimal(0)
    assert (await _ask(history)).parts == after_fetch.parts  # a fresh instance decides the same


# --- the model with pydantic-ai's loop and fake tools -----------------------------------------------------


def _fake_agent(
    *, search_hits: list[str], validator_rejects_first: bool = False
) -> tuple[Agent[None, ResearchReport], list[str]]:
    """The research tools' shapes without a database: enough to test retries and empty searches."""
    agent: Agent[None, ResearchReport] = Agent(output_type=ResearchReport, retries={"tools": 2, "output": 3})
    queries: list[str] = []
    pages = {f"http://web{path}": value for path, value in TOPICS.items()}

    @agent.tool_plain
    def record_plan(sub_questions: list[str]) -> dict[str, Any]:
        return {"ok": True, "plan": sub_questions}

    @agent.tool_plain
    def web_search(query: str, max_results: int = 5) -> dict[str, Any]:
        queries.append(query)
        hits = search_hits[:max_results]
        return {"ok": True, "query": query, "result_count": len(hits), "results": _search_results(hits)}

    @agent.tool_plain
    def fetch_url(url: str) -> dict[str, Any]:
        title, body = pages[url]
        return _fetch_result(url, title, f"{title}\n{body}")

    @agent.output_validator
    def verify(ctx: RunContext[None], report: ResearchReport) -> ResearchReport:
        if validator_rejects_first and report.citations and ctx.retry == 0:
            problem = CitationProblem(index=0, citation=report.citations[0], reason="not verbatim")
            raise ModelRetry(f"Some citations could not be verified:\n- {problem.describe()}")
        return report

    return agent, queries


async def test_a_rejected_citation_is_dropped_on_the_retry() -> None:
    agent, _ = _fake_agent(search_hits=[f"http://web{path}" for path in TOPICS], validator_rejects_first=True)
    result = await agent.run(BEES_QUESTION, model=offline_model())
    retried = [
        part
        for message in result.all_messages()
        for part in getattr(message, "parts", [])
        if isinstance(part, ToolReturnPart) and part.outcome == "retried"
    ]
    assert len(retried) == 1
    first_args = next(
        part.args_as_dict()
        for message in result.all_messages()
        if isinstance(message, ModelResponse)
        for part in message.parts
        if isinstance(part, ToolCallPart) and part.tool_name == "final_result"
    )
    rejected = first_args["citations"][0]
    assert rejected["quote"] not in [c.quote for c in result.output.citations]
    assert result.output.citations, "the other evidence is kept"


async def test_an_empty_search_is_retried_once_with_fewer_terms_then_answered_honestly() -> None:
    agent, queries = _fake_agent(search_hits=[])
    question = "What changed in HTTP/3 compared to HTTP/2?"
    result = await agent.run(question, model=offline_model())
    assert queries == [search_query(question), simpler_query(question)]
    assert len(queries[1].split()) < len(queries[0].split())
    assert result.output.citations == [] and result.output.answer.startswith(NOT_FOUND)
    assert result.output.unresolved == [question]


# --- whole runs through the runtime, the real tools and the fixture web ----------------------------------


async def test_research_run_completes_with_verified_quotes(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server, pages=TOPICS)
    result = await runtime.research(BEES_QUESTION, model=OfflineResearchModel())

    assert result.status == "completed", result.error
    report = result.report
    assert report is not None and report.citations
    assert report.citations[0].url == http_server.url("/pages/bees")
    assert report.citations[0].quote == "Honey bees communicate the location of flowers with a waggle dance."
    sources = await runtime.store.load_sources(result.run_id)
    assert check_citations(report, sources) == []
    for citation in report.citations:  # exact substrings, not merely after normalisation
        assert citation.quote in sources[citation.url].text
        assert citation.quote in report.answer

    view = await runtime.get_run(result.run_id)
    names = [step.name for step in view.steps]
    assert names.index("record_plan") < names.index("web_search") < names.index("fetch_url")
    assert names.count("web_search") == 1 and names.count("fetch_url") == 3
    assert result.usage.requests == 4  # plan, search, the three fetches in one response, answer
    assert all(step.ok is not False for step in view.steps), "no retries, no failed tools"
    assert view.run.plan == plan_for(BEES_QUESTION)
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.usage.cost == Decimal(0) and view.run.cost_known


@pytest.mark.parametrize(
    ("question", "path", "needle"),
    [
        ("How long does cold brew coffee steep?", "/pages/coffee", "twelve hours"),
        ("What are shield volcanoes built from?", "/pages/volcanoes", "basalt"),
    ],
)
async def test_the_quote_comes_from_the_page_on_the_topic(
    runtime: Runtime, http_server: LocalHTTPServer, question: str, path: str, needle: str
) -> None:
    install_web(http_server, pages=TOPICS)
    result = await runtime.research(question, model=OfflineResearchModel())
    assert result.report is not None and result.report.citations
    # Citations come grouped by page, the page with the best sentence first, in reading order.
    citations = result.report.citations
    assert citations[0].url == http_server.url(path)
    assert any(needle in c.quote for c in citations if c.url == http_server.url(path))


async def test_usage_grows_with_page_size(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    title, body = TOPICS["/pages/bees"]
    install_web(http_server, pages={"/small/bees": (title, body)})
    small = await runtime.research(BEES_QUESTION, model=OfflineResearchModel())
    filler = " ".join(f"Note {i}: hives are kept in box number {i} of the apiary." for i in range(80))
    install_web(http_server, pages={"/large/bees": (title, f"{body} {filler}")})
    large = await runtime.research(BEES_QUESTION, model=OfflineResearchModel())

    assert small.status == large.status == "completed"
    assert small.usage.input_tokens > 0
    assert large.usage.input_tokens > small.usage.input_tokens + len(filler) // 4
    assert large.report is not None and small.report is not None
    assert large.report.citations[0].quote == small.report.citations[0].quote


async def test_an_off_topic_question_gets_an_honest_answer(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server, pages=TOPICS)
    result = await runtime.research(OFF_TOPIC_QUESTION, model=OfflineResearchModel())
    assert result.status == "completed", result.error
    assert result.report is not None
    assert result.report.citations == []
    assert "could not find" in result.report.answer
    assert result.report.answered is False
    assert "never mention" in result.report.answer and "Mongolia" in result.report.answer
    assert result.report.unresolved[-1] == OFF_TOPIC_QUESTION
    assert "Mongolia" in result.report.unresolved[0]


async def test_a_search_with_no_results_gets_an_honest_answer(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    http_server.route(
        "/search",
        lambda _r: Response(body=json.dumps({"results": []}).encode(), headers={"Content-Type": "application/json"}),
    )
    result = await runtime.research(BEES_QUESTION, model=OfflineResearchModel())
    assert result.status == "completed", result.error
    assert result.report is not None and result.report.citations == []
    assert result.report.answer.startswith(NOT_FOUND)
    view = await runtime.get_run(result.run_id)
    assert [s.name for s in view.steps if s.kind == "tool"].count("web_search") == 2
    assert "fetch_url" not in [s.name for s in view.steps]
    assert http_server.hits["/search"] == 2


async def test_two_runs_give_the_same_report(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server, pages=TOPICS)
    first = await runtime.research(BEES_QUESTION, model=OfflineResearchModel())
    second = await runtime.research(BEES_QUESTION, model="factory:agent.offline.model:offline_model")
    assert first.report is not None and second.report is not None
    assert first.report.model_dump() == second.report.model_dump()
    assert (first.usage.input_tokens, first.usage.output_tokens) == (
        second.usage.input_tokens,
        second.usage.output_tokens,
    )


class _RecordingModel(OfflineResearchModel):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[list[ModelMessage], ModelRequestParameters, ModelResponse]] = []

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        response = await super().request(messages, model_settings, model_request_parameters)
        self.requests.append((list(messages), model_request_parameters, response))
        return response


async def test_a_fresh_model_continues_any_recorded_history_the_same_way(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    """What a resumed run relies on: each turn is a function of the messages, not of the instance."""
    install_web(http_server, pages=TOPICS)
    recording = _RecordingModel()
    result = await runtime.research(BEES_QUESTION, model=recording)
    assert result.status == "completed" and len(recording.requests) == 4
    for messages, params, response in recording.requests:
        again = await OfflineResearchModel().request(messages, None, params)
        assert again.parts == response.parts
        assert again.usage == response.usage


def test_a_named_subject_is_answered_only_from_text_about_it() -> None:
    makedirs = _page(
        "corpus://python-docs/modules/os#makedirs",
        "os.makedirs(name, mode=511, exist_ok=False)",
        "os.makedirs(name, mode=511, exist_ok=False)\n\n"
        "Super-mkdir; create a leaf directory and all intermediate ones.",
    )
    off = select_evidence("How does super() work?", [makedirs])
    assert off == []  # shares the word, is not about super(): the model abstains rather than quote it
    entry = _page(
        "corpus://python-docs/modules/builtins#super",
        "class super(type, object_or_type=None)",
        "class super(type, object_or_type=None)\n\nsuper() -> same as super(__class__, <first argument>)\n"
        "Typical use to call a cooperative superclass method.",
    )
    on = select_evidence("How does super() work?", [makedirs, entry])
    assert on and {e.page.url for e in on} == {entry.url}
    # the entry names super, so its sentences count as about it even when they do not say "super"
    assert "Typical use to call a cooperative superclass method." in [e.quote for e in on]
