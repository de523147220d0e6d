"""The common ways a string is disguised: URL-encoding, base64, hex, and spacing it out.

`tools.secrets` knows what a secret looks like; this module only finds the places in a text where
something may be written in another form, and undoes the form. Every scan is a single linear regex
pass plus decoding of the candidates it finds, so a hostile 5 MB text costs time in proportion to its
size (and `tools.secrets` cuts long texts into pieces so no single regex call holds the GIL for long).

A decoding is only ever a candidate: the caller decides whether the decoded text holds a secret. A
false positive therefore needs the decoded bytes of an ordinary hash, image or URL to spell a
complete secret shape (`sk-` and 16 more key characters...), which random bytes do not.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote_plus

__all__ = ["Decoded", "Form", "SpacedRun", "decodings", "spaced_runs"]

Form = Literal["url-encoded", "base64", "hex", "spaced"]

_MIN_ENCODED: Final = 24
"""The shortest base64 worth decoding: the shortest secret shape (19 characters) is 28 in base64."""
_WINDOW: Final = 1 << 16
"""Longer candidates are decoded in windows of this many characters (overlapping), never all at once."""
_OVERLAP: Final = 1 << 12

# URL-encoded: a run of unreserved characters and %XX escapes ('+' is a space in a query string), looked for
# only inside the words (runs of non-blanks) that hold a `%` or a `+`.
_ENCODED_WORD: Final = re.compile(r"(?<!\S)[^\s%+]*[%+]\S*")
_URL_RUN: Final = re.compile(r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9._~+*!'(),-])+")
# Printable ASCII and blanks: what decoded text (not an image, not a hash) is mostly made of.
_TEXT_BYTES: Final = bytes(range(32, 127)) + b"\t\n\r"
_MIN_TEXT_SHARE: Final = 0.9
# base64 (standard or URL-safe alphabet), not part of a longer run.
_BASE64_RUN: Final = re.compile(rf"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{{{_MIN_ENCODED},}}={{0,2}}(?![A-Za-z0-9+/_=-])")
_HEX_RUN: Final = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32,}(?![0-9A-Fa-f])")
# Spaced out: at least five short tokens (1-4 characters) with short separators between them, on one
# line. Two tokenisations: key characters between any punctuation (`s/k/-/l...`, `s.k.-.l`), and
# anything between blanks (`e y J h . . .`, where the dots of a JWT are part of the secret).
_KEY_TOKENS: Final = re.compile(
    r"(?<![A-Za-z0-9_-])(?:[A-Za-z0-9_-]{1,4}[^A-Za-z0-9_\-\n]{1,3}){4,}[A-Za-z0-9_-]{1,4}(?![A-Za-z0-9_-])"
)
_KEY_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]+")
_KEY_SEPARATORS: Final = re.compile(r"[^A-Za-z0-9_-]+")
_BLANK_TOKENS: Final = re.compile(r"(?<!\S)(?:\S{1,4}[^\S\n]{1,3}){4,}\S{1,4}(?!\S)")
_BLANK_TOKEN: Final = re.compile(r"\S+")
_BLANKS: Final = re.compile(r"\s+")
_TOKENISATIONS: Final = ((_KEY_TOKENS, _KEY_TOKEN, _KEY_SEPARATORS), (_BLANK_TOKENS, _BLANK_TOKEN, _BLANKS))


@dataclass(frozen=True, slots=True)
class Decoded:
    """`text` is what `source[start:end]` says once its `form` is undone."""

    start: int
    end: int
    text: str
    form: Form


@dataclass(frozen=True, slots=True)
class SpacedRun:
    """Short tokens with separators between them, and the tokens written together (`collapsed`)."""

    spans: tuple[tuple[int, int], ...]
    """Each token's span in the source text."""
    offsets: tuple[int, ...]
    """Where each token starts in `collapsed`."""
    collapsed: str
    tokens: tuple[str, ...]


def decodings(text: str) -> Iterator[Decoded]:
    """Every URL-encoded, base64 and hex candidate in `text`, decoded."""
    yield from _url_decoded(text)
    yield from _base64_decoded(text)
    yield from _hex_decoded(text)


