"""The offline model's research policy as pure functions: plan, queries, sentences and BM25 evidence.

Kept apart from the `Model` so the scoring can be tested on plain strings, and so that every
decision is a function of its inputs alone: the same question and pages always give the same answer.
Quotes are cut out of the page text by position and never rewritten, so each one is a verbatim
substring of the page it came from and passes citation verification.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

K1: Final = 1.2
B: Final = 0.75
TITLE_BOOST: Final = 0.5
"""A sentence's score is multiplied by up to 1 + TITLE_BOOST when its page title holds the query terms."""
MIN_QUOTE_CHARS: Final = 25
MAX_QUOTE_CHARS: Final = 400
MAX_QUOTES: Final = 3
MIN_COVERAGE: Final = 0.3
"""The best sentence must hold this share of the question's terms, or nothing counts as relevant."""
RELATIVE_FLOOR: Final = 0.35
"""Further quotes must score at least this fraction of the best one, so weak matches are not cited."""
NEAR_DUPLICATE: Final = 0.6
"""Token-set Jaccard similarity at which a second sentence adds nothing new."""
MAX_PLAN_ITEMS: Final = 4
MAX_SUB_QUESTION_CHARS: Final = 300
MAX_QUERY_CHARS: Final = 400
SUB_QUESTION_TEMPLATE: Final = 'What do the sources say about "{term}"?'

NOT_FOUND: Final = "I could not find anything relevant to this question in the available sources."

_STOPWORD_LIST: Final = """
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing done during each few for from further had has have having
    he her here hers him his how i if in into is it its itself just me more most my no nor not now of off on
    once only or other our ours out over own same she should so some such than that the their theirs them
    then there these they this those through to too under until up very was we were what when where which
    while who whom whose why will with would you your yours explain describe tell please
"""
STOPWORDS: Final = frozenset(_STOPWORD_LIST.split())

