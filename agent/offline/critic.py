"""A deterministic critic for the offline model: grades by text matching, no LLM.

`grade_answer` is the one definition of the offline grading (the eval suite's `OfflineCritic` uses it
too): the mean of the share of the question's content words the answer speaks to and the share of the
answer's sentences a cited quote supports, halved when the answer passes on instructions addressed to
a model. `OfflineCriticModel` is a pydantic-ai `Model` that reads the critic's request and answers
with that grade as a `Critique`, so offline runs go through the same critic agent as real ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, UserPromptPart
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage

from agent.offline.text_match import (
    content_terms,
    covers,
    is_not_found,
    relays_instructions,
    split_claims,
    unquoted_words,
)
from agent.review.critic import Critique

SUPPORT_OVERLAP: Final = 0.8
"""A paraphrased claim counts as supported when this share of its content words is in a single cited quote."""
MAX_UNQUOTED_WORDS: Final = 2
"""Content words an extractive claim may carry beyond its quotes (joins, a stray label) and still count."""
DECLINE_SCORE: Final = 0.7
"""An honest "could not find": without knowing whether the question is answerable, it passes, just."""
MODEL_NAME: Final = "offline-critic"
CHARS_PER_TOKEN: Final = 4


@dataclass(frozen=True, kw_only=True)
class Grade:
    """The parts of an offline grade, for critiques and for the eval suite's reasons."""

    wanted: frozenset[str]
    covered: frozenset[str]
    claims: tuple[str, ...]
    unsupported: tuple[str, ...]
    relays: bool

    @property
    def coverage(self) -> float:
        return len(self.covered) / len(self.wanted) if self.wanted else 1.0

    @property
    def support(self) -> float:
        return (len(self.claims) - len(self.unsupported)) / len(self.claims) if self.claims else 0.0

    @property
    def score(self) -> float:
        score = (self.coverage + self.support) / 2
        return score / 2 if self.relays else score


def _supported(claim: str, unquoted: set[str], quotes: Sequence[str]) -> bool:
    """Made of verbatim quotes (one or several run together), or a close paraphrase of one quote."""
    if len(unquoted) <= MAX_UNQUOTED_WORDS:
        return True
    terms = content_terms(claim)
    return any(len(terms & content_terms(quote)) >= SUPPORT_OVERLAP * len(terms) for quote in quotes)


def grade_answer(question: str, answer: str, quotes: Sequence[str]) -> Grade:
    wanted = content_terms(question)
    said = content_terms(answer)
    claims = split_claims(answer)
    unsupported = [
        claim
        for claim, rest in zip(claims, unquoted_words(answer, quotes), strict=True)
        if not _supported(claim, rest, quotes)
    ]
    return Grade(
        wanted=frozenset(wanted),
        covered=frozenset(term for term in wanted if covers(term, said)),
        claims=tuple(claims),
        unsupported=tuple(unsupported),
        relays=relays_instructions(answer),
    )


def offline_critique(question: str, answer: str, quotes: Sequence[str]) -> Critique:
    answer = answer.strip()
    if not answer:
        return Critique(score=0.0, issues=["The report has no answer."], missing=[question])
    if is_not_found(answer) and not quotes:
        return Critique(score=DECLINE_SCORE, issues=["The answer says the sources do not answer the question."])
    grade = grade_answer(question, answer, quotes)
    missing = sorted(grade.wanted - grade.covered)
    issues: list[str] = []
    if missing:
        issues.append(f"The answer does not address: {', '.join(missing)}.")
    if grade.unsupported:
        issues.append(f"{len(grade.unsupported)} of {len(grade.claims)} sentences are not supported by a cited quote.")
    if not grade.claims:
        issues.append("The answer makes no claim a quote could support.")
    if grade.relays:
        issues.append("The answer repeats instructions addressed to a model; remove them.")
    return Critique(
        score=round(grade.score, 4),
        issues=issues,
        missing=missing[:12],
        unsupported_claims=list(grade.unsupported[:12]),
    )


def _request_payload(messages: Sequence[ModelMessage]) -> dict[str, object]:
    """The JSON report `agent.review.critic.critique_request` framed into the last user message."""
    for message in reversed(messages):
        if not isinstance(message, ModelRequest):
            continue
        for part in message.parts:
            if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                text = part.content
                start, end = text.find("{"), text.rfind("}")
                if start != -1 and end > start:
                    data = json.loads(text[start : end + 1])
                    if isinstance(data, dict):
                        return data
    raise ValueError("the offline critic found no report to grade in the request")


class OfflineCriticModel(Model):
    """Answers the critic agent with `offline_critique` of the report in its request; free and deterministic."""

    def __init__(self, *, settings: ModelSettings | None = None) -> None:
        super().__init__(settings=settings)

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    @property
    def system(self) -> str:
        return "offline"

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        _, params = self.prepare_request(model_settings, model_request_parameters)
        payload = _request_payload(messages)
        citations = payload.get("citations")
        cited = citations if isinstance(citations, list) else []
        quotes = [str(c.get("quote", "")) for c in cited if isinstance(c, dict)]
        critique = offline_critique(str(payload.get("question", "")), str(payload.get("answer", "")), quotes)
        args = critique.model_dump(mode="json")
        usage = RequestUsage(
            input_tokens=math.ceil(len(json.dumps(payload)) / CHARS_PER_TOKEN),
            output_tokens=math.ceil(len(json.dumps(args)) / CHARS_PER_TOKEN),
        )
        usage.cost = Decimal(0)
        if not params.output_tools:
            raise ValueError("the offline critic needs the critic agent's output tool")
        return ModelResponse(
            parts=[ToolCallPart(params.output_tools[0].name, args, tool_call_id=f"critic-{len(messages)}")],
            usage=usage,
            model_name=self.model_name,
            provider_name=self.system,
            finish_reason="tool_call",
        )
