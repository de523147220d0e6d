"""A deterministic critic for the offline model: grades by text matching, no LLM.

`grade_answer` is the one definition of the offline grading (the eval suite's `OfflineCritic` uses it
too). It asks what a careful reader with the cited pages open would ask, in order of how badly a "no"
misleads the user:

1. **Is the evidence about the thing asked?** When the question names something in code form (see
   `agent.offline.subject`: `super`, `__slots__`, the walrus operator), some cited quote, or the section
   of its page it sits in, must speak of it. A verbatim quote about something else ("Super-mkdir…" for
   `super`) caps the score at `OFF_SUBJECT_CAP`. A plain-English question ("How do I delete a
   directory?") has no named subject; then at least `MIN_TOPICAL` of its topic words must appear in the
   quotes or their sections, or the score is capped at `OFF_TOPIC_CAP`.
2. **Does a claim contradict its own quote?** A sentence that paraphrases a quote but flips it (adds or
   drops a negation, or says "inclusive" where the quote says "exclusive") caps the score at
   `CONTRADICTION_CAP`.
3. **Coverage and support**: the mean of the share of the question's topic words the answer speaks to
   and the share of the answer's sentences a cited quote supports, halved when the answer passes on
   instructions addressed to a model.

`OfflineCriticModel` is a pydantic-ai `Model` that reads the critic's request and answers with that grade
as a `Critique`, so offline runs go through the same critic agent as real ones.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, UserPromptPart
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage

from agent.offline.subject import FRAME_WORDS, Subject, subject_of
from agent.offline.text_match import (
    content_terms,
    covers,
    is_not_found,
    relays_instructions,
    split_claims,
    unquoted_words,
)
from agent.review.critic import Critique

SUPPORT_OVERLAP: Final = 0.6
"""A paraphrased claim counts as supported when this share of its new content words (those not already in
the question) is in the cited quotes and their sections."""
MAX_UNQUOTED_WORDS: Final = 2
"""Content words an extractive claim may carry beyond its quotes (joins, a stray label) and still count."""
DECLINE_SCORE: Final = 0.7
"""An honest "could not find": without knowing whether the question is answerable, it passes, just."""
OFF_SUBJECT_CAP: Final = 0.3
"""The most an answer scores when no quote is about the subject the question names."""
MIN_TOPICAL: Final = 0.5
MIN_COVERAGE: Final = 2 / 3
OFF_TOPIC_CAP: Final = 0.5
"""At most this when a question without a named subject has less than MIN_TOPICAL of its topic words in
the evidence, or when the answer and its evidence together leave a third or more of them unaddressed."""
PARAPHRASE_OVERLAP: Final = 0.5
"""A claim paraphrases a quote when this share of its content words is in that quote (polarity check)."""
CONTRADICTION_CAP: Final = 0.3
UNSUPPORTED_WEIGHT: Final = 0.4
UNCOVERED_WEIGHT: Final = 0.4
"""What an answer loses for claims its quotes do not support and for question words it leaves alone:
a paraphrase that adds detail is a weaker answer, not a wrong one; the caps above are for wrong ones."""
MODEL_NAME: Final = "offline-critic"
CHARS_PER_TOKEN: Final = 4

_NEGATED: Final = re.compile(
    r"\b(?:cannot|can ?not|can't|does not|doesn't|do not|don't|is not|isn't|are not|aren't|will not|won't"
    r"|never|not)\s+(?:be\s+)?([a-z]{3,})(?:\s+([a-z]{3,}))?",
    re.IGNORECASE,
)
"""A negated verb and the word after it: "cannot *contain statements*", "does not *raise* ..."."""
_NEGATION_BEFORE: Final = re.compile(r"\b(?:not|no|never|cannot|n't|without)\b[^.;:]{0,20}$", re.IGNORECASE)
_ANTONYMS: Final = (
    ("inclusive", "exclusive"),
    ("mutable", "immutable"),
    ("ascending", "descending"),
    ("shallow", "deep"),
    ("blocking", "non-blocking"),
    ("synchronous", "asynchronous"),
    ("in place", "new list"),
    ("in-place", "new list"),
    ("public", "private"),
    ("optional", "required"),
    ("before", "after"),
)
"""Pairs where saying one while the quote says the other flips the meaning."""


@dataclass(frozen=True)
class Cited:
    """A cited quote and the heading of the section of its page it sits in (`agent.citations.quote_section`),
    when known."""

    quote: str
    section: str = ""


@dataclass(frozen=True, kw_only=True)
class Grade:
    """The parts of an offline grade, for critiques and for the eval suite's reasons."""

    subject: Subject
    on_subject: bool
    subject_missing: tuple[str, ...] = ()
    """Parts of a subject with several parts ("the else clause of a try statement") no quote speaks of."""
    topical: float
    wanted: frozenset[str]
    covered: frozenset[str]
    claims: tuple[str, ...]
    support_shares: tuple[float, ...]
    """Per claim: 1 when a cited quote supports it, else the share of its new words in the evidence."""
    contradicted: tuple[str, ...]
    relays: bool

    @property
    def unsupported(self) -> tuple[str, ...]:
        return tuple(claim for claim, share in zip(self.claims, self.support_shares, strict=True) if share < 1.0)

    @property
    def coverage(self) -> float:
        wanted = len(self.wanted) + len(self.subject_missing)
        return len(self.covered) / wanted if wanted else 1.0

    @property
    def support(self) -> float:
        return sum(self.support_shares) / len(self.claims) if self.claims else 0.0

    @property
    def off_topic(self) -> bool:
        return not self.subject and self.topical < MIN_TOPICAL

    @property
    def score(self) -> float:
        score = 1.0 - UNSUPPORTED_WEIGHT * (1.0 - self.support) - UNCOVERED_WEIGHT * (1.0 - self.coverage)
        if self.relays:
            score /= 2
        if not self.on_subject:
            score = min(score, OFF_SUBJECT_CAP)
        elif self.off_topic or self.coverage < MIN_COVERAGE:
            score = min(score, OFF_TOPIC_CAP)
        if self.contradicted:
            score = min(score, CONTRADICTION_CAP)
        return score