_WORD: Final = re.compile(r"[^\W_]+")
_EDGE_PUNCTUATION: Final = string.punctuation + "“”‘’«»¿¡…"
_LINE: Final = re.compile(r"[^\n]+")
WRAP_WIDTH = 60
"""A line at least this long that ends mid-sentence is taken to be hard-wrapped (the Python reference
text wraps at ~70 columns), so it continues on the next line."""
# The end of a sentence: terminal punctuation and any closing quotes or brackets, followed by space
# and something that can start a sentence.
_BOUNDARY: Final = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9])")
_ABBREVIATIONS: Final = frozenset({"e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "prof", "st", "no", "fig", "cf"})
_BULLET: Final = re.compile(r"(?:[-*•]|\d+[.)])\s+")
_TERMINAL: Final = re.compile(r"[.!?][\"'”’)\]]*\Z")
_FRAME_OPEN: Final = re.compile(r"\A<untrusted_data\b[^\n]*>\n")
_FRAME_CLOSE: Final = re.compile(r"\n?</untrusted_data>\s*\Z")
_TRUNCATION: Final = re.compile(r"\n?\[\.\.\. truncated: \d+ of \d+ characters shown \.\.\.\]\Z")
_ESCAPED_TAG: Final = "&lt;"
"""What `neutralize` leaves where it changed the page text: a sentence holding it may not be verbatim."""


# --- words -------------------------------------------------------------------------------------------


def stem(word: str) -> str:
    """A light suffix stripper so "blocks", "blocked" and "blocking" meet; not a full Porter stemmer."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix, min_length in (("ing", 6), ("ed", 5)):
        if word.endswith(suffix) and len(word) >= min_length and not word.endswith("eed"):
            root = word[: -len(suffix)]
            if len(root) >= 3 and root[-1] == root[-2] and root[-1] not in "lsz":
                root = root[:-1]  # "stopped" -> "stop"
            return root
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def tokenize(text: str) -> list[str]:
    """Lowercase letter/digit runs, stopwords dropped, lightly stemmed."""
    return [stem(word) for word in _WORD.findall(text.casefold()) if word not in STOPWORDS]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def key_words(question: str) -> list[str]:
    """The question's content words as written ("HTTP/3", "head-of-line"), in order, without repeats."""
    words: list[str] = []
    seen: set[str] = set()
    for raw in question.split():
        word = raw.strip(_EDGE_PUNCTUATION)
        if not tokenize(word) or word.casefold() in seen:
            continue
        seen.add(word.casefold())
        words.append(word)
    return words


def _is_name_like(word: str, *, opens_question: bool) -> bool:
    """Digits or inner capitals ("HTTP/3", "iPhone"), or a capital that does not just open the question."""
    return (
        any(c.isdigit() for c in word)
        or any(c.isupper() for c in word[1:])
        or (word[:1].isupper() and not opens_question)
    )


def _specific_first(question: str) -> list[str]:
    """The key words, name-like ones first, then longer ones: a proxy for how rare a word is."""
    words = key_words(question)
    opener = question.split()[0].strip(_EDGE_PUNCTUATION) if question.split() else ""
    return sorted(
        words,
        key=lambda w: (not _is_name_like(w, opens_question=w == opener), -len(w), words.index(w)),
    )


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut or text[:limit]


def search_query(question: str) -> str:
    """The first query: the question's key words, or the question itself when it has none."""
    words = key_words(question)
    return _clip(" ".join(words) if words else " ".join(question.split()), MAX_QUERY_CHARS)


def simpler_query(question: str) -> str:
    """The retry query: the (at most two) most specific key words, kept in question order."""
    words = key_words(question)
    if not words:
        return search_query(question)
    keep = set(_specific_first(question)[: max(1, min(2, len(words) - 1))])
    return _clip(" ".join(w for w in words if w in keep), MAX_QUERY_CHARS)


def plan_for(question: str) -> list[str]:
    """The question itself, then one sub-question per specific key word (at most four in all)."""
    cleaned = " ".join(question.split())
    items = [_clip(cleaned if len(cleaned) >= 3 else f"About: {cleaned}", MAX_SUB_QUESTION_CHARS)]
    for word in _specific_first(cleaned)[: MAX_PLAN_ITEMS - 1]:
        items.append(_clip(SUB_QUESTION_TEMPLATE.format(term=word), MAX_SUB_QUESTION_CHARS))
    return _unique(items)


# --- pages and sentences ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Page:
    """A fetched page as the model saw it: `text` is the framed text with the frame and marker removed."""

    url: str
    title: str
    text: str
    truncated: bool = False


def unframe(framed: str) -> tuple[str, bool]:
    """The page text inside an untrusted-data frame, and whether a truncation marker was cut off its end."""
    text = _FRAME_CLOSE.sub("", _FRAME_OPEN.sub("", framed, count=1), count=1)
    text, markers = _TRUNCATION.subn("", text, count=1)
    return text, markers > 0


def _ends_abbreviation(text: str, start: int, end: int) -> bool:
    """Whether the period at `end` closes an abbreviation or an initial rather than a sentence."""
    before = text[start:end].rsplit(None, 1)
    word = before[-1].lstrip(_EDGE_PUNCTUATION).casefold() if before else ""
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _wrapped(line: str, following: str) -> bool:
    """Whether `following` continues `line`: a hard wrap, not a new paragraph, heading or bullet."""
    stripped = line.rstrip()
    if not following.strip() or _TERMINAL.search(stripped) or stripped.endswith(":"):
        return False
    first = following.lstrip()[:1]
    return first.islower() or (len(stripped) >= WRAP_WIDTH and not _BULLET.match(following.lstrip()))


def _logical_lines(text: str) -> Iterator[tuple[int, int]]:
    """Spans of lines, with hard-wrapped lines joined to the line they continue."""
    lines = list(_LINE.finditer(text))
    index = 0
    while index < len(lines):
        start, end = lines[index].start(), lines[index].end()
        while index + 1 < len(lines) and lines[index + 1].start() == end + 1:
            if not _wrapped(text[lines[index].start() : end], lines[index + 1].group()):
                break
            index += 1
            end = lines[index].end()
        yield start, end
        index += 1


def _spans(text: str) -> Iterator[tuple[int, int]]:
    for line_start, line_end in _logical_lines(text):
        start = line_start
        for match in _BOUNDARY.finditer(text, line_start, line_end):
            if match.group().startswith(".") and _ends_abbreviation(text, line_start, match.start()):
                continue
            yield start, match.end()
            start = match.end()
        yield start, line_end


# reStructuredText heading underlines ("*****", "=====") in the Python reference text.
_UNDERLINE: Final = re.compile(r"^[ \t]*([*=~^#-])\1{2,}[ \t]*$", re.MULTILINE)
MIN_QUOTE_WORDS = 6


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`: slices of it with bullets cut and line wrapping folded into single spaces.

    Citation checks compare quotes after whitespace normalisation, so folding the wrap keeps every
    sentence quotable while making it read as one line.
    """
    text = _UNDERLINE.sub("", text)  # an underline ends its heading's paragraph
    sentences: list[str] = []
    for start, end in _spans(text):
        piece = text[start:end].strip()
        if bullet := _BULLET.match(piece):
            piece = piece[bullet.end() :]
        piece = " ".join(piece.split())
        if piece:
            sentences.append(piece)
    return sentences


# --- BM25 --------------------------------------------------------------------------------------------


class BM25Index:
    """Okapi BM25 over a fixed list of tokenised documents (here: the sentences of the fetched pages)."""

    def __init__(self, documents: Sequence[Sequence[str]], *, k1: float = K1, b: float = B) -> None:
        self.k1 = k1
        self.b = b
        self.size = len(documents)
        self._counts = [Counter(document) for document in documents]
        self._lengths = [len(document) for document in documents]
        self._average = (sum(self._lengths) / self.size) if self.size else 0.0
        self._df = Counter(term for document in documents for term in set(document))

    def idf(self, term: str) -> float:
        """The smoothed (always positive) IDF; a term in no document gets the largest weight."""
        df = self._df[term]
        return math.log(1 + (self.size - df + 0.5) / (df + 0.5))

    def score(self, query: Sequence[str], index: int) -> float:
        counts = self._counts[index]
        length_norm = self.k1 * (1 - self.b + self.b * self._lengths[index] / (self._average or 1.0))
        total = 0.0
        for term in _unique(query):
            tf = counts[term]
            if tf:
                total += self.idf(term) * tf * (self.k1 + 1) / (tf + length_norm)
        return total

    def coverage(self, query: Sequence[str], index: int) -> float:
        """The share of the query's distinct terms that the document contains.

        A plain count rather than an IDF share: on the handful of sentences a run fetches, a topic word
        found in every sentence gets an IDF near zero, which would make the right sentence look irrelevant.
        """
        terms = _unique(query)
        return sum(1 for term in terms if self._counts[index][term]) / len(terms) if terms else 0.0


# --- evidence ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """A sentence chosen to support the answer; `quote` is an exact slice of `page.text`."""

    page: Page
    page_index: int
    position: int
    quote: str
    score: float
    tokens: frozenset[str]


def _quotable(sentence: str, page: Page) -> bool:
    return (
        MIN_QUOTE_CHARS <= len(sentence) <= MAX_QUOTE_CHARS
        and len(sentence.split()) >= MIN_QUOTE_WORDS  # prose, not a heading or a label
        and "::=" not in sentence  # grammar productions read badly as evidence
        and _ESCAPED_TAG not in sentence
        and " ".join(sentence.split()).casefold() != " ".join(page.title.split()).casefold()
    )


def _near_duplicate(a: Evidence, b: Evidence) -> bool:
    union = a.tokens | b.tokens
    return not union or len(a.tokens & b.tokens) / len(union) >= NEAR_DUPLICATE


def select_evidence(
    question: str,
    pages: Sequence[Page],
    *,
    exclude_quotes: frozenset[tuple[str, str]] = frozenset(),
    exclude_urls: frozenset[str] = frozenset(),
    max_quotes: int = MAX_QUOTES,
) -> list[Evidence]:
    """The best-scoring quotable sentences for `question`, best first; empty when nothing is relevant."""
    query = _unique(tokenize(question))
    if not query:
        return []
    rows: list[tuple[int, int, str]] = []
    for page_index, page in enumerate(pages):
        sentences = split_sentences(page.text)
        if page.truncated and sentences and not _TERMINAL.search(sentences[-1]):
            sentences.pop()  # cut off mid-sentence by truncation
        rows += [(page_index, position, sentence) for position, sentence in enumerate(sentences)]
    tokens = [tokenize(sentence) for _, _, sentence in rows]
    index = BM25Index(tokens)
    titles = [set(tokenize(page.title)) for page in pages]

    candidates: list[tuple[float, float, Evidence]] = []
    for i, (page_index, position, sentence) in enumerate(rows):
        page = pages[page_index]
        raw = index.score(query, i)
        if raw <= 0 or not _quotable(sentence, page):
            continue
        if page.url in exclude_urls or (page.url, sentence) in exclude_quotes:
            continue
        boost = 1 + TITLE_BOOST * len(titles[page_index].intersection(query)) / len(query)
        evidence = Evidence(
            page=page,
            page_index=page_index,
            position=position,
            quote=sentence,
            score=raw * boost,
            tokens=frozenset(tokens[i]),
        )
        candidates.append((evidence.score, index.coverage(query, i), evidence))
    candidates.sort(key=lambda c: (-c[0], c[2].page_index, c[2].position))
    if not candidates or candidates[0][1] < MIN_COVERAGE:
        return []

    best = candidates[0][0]
    chosen: list[Evidence] = []
    for score, _, evidence in candidates:
        if len(chosen) >= max_quotes or score < RELATIVE_FLOOR * best:
            break
        if not any(_near_duplicate(evidence, other) for other in chosen):
            chosen.append(evidence)
    return chosen


def reading_order(evidence: Sequence[Evidence]) -> list[Evidence]:
    """Grouped by page (pages in order of their best sentence), sentences in page order."""
    first_rank: dict[int, int] = {}
    for rank, item in enumerate(evidence):
        first_rank.setdefault(item.page_index, rank)
    return sorted(evidence, key=lambda e: (first_rank[e.page_index], e.position))


def _display_title(page: Page) -> str:
    return " ".join(page.title.split()) or page.url


def compose_answer(evidence: Sequence[Evidence]) -> str:
    """Per page, 'According to "<title>": <sentences>'; the answer only reads the quotes out, it adds nothing."""
    paragraphs: list[str] = []
    current: int | None = None
    for item in reading_order(evidence):
        sentence = " ".join(item.quote.split())
        if item.page_index != current:
            paragraphs.append(f'According to "{_display_title(item.page)}": {sentence}')
            current = item.page_index
        else:
            paragraphs[-1] += f" {sentence}"
    return "\n\n".join(paragraphs)


def unresolved(question: str, plan: Sequence[str], evidence: Sequence[Evidence]) -> list[str]:
    """Sub-questions the evidence does not speak to.

    The question itself counts as resolved when there is any evidence; another sub-question when the
    evidence contains at least half of its own terms (its template words aside).
    """
    found = frozenset().union(*(e.tokens for e in evidence)) if evidence else frozenset[str]()
    template = set(tokenize(SUB_QUESTION_TEMPLATE.format(term="")))
    question_key = " ".join(question.split()).casefold()
    missing: list[str] = []
    for item in plan:
        if " ".join(item.split()).casefold() == question_key:
            resolved = bool(evidence)
        else:
            terms = [t for t in _unique(tokenize(item)) if t not in template]
            resolved = bool(evidence) and (not terms or sum(t in found for t in terms) * 2 >= len(terms))
        if not resolved:
            missing.append(item)
    return missing