def spaced_runs(text: str, *, worth: Callable[[str], bool]) -> Iterator[SpacedRun]:
    """Runs of short tokens in `text`, under both tokenisations, whose collapsed text is `worth` a closer look
    (a cheap prefilter: most prose has runs of short words, few of which collapse to anything of interest)."""
    for run_pattern, token_pattern, separators in _TOKENISATIONS:
        for run in run_pattern.finditer(text):
            if not worth(separators.sub("", run.group(0))):
                continue
            spans: list[tuple[int, int]] = []
            offsets: list[int] = []
            tokens: list[str] = []
            length = 0
            for token in token_pattern.finditer(text, run.start(), run.end()):
                spans.append(token.span())
                offsets.append(length)
                tokens.append(token.group(0))
                length += len(token.group(0))
            yield SpacedRun(spans=tuple(spans), offsets=tuple(offsets), collapsed="".join(tokens), tokens=tuple(tokens))


def _url_decoded(text: str) -> Iterator[Decoded]:
    for word in _ENCODED_WORD.finditer(text):
        for run in _URL_RUN.finditer(text, word.start(), word.end()):
            raw = run.group(0)
            if "%" not in raw and "+" not in raw:
                continue
            decoded = raw
            for _ in range(3):  # double and triple encoding (`%252D`)
                again = unquote_plus(decoded)
                if again == decoded:
                    break
                decoded = again
            if decoded != raw:
                yield Decoded(run.start(), run.end(), decoded, "url-encoded")


def _base64_decoded(text: str) -> Iterator[Decoded]:
    for run in _BASE64_RUN.finditer(text):
        pieces = [(run.start(), run.group(0))]
        if "/" in run.group(0):  # path segments (`/collect/<base64>`) are candidates of their own
            position = run.start()
            for piece in run.group(0).split("/"):
                if len(piece) >= _MIN_ENCODED:
                    pieces.append((position, piece))
                position += len(piece) + 1
        for start, piece in pieces:
            for window_start, window in _windows(piece):
                for decoded in _base64_variants(window):
                    yield Decoded(start + window_start, start + window_start + len(window), decoded, "base64")


def _base64_variants(chunk: str) -> Iterator[str]:
    """`chunk` decoded at each of the four alignments (a prefix may have been glued on)."""
    standard = chunk.translate(_URLSAFE)
    for skip in range(4):
        body = standard[skip:]
        body = body[: len(body) - len(body) % 4]
        if len(body) < _MIN_ENCODED - 4:
            return
        try:
            raw = binascii.a2b_base64(body)
        except (binascii.Error, ValueError):
            continue
        if _is_text(raw):
            yield raw.decode("ascii", errors="replace")


_URLSAFE: Final = str.maketrans("-_", "+/")


def _hex_decoded(text: str) -> Iterator[Decoded]:
    for run in _HEX_RUN.finditer(text):
        for window_start, window in _windows(run.group(0)):
            for skip in (0, 1):
                body = window[skip:]
                body = body[: len(body) - len(body) % 2]
                raw = bytes.fromhex(body)
                if _is_text(raw):
                    decoded = raw.decode("ascii", errors="replace")
                    yield Decoded(run.start() + window_start, run.start() + window_start + len(window), decoded, "hex")


def _windows(text: str) -> Iterator[tuple[int, str]]:
    """`text` in overlapping windows of at most `_WINDOW` characters (a multiple of 4 apart)."""
    if len(text) <= _WINDOW:
        yield 0, text
        return
    step = _WINDOW - _OVERLAP
    for start in range(0, len(text) - _OVERLAP, step):
        yield start, text[start : start + _WINDOW]


def _is_text(raw: bytes) -> bool:
    """Mostly printable ASCII: decoded text, not an image, a compressed blob or a hash (skipped: no secret
    shape survives in random bytes, and scanning them is the expensive part)."""
    return len(raw.translate(None, _TEXT_BYTES)) <= len(raw) * (1 - _MIN_TEXT_SHARE)
