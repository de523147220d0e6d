"""Documenting from the imported module: compiled modules (`builtins`, `math`, `sys`) have no source, and
source modules that re-export compiled code (`functools.partial`, `os.remove`) show its docstrings in `help()`.

Only modules whose import defines names and does nothing else are imported; antigravity, tkinter, turtle,
readline and the like never are (`_NEVER_IMPORTED`, `SKIPPED_MODULES`; docs/decisions/0018).
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import types
from collections.abc import Iterator
from types import ModuleType
from typing import Final

from tools._pydocs_entries import _clip, _display_name, _docstring_signature, _Entry, _Part, _qualified
from tools._pydocs_urls import SKIPPED_MODULES

_NEVER_IMPORTED: Final = frozenset(
    {
        "curses",  # terminal state
        "readline",
        "tkinter",  # GUI toolkits probe for a display
        "turtle",
        "ossaudiodev",  # audio devices; deprecated (a warning on import)
        "audioop",
        "winsound",
        "nis",  # deprecated: importing them warns
        "spwd",
        "distutils",  # setuptools' shim would replace it with its own copy
    }
)
"""Modules never imported, even to read runtime docstrings. Source modules are still read with `ast`."""


def _import(name: str) -> ModuleType | None:
    """The module, imported to read its runtime docstrings; None if it must not or cannot be.

    Only compiled modules and modules that re-export compiled code get here: their import defines names
    and nothing more. Modules with import side effects are in `_NEVER_IMPORTED` or `SKIPPED_MODULES`.
    """
    top = name.split(".", 1)[0]
    if top in _NEVER_IMPORTED or top in SKIPPED_MODULES:
        return None
    try:
        return importlib.import_module(name)
    except (ImportError, OSError):  # a platform without it, a shared library that is missing
        return None


def _with_runtime(parts: list[_Part], name: str, *, twins: frozenset[str]) -> list[_Part]:
    """`parts` with what the imported module really exposes: a source definition that compiled code
    replaces (`functools.partial`) takes the runtime docstring, and public names defined only in
    compiled code (`collections.defaultdict`, `os.remove`, `threading.Lock`) are added."""
    module = _import(name)
    if module is None:
        return parts
    display = _display_name(name)
    namespace = vars(module)
    defined = {p.qualname for p in parts if isinstance(p, _Entry) and "." not in p.qualname}
    replaced: set[str] = set()
    merged: list[_Part] = []
    for part in parts:
        if isinstance(part, _Entry):
            head, dot, _ = part.qualname.partition(".")
            if dot and head in replaced:
                continue  # a method of a class now described from its runtime type
            obj = None if dot else namespace.get(part.qualname)
            if obj is not None and _documentable(obj) and not _same_doc(_own_doc(obj), part.doc):
                merged.extend(_runtime_entries(obj, qualname=part.qualname, display=display, fallback=part.signature))
                replaced.add(part.qualname)
                continue
        merged.append(part)
    known = {id(namespace[q]) for q in defined if q in namespace}
    for attr, obj in _runtime_only(module, allowed={name, display, *twins, "builtins"}, defined=defined):
        if id(obj) not in known:
            known.add(id(obj))
            merged.extend(_runtime_entries(obj, qualname=attr, display=display))
    return merged


def _same_doc(runtime: str, source: str) -> bool:
    """Whether the runtime docstring is the source's (which may go on with its constructor's); none counts as same."""
    return not runtime or source == runtime or source.startswith(runtime + "\n\n")


def _runtime_only(module: ModuleType, *, allowed: set[str], defined: set[str]) -> Iterator[tuple[str, object]]:
    """Public routines and classes the module exposes but its source does not define: those in `__all__`,
    or without `__all__` those whose `__module__` is the module or its compiled twin. Built-ins (`os.error`
    is OSError) are documented under builtins."""
    namespace = vars(module)
    exported = namespace.get("__all__")
    names = [n for n in exported if isinstance(n, str)] if isinstance(exported, list | tuple) else list(namespace)
    for attr in names:
        obj = namespace.get(attr)
        if attr.startswith("_") or attr in defined or obj is None or not _documentable(obj) or _is_builtin(obj):
            continue
        if exported is None and getattr(obj, "__module__", None) not in allowed:
            continue
        yield attr, obj


def _runtime_module_parts(module: ModuleType, *, docstring: str) -> list[_Part]:
    """A compiled module (`builtins`, `math`, `sys`): its docstring, then its functions and classes under their
    own names (aliases such as IOError or array.ArrayType are skipped), classes with their documented members."""
    name = module.__name__
    namespace = vars(module)
    parts: list[_Part] = [docstring] if docstring else []
    seen: set[int] = set()
    for attr, value in list(namespace.items()):
        obj = namespace.get(f"__{attr}__", value)  # sys keeps the hooks a program may replace as __excepthook__
        if attr.startswith("_") or id(obj) in seen or getattr(obj, "__name__", None) != attr:
            continue
        if _compiled_member(obj, module=name):
            seen.add(id(obj))
            parts.extend(_runtime_entries(obj, qualname=attr, display=name))
    return parts


def _compiled_member(obj: object, *, module: str) -> bool:
    """A function or class the compiled `module` defines; not a built-in it also exposes (`select.error` is
    OSError), nor a Python object a program put there (pytest's `sys.unraisablehook`): the corpus must not
    depend on who builds it."""
    if not isinstance(obj, type | types.BuiltinFunctionType):
        return False
    owner = getattr(obj, "__module__", None)
    if module == "builtins":
        return owner == "builtins" or not isinstance(obj, type)
    return owner in (module, "builtins") and not _is_builtin(obj)


def _runtime_entries(obj: object, *, qualname: str, display: str, fallback: str = "") -> list[_Entry]:
    """A routine, or a class followed by its own public documented methods and attributes.

    `fallback` is the signature line the source gave the name, for when the runtime object has none.
    """
    name = _qualified(display, qualname)
    signature = _signature(obj)
    if not isinstance(obj, type):
        keyword = "async " if inspect.iscoroutinefunction(obj) else ""
        line = f"{keyword}{name}{signature}" if signature else fallback or f"{name}(...)"
        return [_Entry(qualname=qualname, signature=line, doc=_own_doc(obj))]
    line = f"class {name}{signature}" if signature else fallback or f"class {name}"
    entries = [_Entry(qualname=qualname, signature=line, doc=_own_doc(obj))]
    for member, raw in list(vars(obj).items()):
        target = raw.__func__ if isinstance(raw, classmethod | staticmethod) else raw
        doc = "" if member.startswith("_") else _own_doc(target)
        if not doc:
            continue
        if isinstance(raw, property | types.GetSetDescriptorType | types.MemberDescriptorType):
            entries.append(_Entry(qualname=f"{qualname}.{member}", signature=f"{name}.{member}", doc=doc))
        elif inspect.isroutine(target):
            line = f"{name}.{member}{_signature(target) or '(...)'}"
            entries.append(_Entry(qualname=f"{qualname}.{member}", signature=line, doc=doc))
    return entries


def _documentable(obj: object) -> bool:
    return isinstance(obj, type) or inspect.isroutine(obj)


def _is_builtin(obj: object) -> bool:
    """An object of the `builtins` module (documented there, whatever other module also exposes it)."""
    return getattr(builtins, str(getattr(obj, "__name__", "")), None) is obj


def _own_doc(obj: object) -> str:
    """The object's own docstring, cleaned as `inspect.getdoc` and `ast.get_docstring` clean it (not inherited)."""
    try:  # a class's from its namespace: a metaclass may warn on attribute access (typing.io)
        doc = vars(obj).get("__doc__") if isinstance(obj, type) else obj.__doc__
    except Exception:  # a descriptor that fails when read: no docstring to show
        return ""
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _signature(obj: object) -> str:
    """`(maxsize=128, typed=False)` from `inspect.signature`, else from a C docstring's first line
    (`zip(*iterables, strict=False) --> ...`); empty when neither has one."""
    try:
        text = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError):
        text = _docstring_signature(_own_doc(obj)) or ""
    return _clip(" ".join(text.split()))
