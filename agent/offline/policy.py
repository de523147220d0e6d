"""The offline model's research policy as pure functions: plan, queries, sentences and BM25 evidence.

Kept apart from the `Model` so the scoring can be tested on plain strings, and so that every
decision is a function of its inputs alone: the same question and pages always give the same answer.
Quotes are cut out of the page text by position and never rewritten, so each one is a verbatim
substring of the page it came from and passes citation verification.
"""

from __future__ import annotations

import bisect
import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from agent.citations import page_sections
from agent.offline.phrasebook import reference_terms
from agent.offline.subject import FRAME_WORDS, Subject, subject_of

K1: Final = 1.2
B: Final = 0.75
TITLE_BOOST: Final = 0.5
"""A sentence's score is multiplied by up to 1 + TITLE_BOOST when its page title holds the query terms."""
MIN_QUOTE_CHARS: Final = 25
MAX_QUOTE_CHARS: Final = 400
MAX_QUOTES: Final = 5
MIN_COVERAGE: Final = 2 / 3
"""A sentence (with its section heading) must hold this share of the question's topic words, or of the
reference's words for it (`phrasebook`), to count as relevant at all."""
LEAD_SENTENCES: Final = 2
LEAD_BOOST: Final = 0.5
"""Added to the boost of the first LEAD_SENTENCES quotable sentences of a reference entry
(`functools.lru_cache(...)`) or of the section that defines the question's subject: both state what
their subject is or does before they go into detail."""
_API_ENTRY: Final = re.compile(r"(?:async |class )?[A-Za-z_][\w.]*(?:\(|$)")
OPENS_BOOST: Final = 0.5
"""Added for a sentence that begins by naming the subject ('The "global" statement is a declaration...')."""
DEFINES_BOOST: Final = 1.0
"""Added to the boost of a sentence whose section heading or entry names the question's subject: the
section that defines a name beats one that mentions it."""
RELATIVE_FLOOR: Final = 0.25
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
    """The plain query: the question's key words, or the question itself when it has none."""
    words = key_words(question)
    return _clip(" ".join(words) if words else " ".join(question.split()), MAX_QUERY_CHARS)


def reference_query(question: str) -> str | None:
    """The question in the reference's words: its subject as the reference spells it ("walrus" ->
    "assignment expression", `asyncio.gather` -> also "gather") and the terms `PHRASEBOOK` has for its
    phrasing ("skip to the next item" -> "continue statement"); None when there are none."""
    subject = subject_of(question)
    names = [name for name in subject.names if name[:1].isalnum() or name.startswith("_")]
    terms = _unique([*names, *subject.search_terms(), *reference_terms(question)])
    return _clip(" ".join(terms), MAX_QUERY_CHARS) if terms else None


def first_queries(question: str) -> list[str]:
    """The first round of searches, run together: the reference's words when there are any, then the
    question's own key words."""
    plain = search_query(question)
    reference = reference_query(question)
    return [reference, plain] if reference is not None and reference != plain else [plain]


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
    if _BULLET.match(following.lstrip()):
        return False
    indented_alike = line[:1].isspace() and _indent(line) == _indent(following)
    return first.islower() or len(stripped) >= WRAP_WIDTH or indented_alike


def _indent(line: str) -> int:
    """An indented paragraph (the reference text indents its prose) wraps at any width: its next line at
    the same indent continues it."""
    return len(line) - len(line.lstrip())


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
    return [sentence for _, sentence in sentence_spans(text)]


def sentence_spans(text: str) -> list[tuple[int, str]]:
    """`split_sentences` with where each sentence starts in `text`."""
    blanked = _UNDERLINE.sub(lambda m: " " * len(m.group()), text)  # an underline ends its heading's paragraph
    sentences: list[tuple[int, str]] = []
    for start, end in _spans(blanked):
        piece = blanked[start:end].strip()
        if bullet := _BULLET.match(piece):
            piece = piece[bullet.end() :]
        piece = " ".join(piece.split())
        if piece:
            sentences.append((start, piece))
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
        and not _APPARATUS.match(sentence)
        and " ".join(sentence.split()).casefold() != " ".join(page.title.split()).casefold()
    )


# Scholarly apparatus, not content: a footnote ("[2] In pattern matching, ..."), a PEP reference
# ("**PEP 492** - Coroutines with ..."), a doctest line (">>> Point = ...").
_APPARATUS: Final = re.compile(r"\[\d+\]\s|\*\*PEP \d+\*\*|>>>|\.\.\.\s")


