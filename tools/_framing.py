"""The untrusted-data frame that page text travels in, and the truncation marker.

Page text is written by whoever controls the page, so it must not be able to close the frame early,
open a second one, or speak in the framework's voice. Everything else in the text goes through
exactly as written, so quotes stay verbatim for citation checks.
"""

from __future__ import annotations

import html
import re
from typing import Final

from pydantic_ai._framing import neutralize_tags

UNTRUSTED_TAG: Final = "untrusted_data"

# The `<` (or a look-alike a model would read as one) of any opening or closing spelling of the tag:
# any case, whitespace around the `/`, `_`/`-`/space between the words, attributes, `/>`, or cut off at
# the end of the text. A longer name that merely starts with the tag (`<untrusted_database>`) is left alone.
_FRAME_OPENERS: Final = re.compile(
    r"[<\uff1c\ufe64](?=\s*(?:/\s*)?untrusted[\s_-]*data(?=[\s/>\uff1e\ufe65]|$))",
    re.IGNORECASE,
)


def neutralize(text: str) -> str:
    """Escape the `<` of every frame tag and every pydantic-ai framing tag (`<system>`...) as `&lt;`."""
    return _FRAME_OPENERS.sub("&lt;", neutralize_tags(text))


def frame_untrusted(text: str, *, source: str) -> str:
    """Wrap `text` in an `<untrusted_data>` frame that nothing inside it can close or forge."""
    attr = html.escape(" ".join(source.split()), quote=True)
    return f'<{UNTRUSTED_TAG} source="{attr}">\n{neutralize(text)}\n</{UNTRUSTED_TAG}>'


def truncate_text(text: str, *, max_chars: int) -> tuple[str, bool]:
    """Cut `text` to `max_chars`, saying so explicitly so the model never mistakes a cut for the end."""
    if max_chars < 0:
        raise ValueError("max_chars must be >= 0")
    if len(text) <= max_chars:
        return text, False
    marker = f"\n[... truncated: {max_chars} of {len(text)} characters shown ...]"
    return text[:max_chars] + marker, True
