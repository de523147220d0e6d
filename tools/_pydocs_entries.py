"""A documented name (`_Entry`) and the text every python-docs document is written with: qualified names,
one-line summaries, clipped signatures, bounded overviews.

Shared by the builder and both readers (`tools._pydocs_ast`, `tools._pydocs_runtime`), so it imports none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

MAX_ENTRY_CHARS: Final = 20_000
"""One documented name: its signature and whole docstring (the longest stdlib docstrings fit)."""
MAX_SIGNATURE_CHARS: Final = 200


@dataclass(frozen=True, kw_only=True)
class _Entry:
    """A documented name: `qualname` is its URL fragment (`lru_cache`, `OrderedDict.copy`), `signature` its title."""

    qualname: str
    signature: str
    doc: str

    def overview_line(self) -> str:
        summary = _summary(_without_signature(self.doc))
        return f"{self.signature}: {summary}" if summary else self.signature

    def body(self) -> str:
        text = f"{self.signature}\n\n{self.doc}" if self.doc else self.signature
        return _cut(text, MAX_ENTRY_CHARS)


_Part = str | _Entry
"""A module's documentation in order: docstrings (whole in the overview) and entries (one line there)."""


def _display_name(name: str) -> str:
    return "os.path" if name == "posixpath" else name


def _qualified(display: str, qualname: str) -> str:
    """How a name is written: `functools.lru_cache`, `os.path.join`; built-ins bare (`zip`, `str.join`)."""
    return qualname if display == "builtins" else f"{display}.{qualname}"


_DOC_SIGNATURE: Final = re.compile(r"[A-Za-z_][\w.]*\(")


def _docstring_signature(doc: str) -> str | None:
    """The parenthesised arguments of a docstring that opens with a call: `range(stop) -> range object`."""
    first = doc.split("\n", 1)[0]
    match = _DOC_SIGNATURE.match(first)
    if match is None:
        return None
    depth = 0
    for index in range(match.end() - 1, len(first)):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(first[index], 0)
        if depth == 0:
            return first[match.end() - 1 : index + 1]
    return None


def _without_signature(doc: str) -> str:
    """The docstring without a leading signature paragraph (C docstrings), for its one-line summary."""
    first, _, rest = doc.partition("\n\n")
    return rest if rest and _docstring_signature(first) is not None and "\n" not in first.strip() else doc


# --- text --------------------------------------------------------------------------------------------


def _summary(docstring: str) -> str:
    first = docstring.strip().split("\n\n", 1)[0]
    line = " ".join(first.split())
    return line if len(line) <= 120 else line[:119].rstrip() + "…"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SIGNATURE_CHARS else text[: MAX_SIGNATURE_CHARS - 1] + "…"


def _cut(text: str, limit: int) -> str:
    """`text` up to `limit` characters, cut at a line break when it is longer."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut[: cut.rfind("\n")] if "\n" in cut else cut


def _bounded_join(parts: Sequence[str], limit: int) -> str:
    """Join whole entries, in order, while they fit in `limit` (one huge docstring does not end the rest).

    A first entry over the limit is cut at a line break instead.
    """
    out: list[str] = []
    size = 0
    for part in parts:
        cost = len(part) + 2
        if size + cost > limit:
            if not out:
                out.append(_cut(part, limit))
                size = len(out[0])
            continue
        out.append(part)
        size += cost
    return "\n\n".join(out)
