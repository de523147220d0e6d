"""What a question is about: the names and phrases that evidence for an answer must speak of.

"How does super() work?" is about `super`, and a quote about `os.makedirs` ("Super-mkdir; create a leaf
directory…") is not evidence for it however many words it shares with the question. The offline model
uses the subject to search for, and to recognise, the section that defines the thing asked about; the
offline critic uses it to judge whether the cited quotes are about that thing. One table of Python
jargon (`ALIASES`: "walrus" is the assignment expression `:=`) serves both.

A subject is found only when the question names something in code form: a dotted or called name
(`asyncio.gather`, `sorted()`), a dunder (`__slots__`), a decorator (`@classmethod`), starred
parameters (`*args`), an operator (`:=`, `==`), a keyword that is not also an everyday English word
(`nonlocal`, `lambda`), or an everyday one marked as code ("the with statement", "the is operator"),
a built-in function or stdlib module named in prose (`enumerate`, `itertools`), or a jargon word from
`ALIASES`. Plain-English questions ("How do I delete a directory?") have no subject; callers fall back to
word overlap for them.
"""

from __future__ import annotations

import builtins
import keyword
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Final

__all__ = ["ALIASES", "FRAME_WORDS", "Subject", "subject_of"]

ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "walrus": (":=", "assignment expression"),
    "ternary": ("conditional expression",),
    "f-string": ("formatted string literal", "f-string"),
    "fstring": ("formatted string literal", "f-string"),
    "f-strings": ("formatted string literal", "f-string"),
    "docstring": ("docstring", "documentation string"),
    "docstrings": ("docstring", "documentation string"),
    "decorator": ("decorator",),
    "decorators": ("decorator",),
    "comprehension": ("comprehension",),
    "comprehensions": ("comprehension",),
    "generator": ("generator",),
    "generators": ("generator",),
    "dunder": ("special method",),
    "falsy": ("truth value", "false"),
    "truthy": ("truth value", "true"),
    "truthiness": ("truth value",),
    "splat": ("*", "unpacking"),
    "gil": ("global interpreter lock",),
    "mro": ("method resolution order", "__mro__"),
    "slicing": ("slicing", "slice"),
}
"""Jargon a newcomer uses -> how the reference text says it. Keys are matched case-insensitively."""
_OTHER_COMPOUNDS: Final[dict[str, tuple[str, ...]]] = {
    "assignment expression": ("augmented", "Augmented"),
}
"""Phrases that name something else after these words: an "augmented assignment expression" (`x += 1`)
is not the assignment expression (`:=`)."""
_ALIAS_PHRASES: Final = frozenset(alias for aliases in ALIASES.values() for alias in aliases if alias[:1].isalpha())

FRAME_WORDS: Final = frozenset(
    [
        "make",
        "get",
        "give",
        "find",
        "need",
        "want",
        "happen",
        "difference",
        "different",
        "instead",
        "really",
        "thing",
        "something",
        "way",
        "own",
        "possible",
        "able",
        "correct",
        "right",
        "good",
        "best",
        "proper",
        "properly",
        "code",
        "program",
        "check",
        "whether",
        "actually",
        "kind",
        "statement",
        "keyword",
        "operator",
        "clause",
        "block",
        "inside",
        "work",
        "works",
        "return",
        "returns",
        "behave",
        "handle",
        "deal",
        "several",
        "multiple",
        "various",
        "long",
        "many",
        "much",
        "often",
    ]
)
"""How-to phrasing, not topic: "How do I *make* a dataclass immutable?" is about dataclasses and immutability."""

