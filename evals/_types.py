"""What a case gives the task, what the task returns, and what a case expects (the YAML's shapes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.report import Citation

__all__ = [
    "CaseMetadata",
    "CriticVerdict",
    "EvalInputs",
    "EvalOutput",
    "FixtureDocument",
    "KeyFact",
    "SourceText",
    "StepView",
]

KeyFact = str | list[str]
"""A phrase the answer must contain, or a list of alternative phrases any one of which will do."""


class FixtureDocument(BaseModel):
    """A page a case puts into its own corpus collection before it runs (e.g. one carrying an injection)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Its identity and what search results and citations show, e.g. corpus://...")
    title: str
    body: str


class EvalInputs(BaseModel):
    """One research task: the question, and for corpus cases the collection it may search."""

    model_config = ConfigDict(extra="forbid")

    question: str
    search: Literal["corpus", "web"] = Field(
        default="corpus", description="`corpus`: the local corpus (offline-capable); `web`: the live web."
    )
    collection: str | None = Field(
        default=None,
        description="Search only this corpus collection (None: every collection, i.e. the Python docs).",
    )
    documents: list[FixtureDocument] = Field(
        default_factory=list, description="Documents indexed into `collection` before the case runs."
    )


class CaseMetadata(BaseModel):
    """What a good run looks like for this case; read by the evaluators."""

    model_config = ConfigDict(extra="forbid")

    key_facts: list[KeyFact] = Field(
        default_factory=list, description="Phrases the answer must contain (case- and punctuation-insensitive)."
    )
    must_not_say: list[str] = Field(
        default_factory=list, description="Phrases whose presence is a failure: a false premise, an injected claim."
    )
    expect_answer: bool | None = Field(
        default=True,
        description="True: answerable. False: the honest outcome is 'could not find', without citations. "
        "None: either a supported answer or an honest 'could not find' is fine.",
    )
    expect_fetch: bool = Field(default=True, description="Whether a good run reads at least one page.")
    sources: list[str] = Field(
        default_factory=list,
        description="URLs of the documents that answer the question (a module's URL covers its entries): an "
        "answer citing one of them but missing the key facts is partial (right source), not wrong (off the question).",
    )
    forbidden_urls: list[str] = Field(
        default_factory=list, description="Substrings no fetched URL may contain (links planted by an injection)."
    )
    tags: list[str] = Field(default_factory=list)
    notes: str = ""


class StepView(BaseModel):
    """One stored step of the run (`agent.durable.store.StepRecord`), as the evaluators need it."""

    kind: str
    name: str
    args: Any = None
    ok: bool = True
    summary: str = ""


class SourceText(BaseModel):
    """A page the run fetched, as stored in `run_sources` (the full text citations are checked against)."""

    url: str
    final_url: str
    title: str
    text: str


class CriticVerdict(BaseModel):
    """The run's own critic on the report it kept (`agent.review.critic.Review`): why a person reading the
    eval report might doubt an answer, next to the evaluators' scores."""

    critic_model: str = ""
    score: float | None = Field(default=None, description="None: the critic could not grade the report.")
    issues: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    unsupported_claims: list[str] = Field(default_factory=list)
    note: str | None = Field(default=None, description="Why the report was not graded or not revised.")

    def reason(self) -> str:
        """One line: `0.35: issue; missing: ...; unsupported: ...`."""
        reasons = [*self.issues]
        reasons += [f"missing: {item}" for item in self.missing]
        reasons += [f"unsupported: {claim}" for claim in self.unsupported_claims]
        if self.note:
            reasons.append(self.note)
        head = "not graded" if self.score is None else f"{self.score:.2f}"
        return f"{head}: {'; '.join(reasons)}" if reasons else f"{head}: no issues"


class EvalOutput(BaseModel):
    """Everything the evaluators look at, taken from the run store after the run stopped."""

    run_id: str
    status: str
    stop_reason: str | None = None
    error: str | None = None
    answered: bool = Field(
        default=True,
        description="The report's `answered`: False when the agent said its sources do not establish an "
        "answer, and when the run ended without a report (see `status`).",
    )
    answer: str = ""
    citations: list[Citation] = Field(default_factory=list)
    unresolved: list[str] = Field(default_factory=list)
    review: CriticVerdict | None = Field(default=None, description="The run's critic, if it graded the run.")
    requests: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    duration_seconds: float = 0.0
    steps: list[StepView] = Field(default_factory=list)
    sources: list[SourceText] = Field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
