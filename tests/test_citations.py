"""Citation verification: fabricated citations go back to the model and never reach a stored report."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime
from agent.citations import UNCITED_NOTE, as_not_answered, check_citations, is_uncited_answer, normalize_text
from agent.report import Citation, ResearchReport
from tests._http_server import LocalHTTPServer
from tests._web import install_web
from tests.scripted import ResearchScript, read_history
from tools import FetchedPage

PAGE = FetchedPage(
    url="https://example.org/quic",
    final_url="https://example.org/quic/",
    status_code=200,
    content_type="text/html",
    title="QUIC",
    text="HTTP/3 runs over QUIC instead of TCP.\n  It uses   “independent” streams.",
    fetched_at=datetime.now(UTC),
)


def _report(*citations: Citation) -> ResearchReport:
    return ResearchReport(answer="a", citations=list(citations))


def test_quotes_match_after_whitespace_case_and_quote_normalisation() -> None:
    ok = Citation(url="https://example.org/quic", quote='it uses "independent" STREAMS.')
    via_final_url = Citation(url="https://example.org/quic/", quote="HTTP/3 runs over QUIC")
    assert check_citations(_report(ok, via_final_url), {PAGE.url: PAGE}) == []
    assert normalize_text("  A\n\tB ") == "a b"


def test_unfetched_urls_and_absent_quotes_are_problems() -> None:
    unfetched = Citation(url="https://elsewhere.example/", quote="HTTP/3 runs over QUIC")
    absent = Citation(url=PAGE.url, quote="HTTP/3 runs over carrier pigeons")
    problems = check_citations(_report(unfetched, absent), {PAGE.url: PAGE})
    assert [(p.index, p.reason) for p in problems] == [
        (0, "this URL was not fetched in this run"),
        (1, "the quote does not occur verbatim in the fetched page"),
    ]


async def test_a_fabricated_quote_is_sent_back_and_fixed(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server)
    script = ResearchScript(max_fetches=1, fabricate_quote=True)
    result = await runtime.research("What is HTTP/3?", model=FunctionModel(script))

    assert result.status == "completed"
    assert result.report is not None and len(result.report.citations) == 1
    assert "never on the page" not in result.report.citations[0].quote
    steps = (await runtime.get_run(result.run_id)).steps
    rejected = [s for s in steps if s.name == "final_result" and not s.ok]
    assert len(rejected) == 1 and "could not be verified" in rejected[0].summary


async def test_a_model_that_keeps_fabricating_never_stores_a_fabricated_citation(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    urls = install_web(http_server)
    honest = ResearchScript(max_fetches=1)

    def liar(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        state = read_history(messages)
        if not state.fetched:
            return honest.decide(messages, info)
        citations = [
            {"url": urls[0], "title": "", "quote": "QUIC was invented in 1850 by pigeons."},
            {"url": "https://never-fetched.example/", "title": "", "quote": "A quote from nowhere at all."},
        ]
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, {"answer": "made up", "citations": citations})]
        )

    result = await runtime.research("What is HTTP/3?", model=FunctionModel(liar))

    assert result.status == "completed"
    assert result.report is not None
    assert result.report.citations == []
    assert any("could not be verified" in note for note in result.report.unresolved)
    assert result.report.answered is False  # with every citation gone, nothing establishes the answer
    assert UNCITED_NOTE in result.report.unresolved
    stored = (await runtime.get_run(result.run_id)).run.report
    assert stored is not None and stored["citations"] == [] and stored["answered"] is False


async def test_an_uncited_answer_is_sent_back_then_cited(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server)
    honest = ResearchScript(max_fetches=1)
    answers = 0

    def hasty(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal answers
        state = read_history(messages)
        if not state.fetched or answers:
            return honest.decide(messages, info)
        answers += 1
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"answer": "HTTP/3 is fast."})])

    result = await runtime.research("What is HTTP/3?", model=FunctionModel(hasty))

    assert result.status == "completed" and result.report is not None
    assert result.report.answered and result.report.citations  # the second answer cites its page
    steps = (await runtime.get_run(result.run_id)).steps
    rejected = [s for s in steps if s.name == "final_result" and not s.ok]
    assert len(rejected) == 1 and "cites nothing" in rejected[0].summary


def test_an_uncited_answer_is_marked_not_answered() -> None:
    report = ResearchReport(answer="It is fast.")
    assert is_uncited_answer(report)
    marked = as_not_answered(report)
    assert marked.answered is False and marked.unresolved == [UNCITED_NOTE]
    assert not is_uncited_answer(marked)
    assert not is_uncited_answer(_report(Citation(url=PAGE.url, quote="HTTP/3 runs over QUIC")))
