"""Documenting a standard-library module from its Python source, parsed with `ast`.

A package folds in its submodules that have no page of their own. Only a module that re-exports compiled
code is then imported, for the docstrings `help()` shows (`tools._pydocs_runtime._with_runtime`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final, TypeGuard

from tools._pydocs_entries import _clip, _display_name, _Entry, _Part, _qualified
from tools._pydocs_modules import _extension_modules, _stdlib_dirs
from tools._pydocs_runtime import _with_runtime
from tools._pydocs_urls import SUBMODULE_PAGES

_IMPLEMENTED_IN: Final[dict[str, str]] = {
    "decimal": "_pydecimal.py",  # decimal.py only re-exports _decimal (C) or this pure-Python twin
    "collections.abc": "_collections_abc.py",
}
"""Modules whose documented API lives in a private file at the top of the stdlib directory."""


def _module_parts(name: str, source: Path, *, fold_children: bool) -> tuple[str, list[_Part]]:
    """The module docstring and its parts: public functions and classes, with documented methods.

    A package also folds in its submodules that have no page of their own: a public one's names are
    the package's when it re-exports them (`asyncio.gather`, defined in asyncio.tasks), else qualified
    by the submodule (`importlib#util.find_spec`); a private one contributes only what is re-exported
    (`tomllib.loads` from tomllib._parser). A module that re-exports compiled code is then imported
    so those names carry the docstrings `help()` shows (`_with_runtime`).
    """
    tree = ast.parse(source.read_bytes(), filename=str(source))
    trees = [tree]
    docstring = ast.get_docstring(tree) or ""
    described = tree
    implementation = _implementation_file(name)
    if implementation is not None:
        described = ast.parse(implementation.read_bytes(), filename=str(implementation))
        trees.append(described)
        docstring = docstring or ast.get_docstring(described) or ""
    display = _display_name(name)
    seen: set[str] = set()
    parts: list[_Part] = [docstring] if docstring else []
    parts.extend(_describe(described, display=display, place=lambda n: n, seen=seen))
    if fold_children:
        child_parts, child_trees = _fold_children(name, source.parent, tree, seen, package_doc=bool(docstring))
        parts.extend(child_parts)
        trees.extend(child_trees)
    twins = _compiled_imports(trees)
    if twins and not _warns_on_import(tree):
        parts = _with_runtime(parts, name, twins=twins)
    return docstring, parts


def _implementation_file(name: str) -> Path | None:
    file_name = _IMPLEMENTED_IN.get(name)
    if file_name is None:
        return None
    return next((Path(d, file_name) for d in _stdlib_dirs() if Path(d, file_name).is_file()), None)


def _fold_children(
    package: str, directory: Path, init: ast.Module, seen: set[str], *, package_doc: bool
) -> tuple[list[_Part], list[ast.Module]]:
    """Parts from the package's submodules without a page of their own, public ones first; their trees."""
    exports = _reexports(package, init)
    display = _display_name(package)
    parts: list[_Part] = []
    trees: list[ast.Module] = []
    children = list(_folded_children(package, directory))
    for private in (False, True):
        for child_name, child in children:
            short = child_name.rsplit(".", 1)[-1]
            if short.startswith("_") != private:
                continue
            try:
                tree = ast.parse(child.read_bytes(), filename=str(child))
            except (OSError, SyntaxError, ValueError):
                continue
            trees.append(tree)
            doc = ast.get_docstring(tree) or ""
            if doc and not private:
                parts.append(f"{child_name}: {doc}")
            elif doc and not package_doc and short in exports:
                parts.append(doc)
            place = _child_place(short, _exported_names(exports.get(short), tree), private=private)
            parts.extend(_describe(tree, display=display, place=place, seen=seen))
    return parts, trees


def _folded_children(package: str, directory: Path) -> Iterator[tuple[str, Path]]:
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        stem = entry.stem if entry.suffix == ".py" else entry.name
        if stem.startswith("__") or stem in ("test", "tests", "idle_test") or f"{package}.{stem}" in SUBMODULE_PAGES:
            continue
        if entry.suffix == ".py" and entry.is_file():
            yield f"{package}.{stem}", entry
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            yield f"{package}.{stem}", entry / "__init__.py"


_STAR: Final = "*"


def _reexports(package: str, init: ast.Module) -> dict[str, frozenset[str] | str]:
    """What a package's `__init__` imports from each submodule: the names, or `_STAR` for `import *`."""
    found: dict[str, frozenset[str] | str] = {}
    for node in _top_level(init.body):
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.level == 1:
            child = node.module
        elif node.level == 0 and node.module.startswith(package + "."):
            child = node.module.removeprefix(package + ".")
        else:
            continue
        child = child.split(".", 1)[0]
        names = {a.name for a in node.names if a.asname in (None, a.name)}
        previous = found.get(child, frozenset())
        if _STAR in names or previous == _STAR:
            found[child] = _STAR
        else:
            found[child] = frozenset(previous) | names
    return found


