"""A report the agent could not answer, and the critic's reasons, as people and scripts see them (issue 12).

`ask` and `runs show` title such a report "Not answered" (never "Answer") with what is missing under it,
the run is still `completed` (exit 0), `--json` carries `report.answered` and the critic's `review`, and
the eval report shows per case whether the run answered and why its critic doubted it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from agent.cli.render import critic_brief, report_json, report_panel, run_detail
from agent.report import Citation, ResearchReport
from agent.review.critic import Critique, Review
from agent.settings import Settings
from budgets import Budget
from evals import CaseResult, DatasetResult, GateResult, SuiteResult, render_markdown
from evals._report import to_json
from evals._task import critic_verdict, open_environment
from evals._types import CriticVerdict, EvalInputs, EvalOutput, FixtureDocument
from tests import scripted
from tests._cli import run_cli as cli
from tests._http_server import LocalHTTPServer
from tests._processes import worker_env
from tests._web import install_web

UNANSWERED = "factory:tests.scripted:unanswered_model"
CRITIC = "factory:tests.scripted:weak_critic"
SEE_ALSO = "https://docs.python.org/3/reference/simple_stmts.html#the-nonlocal-statement"
QUOTE = "The nonlocal statement causes the listed identifiers to refer to previously bound variables."


def _flat(text: str) -> str:
    """Rendered text without panel borders and with whitespace runs as one space: wrapping cannot hide a phrase."""
    return " ".join(text.replace("│", " ").split())


def _rendered(renderable: object, width: int = 80) -> str:
    console = Console(width=width, record=True)
    console.print(renderable)
    return console.export_text()


def _report(**fields: object) -> dict[str, object]:
    return ResearchReport.model_validate(fields).model_dump(mode="json")


def test_a_not_answered_report_is_titled_so_and_lists_what_is_missing_first() -> None:
    report = _report(answered=False, answer=scripted.NOT_ANSWERED, unresolved=[scripted.MISSING])
    text = _rendered(report_panel(report, label="m"))
    first = text.splitlines()[0]
    assert "Not answered · m" in first and "Answer" not in first
    flat = _flat(text)
    assert f"{scripted.NOT_ANSWERED} Missing from the sources: - {scripted.MISSING}" in flat

    answered = _rendered(report_panel(_report(answer="Yes.", unresolved=["the date"]), label="m"))
    assert "Answer · m" in answered.splitlines()[0] and "Not answered" not in answered
    assert "Could not establish: - the date" in _flat(answered)


def test_citations_show_their_see_also_link_only_when_set() -> None:
    local = Citation(url="corpus://python-docs/topics/nonlocal", title="nonlocal", quote=QUOTE, see_also=SEE_ALSO)
    web = Citation(url="https://example.org/quic", title="QUIC", quote="QUIC streams are independent.")
    text = _rendered(report_panel(_report(answer="It rebinds.", citations=[local, web])), width=120)
    lines = text.splitlines()
    [url_line] = [n for n, line in enumerate(lines) if "corpus://python-docs/topics/nonlocal" in line]
    assert f"see also: {SEE_ALSO}" in lines[url_line + 1]
    assert text.count("see also:") == 1  # the web citation has none


def test_the_json_report_always_carries_answered() -> None:
    assert report_json({"answer": "old run", "citations": []}) == {
        "answered": True,
        "answer": "old run",
        "citations": [],
    }
    assert report_json({"answered": False, "answer": "no"})["answered"] is False  # type: ignore[index]
    assert report_json(None) is None


def _review(*, revised: bool = False) -> dict[str, object]:
    """A stored review: the first report graded 0.35 and its revision skipped, or revised to 0.80 and kept."""
    weak = Critique(score=0.35, issues=["No date."], missing=["the year"], unsupported_claims=["It was 2021."])
    base = Review(threshold=0.7, critic_model="function:critic", critic_prompt="critic@x", first=weak)
    if revised:
        review = base.model_copy(
            update={"second": Critique(score=0.8, issues=["Cite the RFC."]), "revision": "revised", "kept": "revision"}
        )
    else:
        review = base.model_copy(update={"revision": "skipped", "skip_reason": "turns: 6 of 7 used", "kept": "first"})
    return review.model_dump(mode="json")


def test_the_critic_brief_gives_the_kept_reports_score_and_every_kind_of_reason() -> None:
    skipped = _flat(_rendered(critic_brief(_review())))
    assert "Critic · function:critic" in skipped
    assert "score 0.35 (threshold 0.70) · revision skipped: turns: 6 of 7 used" in skipped
    for reason in ("- No date.", "- missing: the year", "- unsupported: It was 2021."):
        assert reason in skipped, skipped

    revised = _flat(_rendered(critic_brief(_review(revised=True))))
    assert "score 0.80 (threshold 0.70) · revised from 0.35, kept the revision report" in revised
    assert "- Cite the RFC." in revised and "No date." not in revised  # the kept report's critique only


def test_ask_and_runs_show_render_a_not_answered_run_with_the_critics_reasons(
    settings: Settings, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    env = worker_env(settings, RESEARCH_AGENT_CRITIC_MODEL=CRITIC)

    asked = cli(env, "ask", "When was QUIC standardised?", "--model", UNANSWERED)
    assert asked.returncode == 0, asked.stderr  # still `completed`
    lines = asked.stdout.splitlines()
    assert "Not answered · factory:tests.scripted:unanswered_model" in lines[0], asked.stdout
    assert not any("Answer ·" in line for line in lines)
    flat = _flat(asked.stdout)
    assert f"Missing from the sources: - {scripted.MISSING}" in flat, asked.stdout
    assert f"Critic · {CRITIC}" in flat and "score 0.35 (threshold 0.70)" in flat, asked.stdout
    for reason in (scripted.CRITIC_ISSUE, f"missing: {scripted.CRITIC_MISSING}", scripted.CRITIC_UNSUPPORTED):
        assert reason in flat, asked.stdout
    summary = flat[flat.rindex("run ") :]  # the last line, wrapped at 80 columns
    assert " · completed · not answered · " in summary and summary.endswith("· critic 0.35"), summary
    assert max(len(line) for line in lines) <= 80

    data = json.loads(cli(env, "ask", "When was QUIC standardised?", "--model", UNANSWERED, "--json").stdout)
    assert (data["status"], data["report"]["answered"]) == ("completed", False)
    assert data["report"]["unresolved"] == [scripted.MISSING]
    first = data["review"]["first"]
    assert (first["score"], first["issues"]) == (0.35, [scripted.CRITIC_ISSUE])
    assert first["unsupported_claims"] == [scripted.CRITIC_UNSUPPORTED]

    shown = cli(env, "runs", "show", data["run_id"][:8])
    assert shown.returncode == 0, shown.stderr
    flat = _flat(shown.stdout)
    assert "Not answered" in flat and "Answer" not in flat
    assert f"first report: score 0.35 - {scripted.CRITIC_ISSUE} - missing: {scripted.CRITIC_MISSING}" in flat
    assert f"unsupported: {scripted.CRITIC_UNSUPPORTED}" in flat
    assert f"Missing from the sources: - {scripted.MISSING}" in flat

    detail = json.loads(cli(env, "runs", "show", data["run_id"], "--json").stdout)
    assert detail["report"]["answered"] is False and detail["review"] == data["review"]

    listed = cli(env, "runs", "list")
    assert listed.stdout.count("(not answered)") == 2, listed.stdout


async def test_runs_show_titles_an_answered_report_answer(settings: Settings, http_server: LocalHTTPServer) -> None:
    from agent.api import Runtime
    from agent.durable.database import create_pool

    install_web(http_server)
    assert settings.database_url
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        runtime = Runtime(pool=pool, settings=settings)
        model, _ = scripted.research_model()
        result = await runtime.research("What is QUIC?", model=model)
        assert result.status == "completed" and result.report is not None and result.report.answered
        text = _rendered(run_detail(await runtime.get_run(result.run_id)))
        assert "─ Answer ─" in text and "Not answered" not in text
        await runtime.aclose()
    finally:
        await pool.close()


# --- the eval report ------------------------------------------------------------------------------------


def test_critic_verdict_reads_the_kept_critique_or_why_there_is_none() -> None:
    assert critic_verdict(None) is None
    skipped = critic_verdict(_review())
    assert skipped is not None and skipped.score == 0.35 and skipped.unsupported_claims == ["It was 2021."]
    assert skipped.reason() == "0.35: No date.; missing: the year; unsupported: It was 2021.; turns: 6 of 7 used"
    revised = critic_verdict(_review(revised=True))
    assert revised is not None and revised.reason() == "0.80: Cite the RFC."
    ungraded = Review(
        threshold=0.7, critic_model="c", critic_prompt="p", revision="skipped", skip_reason="critic failed"
    )
    verdict = critic_verdict(ungraded.model_dump(mode="json"))
    assert verdict is not None and verdict.reason() == "not graded: critic failed"


def _suite(*outputs: EvalOutput) -> SuiteResult:
    case = CaseResult(name="quic-date", inputs=EvalInputs(question="When was QUIC standardised?"), metadata=None)
    case.outputs = list(outputs)
    case.add("grounding", 0.0, "no citations")
    dataset = DatasetResult(
        name="d",
        path=Path("d.yaml"),
        cases=[case],
        gate=GateResult(dataset="d", verdicts=[]),
        baseline=None,
        baseline_file=Path("d.json"),
    )
    return SuiteResult(
        model="m",
        prompt_version="research@x",
        judge_version="j",
        git_revision=None,
        repeat=len(outputs),
        datasets=[dataset],
        duration_seconds=1.0,
    )


def test_the_eval_report_shows_per_case_whether_the_run_answered_and_its_critics_reason() -> None:
    verdict = CriticVerdict(critic_model="offline", score=0.35, issues=["No date."], missing=["the year"])
    output = EvalOutput(
        run_id="r" * 36,
        status="completed",
        answered=False,
        answer=scripted.NOT_ANSWERED,
        unresolved=[scripted.MISSING],
        review=verdict,
    )
    markdown = render_markdown(_suite(output))
    assert "| [quic-date](#quic-date) | no | 0.00 |" in markdown
    assert f"**Not answered:**\n\n> {scripted.NOT_ANSWERED}" in markdown and "**Answer:**" not in markdown
    assert f"**Unresolved:** {scripted.MISSING}" in markdown
    assert "**Run's critic** (offline): 0.35: No date.; missing: the year" in markdown
    [run] = to_json(_suite(output))["datasets"][0]["cases"][0]["runs"]
    assert run["answered"] is False and run["review"]["score"] == 0.35 and run["review"]["issues"] == ["No date."]

    answered = output.model_copy(update={"answered": True, "review": None})
    both = render_markdown(_suite(answered, output))
    assert "| [quic-date](#quic-date) | 1/2 | 0.00 |" in both and "critic**" not in both  # the first run shown


async def test_the_eval_task_reads_answered_and_the_critic_from_the_run_store(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESEARCH_AGENT_CRITIC_MODEL", CRITIC)
    document = FixtureDocument(url="https://example.org/quic", title="QUIC", body="QUIC runs over UDP. " * 5)
    inputs = EvalInputs(question="When was QUIC standardised?", collection="quic", documents=[document])
    budget = Budget(max_cost_usd=None)
    async with open_environment(scripted.unanswered_model(), server_url=postgres_url, budget=budget) as env:
        output = await env.research(inputs)
    assert output.status == "completed", output.error
    assert output.answered is False and output.unresolved == [scripted.MISSING]
    assert output.review is not None and output.review.critic_model == CRITIC
    assert output.review.score == 0.35 and output.review.issues == [scripted.CRITIC_ISSUE]