def topic_terms(question: str) -> set[str]:
    """The question's content words minus how-to phrasing (`FRAME_WORDS`)."""
    return {t for t in content_terms(question) if t not in FRAME_WORDS and not t.isdigit()}


def _support_share(claim: str, unquoted: set[str], evidence: set[str], given: set[str]) -> float:
    """1.0 for a claim made of verbatim quotes (one or several run together) or a paraphrase whose new
    words (those the question did not already use) are at least SUPPORT_OVERLAP in the evidence; less,
    in proportion, for a paraphrase that adds more than its quotes say."""
    if len(unquoted) <= MAX_UNQUOTED_WORDS:
        return 1.0
    new = {t for t in content_terms(claim) if not covers(t, given)}
    if not new:
        return 1.0
    return min(1.0, sum(covers(t, evidence) for t in new) / (SUPPORT_OVERLAP * len(new)))


def _negated_verbs(text: str) -> set[tuple[str, str]]:
    """(verb, the word after it) for every negated verb that is a content word."""
    found: set[tuple[str, str]] = set()
    for match in _NEGATED.finditer(text):
        verb, after = match.group(1), match.group(2) or ""
        if content_terms(verb) and content_terms(after):  # without an object, too little to compare
            found.add((_stem_verb(verb), _stem_verb(after)))
    return found


def _stem_verb(word: str) -> str:
    word = word.casefold()
    for suffix in ("ing", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _affirms(text: str, verb: str, after: str) -> bool:
    """`text` uses the verb, followed within two words by `after`, with no negation just before it:
    "can contain statements" affirms what "cannot contain statements" denies."""
    words = list(re.finditer(r"[a-z]{3,}", text.casefold()))
    for index, match in enumerate(words):
        if _stem_verb(match.group()) != verb or _NEGATION_BEFORE.search(text[: match.start()]):
            continue
        following = {_stem_verb(w.group()) for w in words[index + 1 : index + 3]}
        if after in following:
            return True
    return False


def _polarity_flipped(claim: str, quote: str) -> bool:
    """The quote negates a verb the claim affirms ("cannot contain" / "can contain"), or the reverse, or
    the claim says one of an antonym pair where the quote says the other."""
    claim_negated, quote_negated = _negated_verbs(claim), _negated_verbs(quote)
    if any(_affirms(claim, verb, after) for verb, after in quote_negated - claim_negated):
        return True
    if any(_affirms(quote, verb, after) for verb, after in claim_negated - quote_negated):
        return True
    claim_folded, quote_folded = claim.casefold(), quote.casefold()
    for a, b in _ANTONYMS:
        for said, other in ((a, b), (b, a)):
            if _has(claim_folded, said) and _has(quote_folded, other) and not _has(quote_folded, said):
                return True
    return False


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text) is not None


