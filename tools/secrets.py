"""The one table of secret and personal-data patterns, and the redaction every other layer derives from it.

Every place that hides what must not be kept reads `DETECTORS`: the question at submission
(`agent.guardrails.screening`), search results and page text before the model sees them (`tools.web_search`,
`tools.fetch_url`), the model's own responses and the tool-call audit (`agent.guardrails.policy_guard`,
`tools.redact_args`), reports (`agent.guardrails.redaction`) and Logfire spans and logs (`agent.telemetry`).

Each detector is a regex for a shape plus, where a shape alone is too loose, a check the real thing
always passes (Luhn for cards, the DNI control letter, a digit count for phones). A match becomes
`[REDACTED:<kind>]` (or a fixed placeholder); for `Bearer <token>` and `key=<value>` only the secret
part is replaced, so the text still says what was there. Detectors run in order: secrets first (a key
can contain digit runs a card or phone detector would claim), then identifiers, then cards before
phones. Each also names a cheap `trigger`, a regex found in every match, which Logfire scans span
attributes for (`extra_patterns`) before handing a value to the precise detectors.

National ids covered (a small, documented list): US SSN (`ddd-dd-dddd`, not area 000/666/9xx, group
00 or serial 0000), UK National Insurance number, Spanish DNI (checked control letter).

Secrets are also found disguised (`tools._secret_forms`): URL-encoded, base64 or hex encoded, or spaced
out (`s k - l i v e ...`, `s/k/-/l/...`). A disguised secret is redacted whole, and `find_secret` says which
form it was in (the policy guard refuses a tool call that carries one). Only the secret shapes with a
distinctive prefix (`sk-`, `ghp_`, `AKIA`...) are looked for spaced out, and only when they also hold a
digit and a letter: `ask - me ...` in prose is never read as a key. Long texts are redacted in pieces of
`_PIECE_CHARS`, so no single regex call holds the GIL long enough to starve an event loop in another
thread; a piece boundary never splits a match (pieces are joined where one would).

This is a cheap layer over text, not a classifier: it cannot know that a number is someone's.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Literal

from tools._secret_forms import Form, SpacedRun, decodings, spaced_runs

__all__ = [
    "DETECTORS",
    "DETECTOR_KINDS",
    "REDACTED",
    "SECRET_KEY_NAME",
    "TRIGGERS",
    "Category",
    "Detector",
    "SecretFinding",
    "find_secret",
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
    spaced: bool = False
    """Also looked for spaced out (a distinctive prefix makes that safe on prose)."""


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
    Detector(
        "jwt",
        "secret",
        re.compile(r"(?i:\beyJ)[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
        r"\beyJ",
        spaced=True,
    ),
    Detector("anthropic_key", "secret", re.compile(r"(?i:\bsk-ant-)[A-Za-z0-9_-]{12,}"), r"\bsk-", spaced=True),
    Detector("openai_key", "secret", re.compile(r"(?i:\bsk-)[A-Za-z0-9_-]{16,}"), r"\bsk-", spaced=True),
    Detector(
        "github_token",
        "secret",
        # Case-sensitive: real tokens have lower-case prefixes, and `GHS-classification` is prose.
        re.compile(r"\b(?:gh[pousr]|github_pat)[-_][A-Za-z0-9_-]{10,}"),
        r"\b(?:gh[pousr]|github_pat)[-_]",
        spaced=True,
    ),
    Detector("gitlab_token", "secret", re.compile(r"\bglpat[-_][A-Za-z0-9_-]{10,}"), r"\bglpat[-_]", spaced=True),
    Detector(
        "aws_access_key",
        "secret",
        re.compile(r"\b(?:(?:AKIA|ASIA)[0-9A-Z]{16}|(?i:AKIA[0-9A-Z]{16}))\b"),
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}",
        spaced=True,
    ),
    Detector(
        "slack_token",
        "secret",
        re.compile(r"(?i:\bxox[abposr][-_])[A-Za-z0-9_-]{10,}"),
        r"\bxox[abposr][-_]",
        spaced=True,
    ),
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
            # No `\b[\w-]*` before the name (`OPENAI_API_KEY=`): only the value is replaced, and that prefix
            # made `a-a-a-...` quadratic (every `-` a word boundary, every scan to the end of the run).
            r"(?i:(?:api[_-]?key|key|token|secret|password|passwd))[\"']?\s*[=:]\s*[\"']?"
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
    `[REDACTED:<kind>]`. Secrets are also redacted where they are disguised (URL-encoded, base64, hex,
    spaced out). CPU-bound on long texts: in async code run it in a thread (`asyncio.to_thread`).
    """
    counts: Counter[str] = Counter()
    if len(text) <= _PIECE_CHARS:
        return _redact_piece(text, category, placeholder, counts), counts
    out: list[str] = []
    pieces = list(_pieces(text))
    index = 0
    while index < len(pieces):
        piece = pieces[index]
        while index + 1 < len(pieces) and _straddles(piece, pieces[index + 1], category):
            index += 1  # a match across the boundary: redact the two pieces as one
            piece += pieces[index]
        out.append(_redact_piece(piece, category, placeholder, counts))
        index += 1
    return "".join(out), counts