def _near_duplicate(a: Evidence, b: Evidence) -> bool:
    union = a.tokens | b.tokens
    return not union or len(a.tokens & b.tokens) / len(union) >= NEAR_DUPLICATE


@dataclass(frozen=True, kw_only=True)
class _Sentence:
    page_index: int
    position: int
    text: str
    context: str
    """The page title and the heading or reference entry the sentence sits under."""
    lead: int
    """How many sentences of its section come before it: a section says what its subject is first."""


def _sentences(pages: Sequence[Page]) -> list[_Sentence]:
    rows: list[_Sentence] = []
    for page_index, page in enumerate(pages):
        spans = sentence_spans(page.text)
        if page.truncated and spans and not _TERMINAL.search(spans[-1][1]):
            spans.pop()  # cut off mid-sentence by truncation
        sections = page_sections(page.text)
        starts = [start for start, _ in sections]
        seen: Counter[int] = Counter()
        for position, (offset, sentence) in enumerate(spans):
            at = bisect.bisect_right(starts, offset) - 1
            header = sections[at][1] if at >= 0 else ""
            lead = seen[at]
            seen[at] += 1 if _quotable(sentence, page) else 0
            context = f"{page.title}\n{header}"
            rows.append(_Sentence(page_index=page_index, position=position, text=sentence, context=context, lead=lead))
    return rows


def topic_words(question: str) -> list[str]:
    """The question's tokens without how-to phrasing ("make", "get"): what the answer must be about."""
    frame = set(tokenize(" ".join(FRAME_WORDS)))
    return [t for t in _unique(tokenize(question)) if t not in frame and not t.isdigit()]


def _page_words(pages: Sequence[Page]) -> set[str]:
    return {token for page in pages for token in tokenize(f"{page.title}\n{page.text}")}


def unmentioned(question: str, pages: Sequence[Page]) -> list[str]:
    """Names in the question that no fetched page mentions at all ("Australia" in "What is the capital of
    Australia?", "UnboundLocalError", `json.dumps`): pages that never name them cannot be about the
    question, whatever else they share with it. Only name-like words count (`_is_name_like`, or code:
    dotted, underscored); everyday words may well be paraphrased by a page."""
    seen = _page_words(pages)
    opener = question.split()[0].strip(_EDGE_PUNCTUATION) if question.split() else ""
    missing: list[str] = []
    labelled = {m.group(1).casefold() for m in _LABELLED_NAME.finditer(question)} - _NOT_LIBRARY_NAMES
    for word in key_words(question):
        named = _is_name_like(word, opens_question=word == opener) or any(c in word for c in "._")
        named = named or word.casefold() in labelled
        stems = [t for t in tokenize(word) if not t.isdigit()]
        if named and _NAME.fullmatch(word) and word not in _NOT_NAMES and not all(t in seen for t in stems):
            missing.append(word)
    return missing


# A name: starts with a letter, holds at least three, and is made of name characters. Not a value from
# the user's own code ("0x7f", "u00e9", "1D"), a fragment of it ("three!'.lstrip('Arthur"), or a
# contraction ("I'm").
_NAME: Final = re.compile(r"(?=(?:[^A-Za-z]*[A-Za-z]){3})[A-Za-z][\w.]*(?:/\d+)?")
_NOT_NAMES: Final = frozenset({"OK", "Ok", "TODO", "FAQ", "vs"})
# "the requests library", "a pandas DataFrame" aside, a word the question calls a library is a name.
_NOT_LIBRARY_NAMES: Final = frozenset(
    {"standard", "python", "builtin", "built-in", "external", "third-party", "this", "that", "which", "what"}
    | {"my", "our", "your", "own", "new", "same", "other", "whole", "entire", "main", "a", "an", "the", "any"}
)
_LABELLED_NAME: Final = re.compile(r"\b([A-Za-z][\w.]*)\s+(?:library|package|module|framework)\b", re.IGNORECASE)


def _share(words: Sequence[str], found: set[str] | frozenset[str]) -> float:
    return sum(1 for w in words if w in found) / len(words) if words else 0.0


def unmentioned_words(text: str, pages: Sequence[Page]) -> list[str]:
    """The words of `text` that no page mentions at all (whether a further search could add anything)."""
    seen = _page_words(pages)
    return [word for word in _unique(tokenize(text)) if word not in seen]


