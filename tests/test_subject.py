"""What a question is about (agent.offline.subject) and the reference's words for it (phrasebook)."""

from __future__ import annotations

import pytest

from agent.offline.phrasebook import reference_terms
from agent.offline.subject import subject_of


@pytest.mark.parametrize(
    ("question", "names", "phrases"),
    [
        ("How does super() work?", ("super",), ()),
        ("What does __slots__ do?", ("__slots__",), ()),
        ("How does asyncio.gather handle exceptions?", ("asyncio.gather",), ()),
        ("What does @classmethod do?", ("classmethod",), ()),
        ("What is the walrus operator?", (":=",), ("assignment expression",)),
        ("What does the nonlocal statement do?", ("nonlocal",), ()),
        ("What does the with statement do?", ("with",), ()),
        ("What does *args mean?", ("*args",), ()),
        ("How do I use the itertools module?", ("itertools",), ()),
        ("What is enumerate for?", ("enumerate",), ()),
    ],
)
def test_a_named_subject_is_found(question: str, names: tuple[str, ...], phrases: tuple[str, ...]) -> None:
    subject = subject_of(question)
    assert subject.names == names and subject.phrases == phrases


@pytest.mark.parametrize(
    "question",
    [
        "How do I delete a directory?",  # plain English: no named subject
        "What does the modulo operator yield?",  # `yield` used as a verb, not the keyword
        "Is it faster to use a list or a set?",  # everyday words that are also built-in names
        "What is the capital of Australia?",
    ],
)
def test_plain_english_has_no_subject(question: str) -> None:
    assert not subject_of(question)


def test_mentions_are_code_aware() -> None:
    subject = subject_of("How does super() work?")
    assert not subject.mentioned_in("Super-mkdir; create a leaf directory and all intermediate ones.")
    assert subject.mentioned_in("super() -> same as super(__class__, <first argument>)")
    slots = subject_of("What does __slots__ do?")
    assert not slots.mentioned_in("a tuple of argument slots is filled from left to right")
    assert slots.mentioned_in("*__slots__* allow us to explicitly declare data members")
    gather = subject_of("How does asyncio.gather handle exceptions?")
    assert gather.mentioned_in("asyncio.gather(*aws, return_exceptions=False)")
    assert gather.mentioned_in("calling gather.cancel() after catching an exception")
    cache = subject_of("What does functools.lru_cache do?")
    assert cache.mentioned_in("An LRU cache decorator")  # the prose spelling of lru_cache
    assert not cache.mentioned_in("Least-recently-used cache decorator.")
    assert cache.mentioned_in("functools.lru_cache(maxsize=128, typed=False)")
    insort = subject_of("What does bisect.insort do?")
    assert insort.mentioned_in("bisect.insort_right(a, x, lo=0, hi=None)")  # a variant of the name
    walrus = subject_of("What is the walrus operator?")
    assert walrus.mentioned_in('| ":=" | Assignment expression |')
    assert walrus.mentioned_in("Assignment expressions bind a name inside an expression")  # plural phrase
    assert not walrus.mentioned_in("The power operator binds more tightly than unary operators")
    assert not walrus.mentioned_in('An augmented assignment expression like "x += 1"')  # another thing


@pytest.mark.parametrize(
    ("question", "term"),
    [
        ("How do I skip to the next iteration?", "continue"),
        ("How can I stop a while loop early?", "break"),
        ("What's a one-line function?", "lambda"),
        ("How do I memoize an expensive function?", "functools.lru_cache"),
        ("How do I pick a random element from a list?", "random.choice"),
        ("What is the walrus operator?", "assignment"),
    ],
)
def test_the_phrasebook_bridges_everyday_phrasing(question: str, term: str) -> None:
    assert term in reference_terms(question)


def test_the_phrasebook_adds_nothing_to_a_question_in_reference_terms() -> None:
    assert reference_terms("What does the nonlocal statement do?") == []
