"""Guardrails: input screening, secret and PII redaction, and the tool-policy capability."""

from agent.guardrails.policy_guard import PolicyGuard
from agent.guardrails.redaction import DETECTOR_KINDS, SCRUBBED, redact_report, redact_text
from agent.guardrails.screening import MAX_QUESTION_CHARS, InjectionFinding, QuestionScreen, screen_question

__all__ = [
    "DETECTOR_KINDS",
    "MAX_QUESTION_CHARS",
    "SCRUBBED",
    "InjectionFinding",
    "PolicyGuard",
    "QuestionScreen",
    "redact_report",
    "redact_text",
    "screen_question",
]