@dataclass(frozen=True)
class SecretFinding:
    """A secret-shaped string: its kind, and the disguises it was found under (outermost first)."""

    kind: str
    forms: tuple[Form, ...] = ()

    def describe(self) -> str:
        """`openai_key` / `openai_key (url-encoded, then base64)`."""
        return self.kind if not self.forms else f"{self.kind} ({', then '.join(self.forms)})"


def find_secret(text: str) -> SecretFinding | None:
    """The first secret shape in `text`, as written or disguised (up to two encodings deep), or None.

    For short strings (tool arguments, URLs, queries): unlike `redact_text` it does not cut the text into
    pieces, so bound the input first.
    """
    return _find(text, depth=2, forms=())


_PIECE_CHARS: Final = 1 << 18
"""Texts longer than this are redacted piece by piece (a regex call on 256 KiB holds the GIL ~25 ms)."""
_MARGIN_CHARS: Final = 1 << 12
"""How far from a piece boundary a match may start and still cross it (an RSA-4096 PEM key fits)."""

_SECRET_DETECTORS: Final = tuple(d for d in DETECTORS if d.category == "secret")
_PERSONAL_DETECTORS: Final = tuple(d for d in DETECTORS if d.category == "personal")
# The spaced-out shapes, matched in the collapsed text at a token start (so without `\b`), and a cheap
# prefilter made of their triggers.
_SPACED: Final = tuple(
    (d, re.compile(d.pattern.pattern.replace(r"\b", ""), d.pattern.flags)) for d in DETECTORS if d.spaced
)
_SPACED_TRIGGER: Final = re.compile(
    "|".join(d.trigger.replace(r"\b", "") for d, _ in _SPACED), re.IGNORECASE | re.DOTALL
)


def _redact_piece(text: str, category: Category | None, placeholder: str | None, counts: Counter[str]) -> str:
    if category in (None, "secret"):
        text = _apply(text, _SECRET_DETECTORS, placeholder, counts)
        text = _redact_disguised(text, placeholder, counts)
    if category in (None, "personal"):
        text = _apply(text, _PERSONAL_DETECTORS, placeholder, counts)
    return text


def _apply(text: str, detectors: tuple[Detector, ...], placeholder: str | None, counts: Counter[str]) -> str:
    for detector in detectors:

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
    return text


def _redact_disguised(text: str, placeholder: str | None, counts: Counter[str]) -> str:
    """Each disguised secret replaced whole (the run of spaced tokens, the encoded string)."""
    found: list[tuple[int, int, str]] = list(_spaced_secrets(text))
    for decoded in decodings(text):
        if (finding := _find(decoded.text, depth=1, forms=())) is not None:
            found.append((decoded.start, decoded.end, finding.kind))
    if not found:
        return text
    chosen: list[tuple[int, int, str]] = []
    for start, end, kind in sorted(found, key=lambda f: f[1] - f[0]):  # the narrowest of overlapping candidates:
        if all(end <= s or start >= e for s, e, _ in chosen):  # a path segment rather than the whole path
            chosen.append((start, end, kind))
    out: list[str] = []
    position = 0
    for start, end, kind in sorted(chosen):
        counts[kind] += 1
        out += [text[position:start], placeholder if placeholder is not None else f"[REDACTED:{kind}]"]
        position = end
    return "".join([*out, text[position:]])


