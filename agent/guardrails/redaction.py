"""Output guardrails: personal data and secrets redacted from reports, logs and spans, and counted.

Each detector is a regex for a shape plus, where a shape alone is too loose, a check the real thing
always passes (Luhn for cards, the DNI control letter, a digit count for phones). A match becomes
`[REDACTED:<kind>]`; for `Bearer <token>` and `key=<value>` only the secret part is replaced, so the
text still says what was there. Detectors run in order: secrets first (a key can contain digit runs
a card or phone detector would claim), then identifiers, then cards before phones.

National ids covered (a small, documented list): US SSN (`ddd-dd-dddd`, not area 000/666/9xx, group
00 or serial 0000), UK National Insurance number, Spanish DNI (checked control letter).

This is a cheap layer over text, not a classifier: it cannot know that a number is someone's.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from agent.report import ResearchReport

__all__ = ["DETECTOR_KINDS", "SCRUBBED", "redact_report", "redact_text"]


@dataclass(frozen=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] | None = None  # a match failing this is left alone


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _luhn(text: str) -> bool:
    digits = [int(c) for c in _digits(text)][::-1]
    total = sum(d if i % 2 == 0 else sum(divmod(d * 2, 10)) for i, d in enumerate(digits))
    return 13 <= len(digits) <= 19 and total % 10 == 0


def _dni(text: str) -> bool:
    number, letter = text[:8], text[-1].upper()
    return "TRWAGMYFPDXBNJZSQVHLCKE"[int(number) % 23] == letter


def _phone_digits(low: int, high: int) -> Callable[[str], bool]:
    return lambda text: low <= len(_digits(text)) <= high


def _mixed_secret(text: str) -> bool:
    """A value after `token=` that looks generated: long, with letters and digits."""
    return any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


_DETECTORS: tuple[_Detector, ...] = (
    # --- secrets ---------------------------------------------------------------------------------
    _Detector(
        "private_key",
        re.compile(
            r"-----BEGIN[A-Z ]*PRIVATE KEY-----"
            r"(?:[A-Za-z0-9+/=\s\\]*?-----END[A-Z ]*PRIVATE KEY-----|[A-Za-z0-9+/=\s\\]*)"
        ),
    ),
    _Detector("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
    _Detector("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    _Detector("openai_key", re.compile(r"\bsk-(?!ant-)[A-Za-z0-9_-]{20,}")),
    _Detector("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})")),
    _Detector("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    _Detector("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    _Detector("bearer_token", re.compile(r"(?i:\bbearer)\s+(?P<secret>[A-Za-z0-9._~+/-]{16,}=*)")),
    _Detector(
        "secret",
        re.compile(
            r"(?i:\b[\w-]*(?:api[_-]?key|key|token|secret|password|passwd))[\"']?\s*[=:]\s*[\"']?"
            r"(?P<secret>[A-Za-z0-9_+/.=-]{16,})"
        ),
        _mixed_secret,
    ),
    # --- personal data ---------------------------------------------------------------------------
    _Detector(
        "email",
        re.compile(
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b"
        ),
    ),
    _Detector("us_ssn", re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")),
    _Detector(
        "uk_nino",
        re.compile(r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
    ),
    _Detector("es_dni", re.compile(r"\b\d{8}-?[A-Za-z]\b"), lambda text: _dni(text.replace("-", ""))),
    # Card numbers start with a major industry identifier of 2-6; Luhn discards most other digit runs.
    _Detector("payment_card", re.compile(r"(?<![\d.-])[2-6](?:[ -]?\d){12,18}(?!\d|[.-]\d)"), _luhn),
    # International (+CC ...) with 8-15 digits, or national with a trunk 0 or US (ddd) / ddd-ddd-dddd:
    # years, short numbers, dates and version strings (dot-separated groups) do not fit these shapes.
    _Detector(
        "phone",
        re.compile(r"(?<![\w+])\+\d{1,3}(?:[ -]?\(\d{1,4}\))?(?:[ -]?\d{1,4}){2,5}(?![\w-])"),
        _phone_digits(8, 15),
    ),
    _Detector(
        "phone",
        re.compile(
            r"(?<![\w.-])(?:\(\d{3}\)\s?\d{3}[-\s]\d{4}|\d{3}-\d{3}-\d{4}|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4})(?![\w.-])"
        ),
        _phone_digits(10, 11),
    ),
)

DETECTOR_KINDS: tuple[str, ...] = tuple(dict.fromkeys(d.kind for d in _DETECTORS))

SCRUBBED: Counter[str] = Counter()
"""Redactions made by the telemetry scrubber in this process (spans and logs), by kind."""


def redact_text(text: str) -> tuple[str, Counter[str]]:
    """`text` with every detected secret and personal datum replaced by `[REDACTED:<kind>]`."""
    counts: Counter[str] = Counter()
    for detector in _DETECTORS:

        def replace(match: re.Match[str], detector: _Detector = detector) -> str:
            group = "secret" if "secret" in match.re.groupindex else 0
            if detector.valid is not None and not detector.valid(match.group(group)):
                return match.group(0)
            counts[detector.kind] += 1
            placeholder = f"[REDACTED:{detector.kind}]"
            if group == 0:
                return placeholder
            start, end = match.span(group)
            whole = match.group(0)
            offset = match.start(0)
            return whole[: start - offset] + placeholder + whole[end - offset :]

        text = detector.pattern.sub(replace, text)
    return text, counts


def redact_report(report: ResearchReport) -> tuple[ResearchReport, Counter[str]]:
    """Redact every text field of a report.

    Run this after citation verification: a redacted quote no longer matches its page verbatim.
    """
    counts: Counter[str] = Counter()

    def clean(text: str) -> str:
        redacted, found = redact_text(text)
        counts.update(found)
        return redacted

    citations = [
        citation.model_copy(
            update={"url": clean(citation.url), "title": clean(citation.title), "quote": clean(citation.quote)}
        )
        for citation in report.citations
    ]
    redacted = report.model_copy(
        update={
            "answer": clean(report.answer),
            "citations": citations,
            "unresolved": [clean(item) for item in report.unresolved],
        }
    )
    return redacted, counts
