"""Citation verification: a quote must occur in a page this run fetched."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from agent.report import Citation, ResearchReport
from tools import FetchedPage

_WHITESPACE = re.compile(r"\s+")
_QUOTE_MARKS = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-"})


def normalize_text(text: str) -> str:
    """Case-, width- and whitespace-insensitive form used for quote matching."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTE_MARKS)
    return _WHITESPACE.sub(" ", text).strip().casefold()


def _normalize_url(url: str) -> str:
    return url.strip().rstrip("/")


@dataclass(frozen=True, kw_only=True)
class CitationProblem:
    index: int
    citation: Citation
    reason: str

    def describe(self) -> str:
        return f"citation {self.index + 1} ({self.citation.url}): {self.reason}"


def find_page(url: str, sources: Mapping[str, FetchedPage]) -> FetchedPage | None:
    wanted = _normalize_url(url)
    for page in sources.values():
        if wanted in (_normalize_url(page.url), _normalize_url(page.final_url)):
            return page
    return None


def check_citations(report: ResearchReport, sources: Mapping[str, FetchedPage]) -> list[CitationProblem]:
    """Every citation whose URL was not fetched in this run, or whose quote is not in that page."""
    problems: list[CitationProblem] = []
    normalized_pages: dict[str, str] = {}
    for index, citation in enumerate(report.citations):
        page = find_page(citation.url, sources)
        if page is None:
            problems.append(
                CitationProblem(index=index, citation=citation, reason="this URL was not fetched in this run")
            )
            continue
        body = normalized_pages.setdefault(page.url, normalize_text(f"{page.title}\n{page.text}"))
        if normalize_text(citation.quote) not in body:
            problems.append(
                CitationProblem(
                    index=index,
                    citation=citation,
                    reason="the quote does not occur verbatim in the fetched page",
                )
            )
    return problems


def without_problems(report: ResearchReport, problems: list[CitationProblem]) -> ResearchReport:
    """The report with unverifiable citations removed and the removal noted under `unresolved`."""
    bad = {p.index for p in problems}
    kept = [c for i, c in enumerate(report.citations) if i not in bad]
    note = f"{len(bad)} citation(s) removed because their quotes could not be verified against fetched pages."
    return report.model_copy(update={"citations": kept, "unresolved": [*report.unresolved, note]})


# An entry of a reference page: an unindented line naming a callable or attribute
# ("functools.lru_cache(maxsize=128, typed=False): ...", "object.__slots__", "class dict(**kwargs)").
_ENTRY: Final = re.compile(r"^(?:async |class )?[A-Za-z_]\w*(?:\.\w+)*(?:\(.*|\.\w+\s*)$")
# A reStructuredText heading: a line, then an underline of one repeated punctuation character.
_HEADING: Final = re.compile(r"^(\S[^\n]*)\n([*=~^#-])\2{2,}[ \t]*$", re.MULTILINE)
MAX_SECTION_CHARS: Final = 160


def page_sections(text: str) -> list[tuple[int, str]]:
    """Where each heading or reference entry of `text` starts, with its line, in order."""
    starts = [(m.start(), m.group(1)) for m in _HEADING.finditer(text)]
    offset = 0
    for line in text.splitlines(keepends=True):
        if line[:1].strip() and _ENTRY.match(line.rstrip("\n")):
            starts.append((offset, line.strip()))
        offset += len(line)
    return sorted(starts)


_SIGNATURE: Final = re.compile(r"^((?:async |class )?[A-Za-z_][\w.]*)\(.*$")


def _entry_name(line: str) -> str:
    """An entry's name without its parameters ("class zip(*iterables, strict=False)" -> "class zip"):
    parameter names are not what the entry is about."""
    match = _SIGNATURE.match(line)
    return match.group(1) if match else line


def quote_section(title: str, text: str, quote: str) -> str:
    """Where in a page (`title`, `text`) the quote sits: the title and the heading or reference entry
    ("functools.lru_cache(...)") it falls under. The critic reads it to judge whether a quote is about the
    thing asked: a docstring sentence rarely names its own function, but the entry it belongs to does."""
    wanted = normalize_text(quote)
    title = _entry_name(" ".join(title.split()))
    starts = page_sections(text)
    if not wanted or not starts:
        return title
    bounds = [*(start for start, _ in starts[1:]), len(text)]
    for (start, header), end in zip(starts, bounds, strict=True):
        if wanted in normalize_text(text[start:end]):
            header = _entry_name(" ".join(header.split()))[:MAX_SECTION_CHARS]
            return f"{title} › {header}" if title and header.casefold() != title.casefold() else header
    return title


UNCITED_ANSWER: Final = (
    "Your answer cites nothing. Cite at least one verbatim quote from a page you fetched, or set `answered` "
    "to false, say plainly that the sources do not establish an answer, and list what is missing in `unresolved`."
)
UNCITED_NOTE: Final = "No citation supports the answer, so the sources do not establish it."


def is_uncited_answer(report: ResearchReport) -> bool:
    """A report that claims an answer but cites no fetched page: nothing establishes it."""
    return report.answered and not report.citations


def as_not_answered(report: ResearchReport) -> ResearchReport:
    """An uncited answer marked for what it is: not established by the run's sources."""
    return report.model_copy(update={"answered": False, "unresolved": [*report.unresolved, UNCITED_NOTE]})