_MARKERS: Final = frozenset(
    {"statement", "statements", "keyword", "keywords", "clause", "clauses", "operator", "block"}
)
"""Words that mark the word before them as code: "the with statement", "the is operator"."""
_ENGLISH_KEYWORDS: Final = frozenset(
    {"and", "as", "class", "else", "for", "from", "if", "import", "in", "is", "not", "or", "return", "try", "while"}
    | {"with", "case", "match", "True", "False", "None", "def"}
)
"""Keywords that are everyday English too: code only when marked ("the in operator") or written as code."""
_ENGLISH_NAMES: Final = frozenset(
    [
        "abs",
        "all",
        "any",
        "ascii",
        "bin",
        "bool",
        "callable",
        "chr",
        "compile",
        "complex",
        "copyright",
        "credits",
        "dict",
        "dir",
        "divmod",
        "eval",
        "exec",
        "exit",
        "filter",
        "float",
        "format",
        "hash",
        "help",
        "hex",
        "id",
        "input",
        "int",
        "iter",
        "len",
        "license",
        "list",
        "locals",
        "map",
        "max",
        "min",
        "next",
        "object",
        "oct",
        "open",
        "ord",
        "pow",
        "print",
        "property",
        "quit",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "slice",
        "str",
        "sum",
        "tuple",
        "type",
        "vars",
        "array",
        "base64",
        "bisect",
        "calendar",
        "cmd",
        "code",
        "copy",
        "csv",
        "datetime",
        "decimal",
        "email",
        "enum",
        "fractions",
        "glob",
        "graphlib",
        "html",
        "http",
        "io",
        "json",
        "keyword",
        "locale",
        "logging",
        "mailbox",
        "math",
        "numbers",
        "operator",
        "os",
        "platform",
        "profile",
        "queue",
        "random",
        "re",
        "secrets",
        "select",
        "shelve",
        "signal",
        "site",
        "socket",
        "stat",
        "statistics",
        "string",
        "struct",
        "symtable",
        "sys",
        "time",
        "timeit",
        "token",
        "tokenize",
        "trace",
        "types",
        "typing",
        "uuid",
        "warnings",
        "wave",
        "weakref",
        "zipfile",
    ]
)
"""Built-in and stdlib names that read as plain English or are too generic to pin a subject in prose
("a list", "the time"); they still count when written as code (`list()`, `os.path`, "the json module")."""

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CODE: Final = re.compile(
    rf"`([^`\n]{{1,60}})`"  # backticked
    rf"|(?<![\w.])(@?{_IDENT}(?:\.{_IDENT})+)(?:\(\))?"  # dotted, maybe called
    rf"|(?<![\w.])(__{_IDENT}__(?:\.py)?)"  # dunder
    rf"|(?<![\w.])(@{_IDENT})"  # decorator
    rf"|(?<![\w.])({_IDENT})\(\)"  # called
    rf"|(?<![\w*])(\*\*?{_IDENT})"  # *args, **kwargs
    r"|(?:^|\s)(:=|==|!=|<=|>=|\*\*|//|->|<<|>>|~)(?=\s|$|[?.,])"  # operators, standalone
)
OPENING_WORDS: Final = 4
_OPERATORS: Final = frozenset({":=", "==", "!=", "<=", ">=", "**", "//", "->", "<<", ">>", "~"})
_WORD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_MODULE_WORD: Final = re.compile(r"\b(?:the\s+)?([a-z_][a-z0-9_]*)\s+(?:module|package|library)\b")


@cache
def _known_names() -> frozenset[str]:
    """Built-in functions and types, and public top-level stdlib modules."""
    names = {n for n in dir(builtins) if not n.startswith("_") and n[:1].islower()}
    names |= {n for n in sys.stdlib_module_names if not n.startswith("_")}
    return frozenset(names)


_DISTINCT_KEYWORDS: Final = frozenset(keyword.kwlist) - _ENGLISH_KEYWORDS
_KEYWORD_LEADS: Final = frozenset(
    {"", "the", "a", "an", "does", "do", "did", "is", "are", "was", "what", "how", "when", "why", "can", "use"}
    | {"using", "about", "and", "or", "vs", "versus", "with"}
)
"""Words after which a keyword that is also a verb is being named, not used: "what does *yield* do",
"*break* inside a loop", but not "what does the modulo operator *yield*"."""


@dataclass(frozen=True)
class Subject:
    """What a question asks about; empty (falsy) if it names nothing."""

    groups: tuple[tuple[str, ...], ...] = ()
    """The separate things asked about, each as its alternative spellings: `sorted()` and `list.sort()`
    are two groups; walrus is one, (`:=`, "assignment expression")."""

    def __bool__(self) -> bool:
        return bool(self.groups)

    @property
    def names(self) -> tuple[str, ...]:
        """The code spellings: `super`, `asyncio.gather`, `:=`."""
        return tuple(dict.fromkeys(i for g in self.groups for i in g if i not in _ALIAS_PHRASES))

    @property
    def phrases(self) -> tuple[str, ...]:
        """The prose spellings of jargon: "assignment expression"."""
        return tuple(dict.fromkeys(i for g in self.groups for i in g if i in _ALIAS_PHRASES))

    @property
    def label(self) -> str:
        """How a critique names it: "`super`", "`:=` / assignment expression"."""
        return " / ".join([*(f"`{n}`" for n in self.names), *self.phrases])

    @cached_property
    def forms(self) -> tuple[str, ...]:
        """Every spelling that counts as a mention (see `spellings`); worked out once per subject."""
        return tuple(dict.fromkeys(form for item in (*self.names, *self.phrases) for form in spellings(item)))

    def search_terms(self) -> list[str]:
        """What to add to a search for the subject: how the reference spells jargon ("assignment
        expression" for walrus) and the bare name of a dotted one (`gather` for `asyncio.gather`)."""
        bare = [name.rsplit(".", 1)[1] for name in self.names if "." in name and not name.endswith(".py")]
        return list(dict.fromkeys([*self.phrases, *bare]))

    def opens(self, sentence: str) -> bool:
        """Whether the sentence begins by naming the subject ('The "nonlocal" statement causes ...'):
        how a reference sentence that defines something reads."""
        return self.mentioned_in(" ".join(sentence.split()[:OPENING_WORDS]))

    def mentioned_in(self, text: str) -> bool:
        """Whether `text` speaks of any part of the subject, in one of its spellings."""
        return any(_mentions(text, form) for form in self.forms)

    def uncovered(self, texts: Sequence[str]) -> list[tuple[str, ...]]:
        """The parts of the subject no text speaks of: an answer about "the else clause of a try
        statement" needs evidence about `try`, not only about `else`."""
        return [
            group
            for group in self.groups
            if not any(_mentions(text, form) for text in texts for item in group for form in spellings(item))
        ]