@dataclass(frozen=True, kw_only=True)
class _Query:
    """What a question asks, in the forms sentence scoring needs."""

    subject: Subject
    terms: list[str]
    """Scored by BM25: the question's words, its subject as the reference spells it, the phrasebook's."""
    topic: list[str]
    bridge: list[str]

    @classmethod
    def of(cls, question: str) -> _Query:
        subject = subject_of(question)
        reference = reference_terms(question)
        terms = _unique(tokenize(" ".join([question, *subject.search_terms(), *reference])))
        bridge = _unique(tokenize(" ".join(reference)))
        return cls(subject=subject, terms=terms, topic=topic_words(question) or terms, bridge=bridge)

    def boost(self, row: _Sentence, title_words: set[str]) -> float:
        """The title, a section that defines the subject, a sentence that opens with it, the lead of an entry."""
        boost = 1 + TITLE_BOOST * len(title_words.intersection(self.terms)) / len(self.terms)
        defines = bool(self.subject) and self.subject.mentioned_in(row.context)
        if defines:
            boost += DEFINES_BOOST
        if self.subject and self.subject.opens(row.text):
            boost += OPENS_BOOST
        if row.lead < LEAD_SENTENCES and (defines or _API_ENTRY.match(row.context.rsplit("\n", 1)[-1])):
            boost += LEAD_BOOST
        return boost

    def scored_words(self, row: _Sentence) -> list[str]:
        """A sentence's words, plus its entry's name when that entry defines the subject: "Typical use to
        call a cooperative superclass method." under `class super(...)` is about `super`."""
        words = tokenize(row.text)
        if self.subject and self.subject.mentioned_in(row.context):
            words += tokenize(row.context.rsplit("\n", 1)[-1].split("(", 1)[0])
        return words

    def relevant(self, row: _Sentence, tokens: frozenset[str]) -> bool:
        """About the subject (if one is named) and holding enough of the topic or of the bridge words."""
        if self.subject and not self.subject.mentioned_in(f"{row.text}\n{row.context}"):
            return False
        in_context = tokens | set(tokenize(row.context))
        return max(_share(self.topic, in_context), _share(self.bridge, in_context)) >= MIN_COVERAGE


def select_evidence(
    question: str,
    pages: Sequence[Page],
    *,
    exclude_quotes: frozenset[tuple[str, str]] = frozenset(),
    exclude_urls: frozenset[str] = frozenset(),
    max_quotes: int = MAX_QUOTES,
) -> list[Evidence]:
    """The best-scoring quotable sentences for `question`, best first; empty when nothing is relevant.

    When the question names a subject (`agent.offline.subject`), only sentences that speak of it, or sit
    in a section or entry that does, are eligible, and those in a section defining it score higher.
    A sentence's section heading counts towards its relevance, so "Least-recently-used cache
    decorator." under `functools.lru_cache(...)` counts as being about `lru_cache`.
    """
    query = _Query.of(question)
    if not query.terms or unmentioned(question, pages):
        return []
    rows = _sentences(pages)
    tokens = [query.scored_words(row) for row in rows]
    index = BM25Index(tokens)
    titles = [set(tokenize(page.title)) for page in pages]

    candidates: list[Evidence] = []
    for i, row in enumerate(rows):
        page = pages[row.page_index]
        raw = index.score(query.terms, i)
        if raw <= 0 or not _quotable(row.text, page) or not query.relevant(row, frozenset(tokens[i])):
            continue
        if page.url in exclude_urls or (page.url, row.text) in exclude_quotes:
            continue
        score = raw * query.boost(row, titles[row.page_index])
        evidence = Evidence(
            page=page,
            page_index=row.page_index,
            position=row.position,
            quote=row.text,
            score=score,
            tokens=frozenset(tokens[i]),
        )
        candidates.append(evidence)
    candidates.sort(key=lambda e: (-e.score, e.page_index, e.position))
    return _best(candidates, max_quotes)


def _best(candidates: Sequence[Evidence], max_quotes: int) -> list[Evidence]:
    """The top candidates within RELATIVE_FLOOR of the best, skipping near-duplicates."""
    chosen: list[Evidence] = []
    for evidence in candidates:
        if len(chosen) >= max_quotes or evidence.score < RELATIVE_FLOOR * candidates[0].score:
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