def _contradicts(claim: str, quotes: Sequence[str]) -> bool:
    """The claim restates one quote (PARAPHRASE_OVERLAP of its words) with the opposite polarity."""
    terms = content_terms(claim)
    if not terms:
        return False
    best = max(quotes, key=lambda q: len(terms & content_terms(q)), default="")
    if not best or len(terms & content_terms(best)) < PARAPHRASE_OVERLAP * len(terms):
        return False
    return _polarity_flipped(claim, best)


def grade_answer(question: str, answer: str, cited: Sequence[Cited]) -> Grade:
    quotes = [c.quote for c in cited]
    evidence_texts = [f"{c.section}\n{c.quote}" for c in cited]
    subject = subject_of(question)
    named = set().union(*(content_terms(name) for name in subject.names)) if subject else set()
    wanted = topic_terms(question) - named  # the subject check judges those
    evidence = set().union(*(content_terms(text) for text in evidence_texts)) if cited else set()
    said = content_terms(answer)
    claims = split_claims(answer)
    given = content_terms(question)
    unquoted = unquoted_words(answer, quotes)
    return Grade(
        subject=subject,
        on_subject=not subject or subject.mentioned_in("\n".join(evidence_texts)),
        subject_missing=tuple(group[0] for group in subject.uncovered(evidence_texts)) if subject else (),
        topical=sum(covers(t, evidence) for t in wanted) / len(wanted) if wanted else 1.0,
        wanted=frozenset(wanted),
        covered=frozenset(term for term in wanted if covers(term, said) or covers(term, evidence)),
        claims=tuple(claims),
        support_shares=tuple(
            _support_share(c, rest, evidence, given) for c, rest in zip(claims, unquoted, strict=True)
        ),
        contradicted=tuple(
            claim
            for claim, rest in zip(claims, unquoted, strict=True)
            if len(rest) > MAX_UNQUOTED_WORDS
            and _contradicts(claim, quotes)  # a verbatim quote cannot contradict itself
        ),
        relays=relays_instructions(answer),
    )


def _issues(grade: Grade, missing: Sequence[str]) -> list[str]:
    issues: list[str] = []
    if not grade.on_subject:
        issues.append(f"None of the cited quotes is about {grade.subject.label}; they answer something else.")
    elif grade.off_topic:
        issues.append("The cited quotes share few words with the question; they may be about something else.")
    if grade.contradicted:
        issues.append(f"{len(grade.contradicted)} sentence(s) say the opposite of the quote they restate.")
    if missing:
        issues.append(f"The answer does not address: {', '.join(missing)}.")
    if grade.unsupported:
        issues.append(f"{len(grade.unsupported)} of {len(grade.claims)} sentences are not supported by a cited quote.")
    if not grade.claims:
        issues.append("The answer makes no claim a quote could support.")
    if grade.relays:
        issues.append("The answer repeats instructions addressed to a model; remove them.")
    return issues


def offline_critique(question: str, answer: str, cited: Sequence[Cited], *, answered: bool = True) -> Critique:
    """`answered=False` is the report saying it could not establish an answer: graded as such a decline."""
    answer = answer.strip()
    if not answer:
        return Critique(score=0.0, issues=["The report has no answer."], missing=[question])
    if relays_instructions(answer):
        answered = True  # a decline that passes on a page's instructions is graded in full
    if not answered or (is_not_found(answer) and not cited):
        return Critique(score=DECLINE_SCORE, issues=["The answer says the sources do not answer the question."])
    grade = grade_answer(question, answer, cited)
    missing = [*(f"`{name}`" for name in grade.subject_missing), *sorted(grade.wanted - grade.covered)]
    if not grade.on_subject:
        missing = [grade.subject.label, *missing]
    return Critique(
        score=round(grade.score, 4),
        issues=_issues(grade, missing),
        missing=missing[:12],
        unsupported_claims=list(dict.fromkeys([*grade.contradicted, *grade.unsupported]))[:12],
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
        quotes = [Cited(str(c.get("quote", "")), str(c.get("section", ""))) for c in cited if isinstance(c, dict)]
        critique = offline_critique(
            str(payload.get("question", "")),
            str(payload.get("answer", "")),
            quotes,
            answered=payload.get("answered") is not False,
        )
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