def spellings(item: str) -> list[str]:
    """How the reference text may write `item`: `asyncio.gather` also as `gather`, `lru_cache` as
    "lru cache", `staticmethod` as "static method", `os.path.join` as `join`; a phrase as itself."""
    item = item.strip("`@()")
    forms = [item]
    if "." in item and not item.endswith(".py"):
        forms.append(item.rsplit(".", 1)[1])
    for form in list(forms):
        if "_" in form.strip("_") and not form.startswith("__"):
            forms.append(form.replace("_", " "))
        if form.isalpha() and form.islower() and len(form) >= 9:
            forms += [f"{form[:i]} {form[i:]}" for i in range(4, len(form) - 3)]
    return [f for f in dict.fromkeys(forms) if len(f) >= 2 or f in _OPERATORS]


def _mentions(text: str, form: str) -> bool:
    """A whole-word, case-sensitive mention for code (`super`, not "Super-mkdir"); case-insensitive for
    prose phrases with spaces. A name joined to the next word by a hyphen is an English compound; one
    continued by an underscore is a variant (`insort` is `insort_right`)."""
    if not form[:1].isalnum() and not form.startswith("_"):
        return form in text  # an operator
    return _mention_pattern(form).search(text) is not None


@cache
def _mention_pattern(form: str) -> re.Pattern[str]:
    """Compiled once per spelling: the offline model checks every sentence of every fetched page."""
    flags = re.IGNORECASE if " " in form or form.isupper() else 0
    tail = r"(?![A-Za-z0-9]|-\w)" if not form.endswith("_") else r"(?!\w)"  # insort ~ insort_right
    if " " in form:
        tail = r"(?:e?s)?(?![A-Za-z0-9])"  # a prose phrase, singular or plural
    head = r"(?<!\w)" if form.startswith("__") else r"(?<![\w.])"  # object.__new__ is __new__
    head += "".join(rf"(?<!{re.escape(word)} )" for word in _OTHER_COMPOUNDS.get(form.casefold(), ()))
    return re.compile(rf"{head}{re.escape(form)}{tail}", flags)


def _code_items(question: str) -> Iterator[str]:
    for match in _CODE.finditer(question):
        token = next(group for group in match.groups() if group)
        token = token.strip("`").strip()
        if token.endswith("()"):
            token = token[:-2]
        if token.lstrip("@*") or token in _OPERATORS:
            yield token.lstrip("@") if token.startswith("@") else token


def _word_items(question: str) -> Iterator[tuple[str, str]]:
    """(kind, item) for keywords, known names and jargon written as ordinary words."""
    words = _WORD.findall(question)
    for index, word in enumerate(words):
        following = words[index + 1].casefold() if index + 1 < len(words) else ""
        previous = words[index - 1].casefold() if index else ""
        folded = word.casefold()
        if folded in ALIASES:
            yield "phrase", folded
        elif (
            (word in _DISTINCT_KEYWORDS and (previous in _KEYWORD_LEADS or following in _MARKERS))
            or (word in _ENGLISH_KEYWORDS and following in _MARKERS)
            or (word in _known_names() and (word not in _ENGLISH_NAMES or following in {"module", "function"}))
        ):
            yield "name", word


def subject_of(question: str) -> Subject:
    """The subject of `question` (see the module docs); falsy when it names nothing in code form."""
    groups: list[tuple[str, ...]] = [(name,) for name in _code_items(question)]
    groups += [(m.group(1),) for m in _MODULE_WORD.finditer(question) if m.group(1) in _known_names()]
    for kind, item in _word_items(question):
        groups.append((item,) if kind == "name" else ALIASES[item])
    dotted = {part for group in groups for name in group if "." in name for part in name.split(".")}
    groups = [g for g in dict.fromkeys(groups) if not (len(g) == 1 and g[0] in dotted)]  # `asyncio` in asyncio.gather
    return Subject(groups=tuple(groups))
