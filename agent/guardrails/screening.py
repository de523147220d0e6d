"""Input guardrails: what a question must be before a run exists for it.

A question is refused (`InvalidQuestionError`) when it cannot be researched at all: empty, longer
than `MAX_QUESTION_CHARS`, undecodable bytes, or control characters (binary pasted by mistake).
It is then screened for prompt-injection markers. Findings are recorded on the run; they refuse it
(`QuestionRefusedError`) only when the policy says so (`RESEARCH_AGENT_REFUSE_INJECTION`), because a
question that *talks about* prompt injection is a legitimate research topic.

Patterns are a cheap first layer, not a classifier: they catch the stock phrasings and fake role
tags, and say which one matched so an operator can judge.

Secret shapes in the question (the shared table, `tools.secrets`, as written or disguised) are redacted
here, before the question is stored or sent to a model: a pasted key never rests in the run store and
never reaches a tool. The count per kind is kept on the screen (`redactions`) and recorded on the run.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from agent.errors import InvalidQuestionError, QuestionRefusedError
from tools.secrets import redact_text

__all__ = [
    "INJECTION_PATTERNS",
    "MAX_QUESTION_CHARS",
    "InjectionFinding",
    "QuestionScreen",
    "screen_question",
]

MAX_QUESTION_CHARS = 4_000

# name -> pattern, searched in a normalised copy (NFKC, zero-width characters removed, one space).
INJECTION_PATTERNS: dict[str, re.Pattern[str]] = {
    "ignore previous instructions": re.compile(
        r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|the\s+|your\s+|of\s+)*"
        r"(?:previous|prior|above|earlier|preceding|original|system|existing)\s+"
        r"(?:instructions?|prompts?|rules|directions|directives|guidelines|context)",
        re.IGNORECASE,
    ),
    "reveal system prompt": re.compile(
        r"\b(?:reveal|show|print|repeat|output|display|leak|dump|tell\s+me|what\s+is|what\s+are)\b"
        r"[^.?!\n]{0,40}?\b(?:system\s+prompt|hidden\s+(?:prompt|instructions)|initial\s+instructions"
        r"|developer\s+(?:message|prompt)|your\s+instructions)",
        re.IGNORECASE,
    ),
    "role-play jailbreak": re.compile(
        r"\b(?:you\s+are\s+now|act\s+as|pretend\s+(?:to\s+be|you\s+are)|role-?play\s+as|from\s+now\s+on\s+you)"
        r"\b[^.\n]{0,80}?\b(?:DAN|jailbr(?:eak|oken)|unrestricted|unfiltered|uncensored"
        r"|no\s+(?:rules|restrictions|limits|filters)|without\s+(?:any\s+)?(?:rules|restrictions|limits|filters))",
        re.IGNORECASE,
    ),
    "jailbreak marker": re.compile(
        r"\b(?:DAN\s+mode|developer\s+mode\s+(?:enabled|on)|jailbreak\s+mode|do\s+anything\s+now)\b",
        re.IGNORECASE,
    ),
    "fake role tag": re.compile(
        r"<\|\s*/?\s*(?:system|im_start|im_end|assistant|tool|tool_call|function_call|developer)\b[^<>]{0,40}\|>"
        r"|<(system|assistant|tool|tool_call|tool_result|function_call|developer)>[\s\S]{0,2000}?</\1>"
        r"|\[/?(?:INST|SYS)\]|<</?SYS>>|^\s*#{0,3}\s*(?:system|assistant|developer)\s*:",
        re.IGNORECASE | re.MULTILINE,
    ),
}

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


@dataclass(frozen=True, kw_only=True)
class InjectionFinding:
    """One injection marker: which pattern matched and the text it matched (trimmed)."""

    pattern: str
    excerpt: str


@dataclass(frozen=True, kw_only=True)
class QuestionScreen:
    """The cleaned question (secrets redacted), what the injection screen found in it, and what was redacted."""

    text: str
    findings: tuple[InjectionFinding, ...] = field(default=())
    redactions: dict[str, int] = field(default_factory=dict)
    """Secrets redacted from the question, by kind."""

    @property
    def patterns(self) -> list[str]:
        return [f.pattern for f in self.findings]

    def as_json(self) -> dict[str, object]:
        return {"findings": [{"pattern": f.pattern, "excerpt": f.excerpt} for f in self.findings]}

    def redaction_summary(self) -> str:
        """`2 redaction(s): github_token 1, openai_key 1`, like the report's `output_redaction` step."""
        total = sum(self.redactions.values())
        return f"{total} redaction(s): " + ", ".join(f"{k} {n}" for k, n in sorted(self.redactions.items()))


def screen_question(question: str | bytes, *, refuse_injection: bool) -> QuestionScreen:
    """Validate and screen a question; raise with a message that says why it cannot run."""
    text = _as_text(question)
    cleaned = text.strip()
    if not cleaned:
        raise InvalidQuestionError("the question is empty")
    if len(cleaned) > MAX_QUESTION_CHARS:
        raise InvalidQuestionError(f"the question is {len(cleaned)} characters; the limit is {MAX_QUESTION_CHARS}")
    if any(_is_control(c) for c in cleaned):
        raise InvalidQuestionError("the question contains control characters (binary input?)")
    redacted, redactions = redact_text(cleaned, category="secret")
    findings = tuple(_find_injections(cleaned))
    screen = QuestionScreen(text=redacted, findings=_redact_excerpts(findings), redactions=dict(redactions))
    if screen.findings and refuse_injection:
        raise QuestionRefusedError(
            "the question looks like a prompt-injection attempt ("
            + ", ".join(screen.patterns)
            + "); rephrase it, or unset RESEARCH_AGENT_REFUSE_INJECTION to only record such findings"
        )
    return screen


def _as_text(question: object) -> str:
    if isinstance(question, bytes | bytearray):
        try:
            return bytes(question).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidQuestionError("the question is not valid UTF-8 text (binary input?)") from exc
    if not isinstance(question, str):
        raise InvalidQuestionError("the question must be text")
    if any("\ud800" <= c <= "\udfff" for c in question):  # lone surrogates: undecodable bytes smuggled in
        raise InvalidQuestionError("the question is not valid Unicode text (binary input?)")
    return question


def _is_control(char: str) -> bool:
    if char in "\n\t\r":
        return False
    return ord(char) < 32 or 0x7F <= ord(char) <= 0x9F


def _find_injections(text: str) -> list[InjectionFinding]:
    normalised = re.sub(r"[ \t]+", " ", unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH))
    findings: list[InjectionFinding] = []
    for name, pattern in INJECTION_PATTERNS.items():
        match = pattern.search(normalised)
        if match:
            findings.append(InjectionFinding(pattern=name, excerpt=match.group(0).strip()[:120]))
    return findings


def _redact_excerpts(findings: tuple[InjectionFinding, ...]) -> tuple[InjectionFinding, ...]:
    """Excerpts are stored on the run: they get the question's redaction too."""
    return tuple(
        InjectionFinding(pattern=f.pattern, excerpt=redact_text(f.excerpt, category="secret")[0]) for f in findings
    )
