"""The one table of secret and personal-data patterns, and the redaction every other layer derives from it.

Three places hide what must not be kept: reports (`agent.guardrails.redaction`), the tool-call audit
(`tools.redact_args`) and Logfire spans and logs (`agent.telemetry`). All three read `DETECTORS`.

Each detector is a regex for a shape plus, where a shape alone is too loose, a check the real thing
always passes (Luhn for cards, the DNI control letter, a digit count for phones). A match becomes
`[REDACTED:<kind>]` (or a fixed placeholder); for `Bearer <token>` and `key=<value>` only the secret
part is replaced, so the text still says what was there. Detectors run in order: secrets first (a key
can contain digit runs a card or phone detector would claim), then identifiers, then cards before
phones. Each also names a cheap `trigger`, a regex found in every match, which Logfire scans span
attributes for (`extra_patterns`) before handing a value to the precise detectors.

National ids covered (a small, documented list): US SSN (`ddd-dd-dddd`, not area 000/666/9xx, group
00 or serial 0000), UK National Insurance number, Spanish DNI (checked control letter).

This is a cheap layer over text, not a classifier: it cannot know that a number is someone's.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DETECTORS",
    "DETECTOR_KINDS",
    "REDACTED",
    "SECRET_KEY_NAME",
    "TRIGGERS",
    "Category",
    "Detector",
    "is_secret_name",
    "redact_text",
]

Category = Literal["secret", "personal"]
REDACTED = "[REDACTED]"
"""The fixed placeholder of the audit (`tools.redact_args`)."""


@dataclass(frozen=True)
class Detector:
    kind: str
    category: Category
    pattern: re.Pattern[str]
    """A named group `secret`, when present, is the only part replaced."""
    trigger: str
    """A cheap regex (matched case-insensitively) that occurs in every match of `pattern`."""
    valid: Callable[[str], bool] | None = None
    """A match (its `secret` group if any) failing this is left alone."""


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


_DIGIT_RUN = r"\d[\d ()+-]{6,}\d"  # the trigger of every number-shaped detector

DETECTORS: tuple[Detector, ...] = (
    # --- secrets ---------------------------------------------------------------------------------
    Detector(
        "private_key",
        "secret",
        re.compile(
            r"-----BEGIN[A-Z ]*PRIVATE KEY-----"
            r"(?:[A-Za-z0-9+/=\s\\]*?-----END[A-Z ]*PRIVATE KEY-----|[A-Za-z0-9+/=\s\\]*)"
        ),
        r"-----BEGIN",
    ),
    # A JWT's header, payload and (possibly empty, unsigned) signature.
    Detector("jwt", "secret", re.compile(r"(?i:\beyJ)[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), r"\beyJ"),
    Detector("anthropic_key", "secret", re.compile(r"(?i:\bsk-ant-)[A-Za-z0-9_-]{12,}"), r"\bsk-"),
    Detector("openai_key", "secret", re.compile(r"(?i:\bsk-)[A-Za-z0-9_-]{16,}"), r"\bsk-"),
    Detector(
        "github_token",
        "secret",
        # Case-sensitive: real tokens have lower-case prefixes, and `GHS-classification` is prose.
        re.compile(r"\b(?:gh[pousr]|github_pat)[-_][A-Za-z0-9_-]{10,}"),
        r"\b(?:gh[pousr]|github_pat)[-_]",
    ),
    Detector("gitlab_token", "secret", re.compile(r"\bglpat[-_][A-Za-z0-9_-]{10,}"), r"\bglpat[-_]"),
    Detector(
        "aws_access_key",
        "secret",
        re.compile(r"\b(?:(?:AKIA|ASIA)[0-9A-Z]{16}|(?i:AKIA[0-9A-Z]{16}))\b"),
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}",
    ),
    Detector("slack_token", "secret", re.compile(r"(?i:\bxox[abposr][-_])[A-Za-z0-9_-]{10,}"), r"\bxox[abposr][-_]"),
    # A token, not prose ("bearer instruments"): long, or with a digit in it.
    Detector(
        "bearer_token",
        "secret",
        re.compile(r"(?i:\bbearer)\s+(?P<secret>[A-Za-z0-9._~+/=-]{8,})"),
        r"\bbearer\s",
        lambda token: len(token) >= 16 or any(c.isdigit() for c in token),
    ),
    Detector(
        "secret",
        "secret",
        re.compile(
            r"(?i:\b[\w-]*(?:api[_-]?key|key|token|secret|password|passwd))[\"']?\s*[=:]\s*[\"']?"
            r"(?P<secret>[A-Za-z0-9_+/.=-]{16,})"
        ),
        r"(?:key|token|secret|password|passwd)[\"']?\s*[=:]",
        _mixed_secret,
    ),
    # --- personal data ---------------------------------------------------------------------------
    Detector(
        "email",
        "personal",
        re.compile(
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b"
        ),
        r"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+\.[A-Za-z]",
    ),
    Detector(
        "us_ssn",
        "personal",
        re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
        _DIGIT_RUN,
    ),
    Detector(
        "uk_nino",
        "personal",
        re.compile(r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
        r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",
    ),
    Detector(
        "es_dni",
        "personal",
        re.compile(r"\b\d{8}-?[A-Za-z]\b"),
        r"\b\d{8}-?[A-Za-z]\b",
        lambda text: _dni(text.replace("-", "")),
    ),
    # Card numbers start with a major industry identifier of 2-6; Luhn discards most other digit runs.
    Detector(
        "payment_card", "personal", re.compile(r"(?<![\d.-])[2-6](?:[ -]?\d){12,18}(?!\d|[.-]\d)"), _DIGIT_RUN, _luhn
    ),
    # International (+CC ...) with 8-15 digits, or national with a trunk 0 or US (ddd) / ddd-ddd-dddd:
    # years, short numbers, dates and version strings (dot-separated groups) do not fit these shapes.
    Detector(
        "phone",
        "personal",
        re.compile(r"(?<![\w+])\+[1-9]\d{0,2}(?:[ -]?\(\d{1,4}\))?(?:[ -]?\d{1,4}){2,5}(?![\w-])"),
        _DIGIT_RUN,
        _phone_digits(8, 15),
    ),
    Detector(
        "phone",
        "personal",
        re.compile(
            r"(?<![\w.-])(?:\(\d{3}\)\s?\d{3}[-\s]\d{4}|\d{3}-\d{3}-\d{4}|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4})(?![\w.-])"
        ),
        _DIGIT_RUN,
        _phone_digits(10, 11),
    ),
)

DETECTOR_KINDS: tuple[str, ...] = tuple(dict.fromkeys(d.kind for d in DETECTORS))

TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(d.trigger for d in DETECTORS))
"""Every detector's trigger, once each: Logfire's `extra_patterns`."""

SECRET_KEY_NAME = re.compile(
    r"api[_-]?key|apikey|token|passw(or)?d|secret|authorization|auth|credential|cookie|session|signature|"
    r"private[_-]?key|access[_-]?key|client[_-]?secret|^key$|^sig$",
    re.IGNORECASE,
)
"""A dict key, header or URL query parameter whose whole value is a secret (`Authorization`, `api_key`...)."""


def is_secret_name(name: str) -> bool:
    return SECRET_KEY_NAME.search(name) is not None


def redact_text(
    text: str, *, category: Category | None = None, placeholder: str | None = None
) -> tuple[str, Counter[str]]:
    """`text` with every detected secret and personal datum replaced, and the count of each kind replaced.

    `category` limits the detectors to secrets or to personal data; `placeholder` replaces the default
    `[REDACTED:<kind>]`.
    """
    counts: Counter[str] = Counter()
    for detector in DETECTORS:
        if category is not None and detector.category != category:
            continue

        def replace(match: re.Match[str], detector: Detector = detector) -> str:
            group = "secret" if "secret" in match.re.groupindex else 0
            if detector.valid is not None and not detector.valid(match.group(group)):
                return match.group(0)
            counts[detector.kind] += 1
            marker = placeholder if placeholder is not None else f"[REDACTED:{detector.kind}]"
            if group == 0:
                return marker
            start, end = match.span(group)
            whole = match.group(0)
            offset = match.start(0)
            return whole[: start - offset] + marker + whole[end - offset :]

        text = detector.pattern.sub(replace, text)
    return text, counts