def _find(text: str, *, depth: int, forms: tuple[Form, ...]) -> SecretFinding | None:
    for detector in _SECRET_DETECTORS:
        if any(_is_valid(detector, match) for match in detector.pattern.finditer(text)):
            return SecretFinding(detector.kind, forms)
    for _start, _end, kind in _spaced_secrets(text):
        return SecretFinding(kind, (*forms, "spaced"))
    if depth > 0:
        for decoded in decodings(text):
            if (found := _find(decoded.text, depth=depth - 1, forms=(*forms, decoded.form))) is not None:
                return found
    return None


def _is_valid(detector: Detector, match: re.Match[str]) -> bool:
    group = "secret" if "secret" in match.re.groupindex else 0
    return detector.valid is None or detector.valid(match.group(group))


def _spaced_secrets(text: str) -> Iterator[tuple[int, int, str]]:
    """`(start, end, kind)` of each spaced-out secret: a run of short tokens whose collapsed text, from a
    token start, is a secret shape with a digit and a letter in it, made of tokens that are not words."""
    for run in spaced_runs(text, worth=lambda collapsed: _SPACED_TRIGGER.search(collapsed) is not None):
        yield from _run_secrets(run)


def _run_secrets(run: SpacedRun) -> Iterator[tuple[int, int, str]]:
    index = 0
    while index < len(run.offsets):
        hit = _spaced_match(run.collapsed, run.offsets[index])
        if hit is None:
            index += 1
            continue
        kind, end = hit
        last = index
        while last + 1 < len(run.offsets) and run.offsets[last + 1] < end:
            last += 1
        if not _wordy(run.tokens[index : last + 1]):
            yield run.spans[index][0], run.spans[last][1], kind
            index = last + 1
        else:
            index += 1


def _wordy(tokens: tuple[str, ...]) -> bool:
    """Prose, not a key cut into pieces: `sk - top 10 of 2024 in 5 min` is mostly words (letters of one case);
    `s k - 4 f 9 Q` and `sk-l ive- 4f9Q x2Lm` are not."""
    words = sum(len(t) > 1 and t.isalpha() and (t.islower() or t.isupper()) for t in tokens)
    return words >= _MAX_WORD_SHARE * len(tokens)


_MAX_WORD_SHARE: Final = 0.4


def _spaced_match(collapsed: str, position: int) -> tuple[str, int] | None:
    for detector, loose in _SPACED:
        match = loose.match(collapsed, position)
        if match is not None and _is_valid(detector, match) and _mixed_secret(match.group(0)):
            return detector.kind, match.end()
    return None


def _pieces(text: str) -> Iterator[str]:
    """`text` in pieces of about `_PIECE_CHARS`, cut after a newline (else a blank) where there is one."""
    start = 0
    while len(text) - start > _PIECE_CHARS:
        end = start + _PIECE_CHARS
        cut = text.rfind("\n", end - _MARGIN_CHARS, end)
        if cut < 0:
            cut = max(text.rfind(" ", end - _MARGIN_CHARS, end), text.rfind("\t", end - _MARGIN_CHARS, end))
        cut = end if cut < 0 else cut + 1
        yield text[start:cut]
        start = cut
    yield text[start:]


def _straddles(before: str, after: str, category: Category | None) -> bool:
    """Whether a match crosses the boundary between two pieces: the text around it redacts differently whole
    than in halves (a longer spaced run, a PEM key cut in two...)."""
    tail, head = before[-_MARGIN_CHARS:], after[:_MARGIN_CHARS]
    ignored: Counter[str] = Counter()
    whole = _redact_piece(tail + head, category, None, ignored)
    return whole != _redact_piece(tail, category, None, ignored) + _redact_piece(head, category, None, ignored)
