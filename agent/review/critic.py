"""The critic: the evaluator half of the evaluator-optimizer loop.

After a report passes citation verification, a separate agent (its own prompt: `prompts/critic.md`
framing the report it reads, then the rubric `review/rubric.md` it shares with the eval suite's LLM
judge; and its own model setting, which can be a cheaper model) grades it into a typed `Critique`. Below the
threshold the runner asks the research agent for one revision, with the critique, and grades that
too; there is never a second revision. What happened is kept as a `Review` on the run.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Final, Literal

from pydantic import BaseModel, Field
from pydantic_ai import Agent
from pydantic_ai.settings import ModelSettings

from agent.citations import find_page, quote_section
from agent.prompts import Prompt, load_prompt
from agent.report import Citation, ResearchReport
from tools import FetchedPage, frame_untrusted

DEFAULT_THRESHOLD: Final = 0.7
CRITIC_SETTINGS: Final = ModelSettings(temperature=0.0, max_tokens=800)
"""Pinned: a critic that samples differently each time would revise at random."""
CRITIQUE_TAG: Final = "critique"
REPORT_SOURCE: Final = "report under review"


class Critique(BaseModel):
    """The critic's verdict on one report."""

    score: float = Field(ge=0.0, le=1.0, description="1.0: answers the question, grounded, complete, safe.")
    issues: list[str] = Field(
        default_factory=list, max_length=12, description="Concrete, fixable problems, most important first."
    )
    missing: list[str] = Field(
        default_factory=list, max_length=12, description="Parts of the question the answer does not address."
    )
    unsupported_claims: list[str] = Field(
        default_factory=list, max_length=12, description="Sentences of the answer that no cited quote supports."
    )

    def summary(self) -> str:
        return f"score {self.score:.2f}" + (f": {'; '.join(self.issues)}" if self.issues else ": no issues")


RevisionOutcome = Literal["not_needed", "revised", "skipped", "stopped"]
"""`skipped`: the critic could not grade, or the budget could not pay for a revision; `stopped`: the
revision began but hit a cap or failed, so the first report stands."""


class Review(BaseModel):
    """What the critic decided for a run, stored as `runs.review` and shown by `runs show`."""

    threshold: float
    critic_model: str
    critic_prompt: str = Field(description="Prompt version (name@content-hash) the critic graded with.")
    first: Critique | None = None
    first_report: ResearchReport | None = Field(default=None, description="The report the first critique graded.")
    revision: RevisionOutcome | None = None
    skip_reason: str | None = Field(default=None, description="Why a grading or the revision did not happen.")
    second: Critique | None = None
    revised_report: ResearchReport | None = None
    kept: Literal["first", "revision"] | None = None


@cache
def critic_rubric() -> Prompt:
    """The grading criteria (`agent/review/rubric.md`): the one rubric of the run's critic and the eval
    suite's LLM judge, each of which only adds how to read its input and what to return."""
    text = resources.files("agent.review").joinpath("rubric.md").read_text(encoding="utf-8")
    return Prompt(name="critic-rubric", text=text.strip())


@cache
def critic_prompt() -> Prompt:
    """The critic's instructions: how to read the framed report (`prompts/critic.md`), then the rubric."""
    return Prompt(name="critic", text=f"{load_prompt('critic').text}\n\n{critic_rubric().text}")


def revise_prompt() -> Prompt:
    return load_prompt("revise")


@cache
def critic_agent() -> Agent[None, Critique]:
    """The critic has no tools and no deps: it reads one report and returns a `Critique`."""
    return Agent(
        output_type=Critique,
        instructions=critic_prompt().text,
        model_settings=CRITIC_SETTINGS,
        retries=2,
        name="research-critic",
    )


def _cited(citation: Citation, sources: dict[str, FetchedPage]) -> dict[str, str]:
    """A citation as the critic reads it, with the section of its page the quote sits in: a docstring
    sentence rarely names its own function, but the entry it belongs to does."""
    page = find_page(citation.url, sources)
    section = quote_section(page.title, page.text, citation.quote) if page is not None else ""
    return {"url": citation.url, "title": citation.title, "section": section, "quote": citation.quote}


def critique_request(question: str, report: ResearchReport, sources: dict[str, FetchedPage]) -> str:
    """The critic's user message: the report as JSON in an untrusted-data frame (it was built from pages)."""
    payload = {
        "question": question,
        "answered": report.answered,
        "answer": report.answer,
        "citations": [_cited(c, sources) for c in report.citations],
        "unresolved": report.unresolved,
        "fetched_sources": [{"url": url, "title": page.title} for url, page in sorted(sources.items())],
    }
    data = json.dumps(payload, indent=1, ensure_ascii=False)
    return "Grade this report.\n" + frame_untrusted(data, source=REPORT_SOURCE)


def revision_request(critique: Critique) -> str:
    """The research agent's next user message when a report needs its one revision."""
    # The critique may quote page text: as JSON with every `<` escaped, nothing in it can close the tag.
    data = json.dumps(critique.model_dump(mode="json"), indent=1, ensure_ascii=False).replace("<", "\\u003c")
    return f"{revise_prompt().text}\n\n<{CRITIQUE_TAG}>\n{data}\n</{CRITIQUE_TAG}>"
