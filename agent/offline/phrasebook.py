"""How people ask about Python, and how the reference text says the same thing.

The reference never says "skip to the next iteration" or "one-line function"; it says `continue` and
"lambda". Lexical search cannot bridge that gap, so the offline model adds the reference's words to its
search for questions phrased the everyday way. Each entry is a pattern over the question and the
reference terms it stands for. The entries describe common Python idioms and jargon in general (the
kind of thing a Python FAQ answers); they are not written from any eval question, and the held-out
datasets measure whether they generalise (datasets/NEWCOMER.md).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["PHRASEBOOK", "reference_terms"]

_I: Final = re.IGNORECASE

PHRASEBOOK: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(pattern, _I), terms)
    for pattern, terms in (
        # control flow
        (r"\b(?:stop|exit|leave|end|get out of|jump out of|break out of)\b.{0,30}\bloop", "break statement"),
        (r"\b(?:skip|go on to the next|move on to the next|next iteration)\b", "continue statement"),
        (r"\b(?:do nothing|placeholder|empty (?:function|class|body|block)|fill in .{0,20}later)\b", "pass statement"),
        (r"\belse\b.{0,40}\b(?:for|while) loop|\b(?:for|while) loop.{0,40}\belse\b", "break else clause loop"),
        (r"\bone[- ]line (?:mini )?function|anonymous function|inline function", "lambda"),
        (r"\bternary|\binline if\b|\bone[- ]line if\b", "conditional expression"),
        (r"\bclean ?up\b.{0,40}\b(?:always|no matter|even if)|\bno matter what\b", "finally clause"),
        (r"\bre-?raise|\bchain(?:ed|ing)? exceptions?|\bexception chaining", "raise from __cause__"),
        # functions and scope
        (r"\bvariable number of (?:arguments|parameters)|\bany number of (?:arguments|parameters)", "*args **kwargs"),
        (r"\bkeyword[- ]only|\bforce .{0,40}\bby name\b|\bpass .{0,30} by (?:name|keyword)", "keyword-only"),
        (r"\bdefault (?:list|dict|argument|parameter|value)", "default parameter values"),
        (r"\bclosure|\bouter function|\benclosing function|\bnested function", "nonlocal enclosing scope"),
        (r"\bmodule[- ]level variable|\bglobal variable", "global statement"),
        (r"\bmemoi[sz]e|\bcache (?:the )?results?|\bcach(?:e|ing) (?:a )?function", "functools.lru_cache"),
        (r"\bpre-?fill|\bfreeze (?:some )?arguments|\bpartial(?:ly)? appl", "functools.partial"),
        (r"\bdecorator\b.{0,60}\b(?:name|docstring|__name__|__doc__)", "functools.wraps"),
        # classes and the data model
        (r"\bconstructor\b", "__init__ __new__"),
        (r"(?<!\w)__[a-z]+__(?!\w)(?!\.py)", "special method names"),
        (
            r"\b(?:print|show|display|repr)\b.{0,40}\b(?:my )?(?:object|instance)\b|\breadable\b.{0,20}\bobject",
            "__repr__ __str__",
        ),
        (r"\blen\(\)|\bwork with len\b|\blength of my (?:object|class)", "__len__"),
        (r"\bsquare brackets\b|\bobj\[|\bindex(?:ing)? my (?:own )?(?:object|class)", "__getitem__"),
        (
            r"\biterable\b.{0,30}\b(?:my|own|custom) class|\b(?:my|own|custom) class\b.{0,30}\biter",
            "__iter__ __next__ iterator",
        ),
        (
            r"\bwith (?:block|statement)\b.{0,40}\bclass|\bclass\b.{0,60}\bwith (?:block|statement)",
            "__enter__ __exit__ context manager",
        ),
        (r"\b(?:==|equal(?:ity)?)\b.{0,40}\b(?:my|own|custom) (?:class|objects?)|\b__eq__", "__eq__ __hash__"),
        (r"\bset\b.{0,30}\bdict(?:ionary)? key\b.{0,30}\bobject|\bhashable\b", "__hash__"),
        (
            r"\bmethod resolution order|\bMRO\b|\border .{0,30} (?:parent|base) classes",
            "__mro__ method resolution order",
        ),
        (r"\bread-?only (?:attribute|property)|\bgetter\b|\bsetter\b", "property"),
        (
            r"\b(?:stop|prevent|forbid)\b.{0,40}\bnew attributes|\bsave memory\b.{0,40}\b(?:instance|object)",
            "__slots__",
        ),
        (r"\bprivate (?:attribute|variable|method|name)", "private name mangling"),
        (r"\bimmutable\b.{0,20}\bdataclass|\bdataclass\b.{0,30}\bimmutable|\bfrozen dataclass", "dataclass frozen"),
        (r"\babstract (?:method|class|base class)", "abc.abstractmethod ABC"),
        # operators and literals
        (r"\bwalrus\b|:=", "assignment expression"),
        (r"\binteger division|\bfloor division|\bdouble slash|//", "floor division"),
        (r"\bremainder|\bmodulo|\bmod operator|\s%\s", "modulo remainder"),
        (r"\bexponent|\bto the power|\bpower of\b|\*\*", "power operator"),
        (r"\bnegative ind(?:ex|ices)|\[-1\]", "negative index end"),
        (r"\bslic(?:e|ing)\b.{0,30}\b(?:list|string)|\[::-?1\]", "slicing"),
        (r"\bis none\b|== ?none|\bidentity\b", "is operator identity"),
        (r"\b(?:falsy|truthy|truthiness)\b|\bconsidered (?:false|true)\b", "truth value testing"),
        (r"\braw string|\br(?:-| )prefix|\bin front of .{0,30}(?:regex|string)", "raw string prefix"),
        (r"\bf-?strings?\b|\bformatted string", "formatted string literal format specification"),
        (r"\bpad(?:ded)?\b.{0,20}\bzeros?|\bleading zeros?|\bdecimal places|\bdigits after", "format specification"),
        (r"\bunderscores? in (?:number|numeric|integer) literals?|\b1_000", "underscores numeric literal"),
        # built-ins and stdlib idioms
        (r"\b(?:loop|iterate)\b.{0,40}\bindex|\bindex\b.{0,40}\b(?:loop|iterate)", "enumerate"),
        (r"\b(?:loop|iterate)\b.{0,40}\b(?:two|several|multiple) lists|\bpair(?:s)? up\b|\bin parallel\b", "zip"),
        (
            r"\bcount\b.{0,40}\b(?:occurrences|how many times|frequenc)|\bmost (?:common|frequent)\b",
            "collections.Counter",
        ),
        (r"\bgroup\b.{0,30}\bby\b|\bdefault ?dict\b|\bmissing key\b.{0,30}\bdefault", "collections.defaultdict"),
        (r"\bpriority queue|\bheap\b|\bsmallest (?:item|element)\b", "heapq"),
        (r"\brandom (?:item|element|choice)|\bpick\b.{0,20}\brandom", "random.choice"),
        (r"\bshuffle", "random.shuffle"),
        (
            r"\b(?:secure|unguessable|cryptographic(?:ally)?)\b.{0,30}\b(?:token|random|password)|\breset token",
            "secrets token",
        ),
        (r"\bunique id\b|\buuid\b", "uuid.uuid4"),
        (r"\bsort\b.{0,40}\bby\b|\bsort .{0,30}\bkey\b", "sorted key function"),
        (r"\bdeep ?cop(?:y|ies)|\bnested list\b.{0,40}\bcop|\bcop(?:y|ied)\b.{0,40}\bnested", "copy.deepcopy"),
        (r"\bpretty[- ]?print|\bindent(?:ation|ed)?\b.{0,20}\bjson|\bjson\b.{0,30}\bindent", "json indent pprint"),
        (r"\bjson\b.{0,40}\b(?:accent|unicode|non-ascii|é)", "json ensure_ascii"),
        (r"\btemporary (?:file|folder|directory)|\btemp (?:file|folder|directory)", "tempfile"),
        (r"\b(?:all|every) files?\b.{0,40}\b(?:folder|directory|subfolders?|subdirector)", "os.walk Path.rglob glob"),
        (r"\bfile extension|\bsuffix of (?:a )?(?:file|path)", "pathlib suffix"),
        (r"\bcopy (?:a )?file", "shutil.copy"),
        (r"\b(?:delete|remove) (?:a )?(?:directory|folder)", "shutil.rmtree os.rmdir"),
        (r"\bjoin (?:two )?(?:file )?paths?|\bcombine paths?", "os.path.join"),
        (
            r"\bmeasure\b.{0,40}\b(?:time|long|fast)|\bhow long .{0,30}\btakes? to run"
            r"|\btime (?:a|my) (?:code|function|snippet)",
            "timeit",
        ),
        (r"\bstep through|\bdebugger\b|\bbreakpoint", "pdb debugger"),
        (r"\b(?:mock|fake|stub|swap)\b.{0,40}\b(?:function|object|method)\b.{0,30}\btests?", "unittest.mock patch"),
        (r"\b(?:run|call|execute) (?:a )?(?:shell )?command|\bsubprocess", "subprocess.run"),
        (r"\bcommand[- ]line arguments?|\bargv\b", "sys.argv argparse"),
        (r"\bexit code|\bexit status|\bexit (?:the|my|a) (?:script|program)", "sys.exit"),
        (r"\bredirect\b.{0,30}\b(?:print|stdout|output)|\bprints?\b.{0,40}\binto a file", "contextlib.redirect_stdout"),
        (
            r"\bignore (?:an |one |a specific )?exceptions?|\bsuppress(?:ing)? (?:an )?exceptions?",
            "contextlib.suppress",
        ),
        (r"\bcase[- ]insensitive|\bignore (?:upper and lower )?case", "re.IGNORECASE"),
        (
            r"\bshorten\b|\btruncate (?:a )?(?:string|text)|\bplaceholder\b.{0,20}\b(?:dots|ellipsis)",
            "textwrap.shorten",
        ),
        (r"\bremove (?:a )?prefix|\bstrip (?:a )?prefix", "str.removeprefix"),
        (r"\bsplit\b.{0,30}\bfirst\b|\bmaxsplit\b", "str.split maxsplit"),
        (
            r"\bsubstring\b|\bword (?:appears|is) (?:somewhere )?in(?:side)?\b|\bcontains? (?:a )?(?:word|substring)",
            "in operator membership",
        ),
        (r"\bbuild(?:ing)? (?:up )?(?:a )?(?:big |long )?string\b|\bconcatenat", "str.join"),
        (r"\btype hints?\b|\bannotations?\b|\bOptional\[", "typing annotations"),
        (r"\bimport \*|\bstar import|\bwildcard import", "import __all__"),
        (r"\bif __name__|__main__", "__main__ __name__"),
    )
)
"""(pattern over the question, the reference's terms for it)."""


def reference_terms(question: str) -> list[str]:
    """The reference's words for what `question` asks, by `PHRASEBOOK`, in table order, without repeats."""
    terms: list[str] = []
    for pattern, expansion in PHRASEBOOK:
        if pattern.search(question):
            terms += [t for t in expansion.split() if t not in terms]
    return terms