def _exported_names(export: frozenset[str] | str | None, tree: ast.Module) -> frozenset[str] | None:
    """The names a package takes from a submodule; None for all its public names (`import *` without `__all__`)."""
    if export is None:
        return frozenset()
    if export != _STAR:
        return frozenset(export)
    for node in _top_level(tree.body):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            return frozenset(v for v in value if isinstance(v, str)) if isinstance(value, list | tuple) else None
    return None


def _child_place(short: str, exported: frozenset[str] | None, *, private: bool) -> Callable[[str], str | None]:
    """Where a submodule's name is documented: the package's own name if re-exported, else under the submodule."""

    def place(name: str) -> str | None:
        if exported is None or name in exported:
            return name
        return None if private else f"{short}.{name}"

    return place


def _describe(
    tree: ast.Module, *, display: str, place: Callable[[str], str | None], seen: set[str]
) -> Iterator[_Entry]:
    """Public top-level functions and classes (with their documented methods) as entries.

    `place` gives each name's fragment, or None when it is not this module's to document; `seen` holds
    the fragments already taken (a platform-specific second definition is skipped).
    """
    for node in _top_level(tree.body):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) or node.name.startswith("_"):
            continue
        qualname = place(node.name)
        if qualname is None or qualname in seen:
            continue
        seen.add(qualname)
        if isinstance(node, ast.ClassDef):
            yield from _class_entries(node, qualname=qualname, display=display, seen=seen)
        else:
            yield _function_entry(node, qualname=qualname, display=display)


def _class_entries(node: ast.ClassDef, *, qualname: str, display: str, seen: set[str]) -> Iterator[_Entry]:
    """The class, its constructor's docstring included (Sphinx documents `__init__` with its class), then its
    documented public methods."""
    bases = ", ".join(ast.unparse(b) for b in [*node.bases, *node.keywords])
    signature = f"class {_qualified(display, qualname)}" + (f"({_clip(bases)})" if bases else "")
    parts = [ast.get_docstring(node) or ""]
    init = next((m for m in node.body if isinstance(m, ast.FunctionDef) and m.name == "__init__"), None)
    if init is not None and ast.get_docstring(init):
        constructor = _function_entry(init, qualname=f"{qualname}.__init__", display=display)
        parts.append(f"{constructor.signature}: {constructor.doc}")
    yield _Entry(qualname=qualname, signature=signature, doc="\n\n".join(p for p in parts if p))
    for member in node.body:
        if _documented_method(member) and f"{qualname}.{member.name}" not in seen:
            seen.add(f"{qualname}.{member.name}")
            yield _function_entry(member, qualname=f"{qualname}.{member.name}", display=display)


def _documented_method(node: ast.stmt) -> TypeGuard[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Public methods with a docstring; undocumented ones would only add noise."""
    return (
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and not node.name.startswith("_")
        and ast.get_docstring(node) is not None
    )


def _function_entry(node: ast.FunctionDef | ast.AsyncFunctionDef, *, qualname: str, display: str) -> _Entry:
    """`functools.lru_cache(maxsize=128, typed=False)`; a property is written as an attribute."""
    keyword = "async " if isinstance(node, ast.AsyncFunctionDef) else ""
    name = _qualified(display, qualname)
    is_property = any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)
    signature = name if is_property else f"{keyword}{name}({_clip(ast.unparse(node.args))})"
    return _Entry(qualname=qualname, signature=signature, doc=ast.get_docstring(node) or "")


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements at module level, including those under `if`/`try` (platform-specific definitions)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            yield from _top_level(node.body)
            for handler in node.handlers:
                yield from _top_level(handler.body)
            yield from _top_level(node.orelse)
        else:
            yield node


def _compiled_imports(trees: Sequence[ast.Module]) -> frozenset[str]:
    """The compiled twins these modules import at top level (`_functools`, `_collections`, `posix`)."""
    compiled = _extension_modules()
    found: set[str] = set()
    for tree in trees:
        for node in _top_level(tree.body):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.update(n for n in names if n in compiled and (n.startswith("_") or n in ("posix", "nt")))
    return frozenset(found)


def _warns_on_import(tree: ast.Module) -> bool:
    """A module whose top level calls `warnings.warn` (deprecated modules: imp, crypt): never imported."""
    for node in _top_level(tree.body):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("warn", "_deprecated"):
                return True
    return False
