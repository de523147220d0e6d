"""The typed output of a research run."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Citation(BaseModel):
    """A source backing the answer: the quote must appear verbatim in the page this run fetched."""

    url: str = Field(description="The URL exactly as passed to fetch_url.")
    title: str = Field(default="", description="The page title.")
    quote: str = Field(
        min_length=8,
        max_length=1_000,
        description="An exact, verbatim sentence or phrase copied from the fetched page text.",
    )
    see_also: str | None = Field(
        default=None,
        description="Leave empty. Filled in by the agent: the public web page of a local document, when there is one.",
    )


class ResearchReport(BaseModel):
    """The agent's final answer."""

    answered: bool = Field(
        default=True,
        description="False when the sources do not establish an answer: then `answer` says so plainly "
        "and `unresolved` says what is missing.",
    )
    answer: str = Field(description="A direct answer to the question, grounded in the cited quotes.")
    citations: list[Citation] = Field(default_factory=list, description="Evidence for the answer.")
    unresolved: list[str] = Field(
        default_factory=list, description="What the agent could not establish from its sources."
    )


class PartialFindings(BaseModel):
    """What a run had gathered when it stopped without a report."""

    plan: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list, description="URLs fetched so far.")
    notes: list[str] = Field(default_factory=list, description="The model's last text, if any.")
