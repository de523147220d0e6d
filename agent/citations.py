"""Citation verification: a quote must occur in a page this run fetched."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

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
