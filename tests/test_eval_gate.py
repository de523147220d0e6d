"""The eval gate, proven on the real system: a baseline is blessed from the unchanged offline agent, then
each seeded regression (patched in-process) must fail the gate, and unchanged code must never fail it.

Eight python_reference cases run through `run_suite` on a fresh database of the session's PostgreSQL
server each time, as `python -m evals` does; here each fresh database is a clone of the session's
template in which the Python reference is already indexed (tests/conftest.py), so the identical
indexing is not redone for every suite.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml

import agent.citations
import agent.offline.model
import agent.research_agent
import evals._task
from agent.offline.policy import Evidence, Page
from agent.prompts import load_prompt, research_prompt
from agent.review import critic_rubric
from agent.review.critic import revise_prompt
from evals import SuiteOptions, SuiteResult, load_baseline, run_suite, write_reports
from evals._gate import save_baseline
from evals._suite import parse_prompt_versions, prompt_versions
from tests._databases import DocsTemplate, create_database, drop_database, with_database
from tools import CorpusStore, FetchedPage

DATASETS = Path(__file__).resolve().parent.parent / "datasets"
SUBSET = (
    "nonlocal-statement",
    "global-statement",
    "decorators",
    "default-arguments",
    "lambda",
    "modulo",
    "sequence-types",
    "rmtree",
)


@pytest.fixture(scope="module", autouse=True)
def _fresh_databases_with_the_python_docs(python_docs_template: DocsTemplate) -> Iterator[None]:
    """Every suite still runs on a new database of its own, dropped afterwards; it starts indexed."""

    @asynccontextmanager
    async def fresh_database(admin_url: str) -> AsyncIterator[str]:
        name = f"evals_{uuid.uuid4().hex[:12]}"
        await create_database(admin_url, name, template=python_docs_template.name)
        try:
            yield with_database(admin_url, name)
        finally:
            await drop_database(admin_url, name)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evals._task, "_fresh_database", fresh_database)
        yield


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """python_reference cut down to SUBSET, under its own name so its thresholds apply."""
    data = yaml.safe_load((DATASETS / "python_reference.yaml").read_text(encoding="utf-8"))
    data["cases"] = [case for case in data["cases"] if case["name"] in SUBSET]
    assert len(data["cases"]) == len(SUBSET)
    path = tmp_path_factory.mktemp("datasets") / "python_reference.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
async def options(subset: Path, postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> SuiteOptions:
    """Gate options whose baseline was blessed from the unchanged system in this session."""
    options = SuiteOptions(
        datasets=[subset], baseline_dir=tmp_path_factory.mktemp("baselines"), server_url=postgres_url
    )
    blessed = await run_suite(dataclasses.replace(options, bless=True))
    assert blessed.passed, blessed.failures  # no earlier baseline: the thresholds alone must hold
    assert (options.baseline_dir / "python_reference.offline.json").exists()  # type: ignore[operator]
    return options


def _failing(result: SuiteResult) -> set[str]:
    return {v.name for d in result.datasets for v in d.gate.verdicts if not v.passed}


def _means(result: SuiteResult) -> Mapping[str, float]:
    return {v.name: v.current for v in result.datasets[0].gate.verdicts}


async def test_unchanged_code_never_fails_the_gate(options: SuiteOptions) -> None:
    for _ in range(3):
        result = await run_suite(options)
        assert result.passed, result.failures
        for verdict in result.datasets[0].gate.verdicts:
            assert verdict.test is not None and verdict.test.mean_diff == 0.0, verdict


async def test_unchecked_citations_with_fabricated_quotes_fail_on_grounding(
    options: SuiteOptions, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(agent.research_agent, "check_citations", lambda report, sources: [])
    monkeypatch.setattr(agent.citations, "check_citations", lambda report, sources: [])
    select = agent.offline.model.select_evidence

    def paraphrasing(*args: object, **kwargs: object) -> list[Evidence]:
        chosen = select(*args, **kwargs)  # type: ignore[arg-type]
        return [dataclasses.replace(e, quote="In other words, " + e.quote.replace(" the ", " a ")) for e in chosen]

    monkeypatch.setattr(agent.offline.model, "select_evidence", paraphrasing)
    result = await run_suite(options)
    assert not result.passed
    assert "grounding" in _failing(result)
    assert _means(result)["grounding"] < 0.5
    markdown, data = write_reports(result, tmp_path)
    text = markdown.read_text(encoding="utf-8")
    assert text.startswith("# Eval report: FAILED") and "grounding regressed" in text
    assert "**Question:** What does the nonlocal statement do?" in text and "quote not in" in text
    # Before the per-case detail: the cases that moved, worst first, each with both answers.
    changed = text.index("### Cases that changed against the baseline")
    assert changed < text.index("### Cases (worst first)")
    block = text[changed : text.index("### Cases (worst first)")]
    assert "Baseline answer:" in block and "Current answer:" in block and "In other words" in block
    assert "(not recorded)" not in block  # the blessed baseline kept each case's answer
    assert '"passed": false' in data.read_text(encoding="utf-8")


async def test_broken_extraction_fails_on_key_facts(options: SuiteOptions, monkeypatch: pytest.MonkeyPatch) -> None:
    get_document = CorpusStore.get_document

    async def garbled(self: CorpusStore, url: str) -> FetchedPage | None:
        page = await get_document(self, url)
        if page is None:
            return None
        return dataclasses.replace(page, text=" ".join(page.text.split()[::2]))  # every other word lost

    monkeypatch.setattr(CorpusStore, "get_document", garbled)
    result = await run_suite(options)
    assert not result.passed
    assert "key_facts" in _failing(result)


async def test_a_policy_that_skips_fetching_fails_on_trajectory(
    options: SuiteOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_return, next_step = agent.offline.model._read_return, agent.offline.model._next_step
    hit = re.compile(r"^\d+\. ([^\n]*)\n {3}(\S+)\n {3}([^\n]*)$", re.MULTILINE)

    def snippets_as_pages(transcript: agent.offline.model._Transcript, part: object, call: object) -> None:
        read_return(transcript, part, call)  # type: ignore[arg-type]
        if getattr(part, "tool_name", None) == agent.offline.model.SEARCH_TOOL:
            results, _ = agent.offline.model.unframe(str(agent.offline.model._as_dict(part.content).get("results", "")))  # type: ignore[attr-defined]
            transcript.pages += [Page(url=m[2], title=m[1], text=m[3]) for m in hit.finditer(results)]

    def answer_instead_of_fetching(transcript: agent.offline.model._Transcript) -> object:
        step = next_step(transcript)
        if isinstance(step, agent.offline.model._Calls) and step.tool == agent.offline.model.FETCH_TOOL:
            return agent.offline.model._answer(transcript)  # answer from the search snippets
        return step

    monkeypatch.setattr(agent.offline.model, "_read_return", snippets_as_pages)
    monkeypatch.setattr(agent.offline.model, "_next_step", answer_instead_of_fetching)
    result = await run_suite(options)
    assert not result.passed
    assert "trajectory" in _failing(result)
    assert _means(result)["trajectory"] < 0.9


async def test_a_prompt_change_is_reported_not_evaluated_and_require_live_fails_on_it(
    options: SuiteOptions, tmp_path: Path
) -> None:
    # A baseline records the version of every prompt a run reads, not only the research prompt's.
    assert options.baseline_dir is not None
    blessed = load_baseline(options.baseline_dir / "python_reference.offline.json")
    assert blessed is not None
    recorded = blessed.prompt_versions
    assert blessed.prompt_version == recorded["research"]
    assert recorded == prompt_versions() and {"research", "critic", "revise", "critic-rubric"} <= set(recorded)

    # An older baseline, blessed under another research prompt when only that one was recorded: what a pull
    # request changing it looks like, against a baseline from before this change.
    old = tmp_path / "old"
    old.mkdir()
    save_baseline(
        old / "python_reference.offline.json",
        blessed.model_copy(update={"prompt_version": "research@before", "prompt_versions": {}}),
    )
    result = await run_suite(dataclasses.replace(options, baseline_dir=old))
    assert result.passed and result.prompt_unevaluated  # the scores cannot move: the offline model never reads it
    assert result.unevaluated_prompts == ["research"]
    assert any("research@before →" in note and "NOT evaluated" in note for note in result.notes)
    # What the old baseline does not record cannot be compared: said, and not counted as a change.
    assert any("record no version of the critic, critic-rubric, revise prompt(s)" in note for note in result.notes)
    markdown, _ = write_reports(result, tmp_path)
    assert "NOT evaluated" in markdown.read_text(encoding="utf-8")

    # The critic's prompt changed since a baseline that records it: flagged the same way, and with
    # --require-live the gate fails on it.
    critic = tmp_path / "critic"
    critic.mkdir()
    before = {**recorded, "critic": "critic@before"}
    save_baseline(
        critic / "python_reference.offline.json",
        blessed.model_copy(update={"prompt_versions": before}),
    )
    strict = await run_suite(dataclasses.replace(options, baseline_dir=critic, require_live=True))
    assert strict.unevaluated_prompts == ["critic"]
    assert [note for note in strict.notes if "NOT evaluated" in note] == [
        f"the prompts changed (critic@before → {recorded['critic']}) but the offline model does not read prompts:"
        " the prompt change was NOT evaluated (gate it with a real model: --model ... --against origin/main)"
    ]
    assert not strict.passed and strict.failures == [
        "--require-live: the critic prompt changed and no model that reads prompts judged the change"
    ]
    assert strict.prompt_versions == recorded


def test_prompt_versions_are_the_versions_runs_record() -> None:
    versions = prompt_versions()
    assert versions["research"] == research_prompt().version  # what every run stores as its prompt_version
    assert versions["critic-rubric"] == critic_rubric().version
    assert versions["revise"] == revise_prompt().version
    assert versions["critic"] == load_prompt("critic").version
    assert parse_prompt_versions(versions["research"]) == {"research": versions["research"]}
