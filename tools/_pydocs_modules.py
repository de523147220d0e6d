"""Which standard-library modules the python-docs corpus documents, and from where: a Python source file
(located, never imported) or, for a compiled module, the imported module (`tools._pydocs_runtime`).
"""

from __future__ import annotations

import functools
import importlib.machinery
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools._pydocs_urls import SKIPPED_MODULES, SUBMODULE_PAGES


@dataclass(frozen=True)
class _Source:
    """A module to document: from its Python source at `path`, or (None) from the imported module."""

    name: str
    path: Path | None


def _module_sources() -> list[_Source]:
    """Modules with Python source (and their submodules that have a page), then the compiled ones."""
    python = [
        _Source(name, source)
        for module, path, is_package in _stdlib_sources()
        for name, source in [(module, path), *_own_page_submodules(module, path, is_package)]
    ]
    return [*python, *(_Source(name, None) for name in _compiled_modules({s.name for s in python}))]


def _stdlib_dirs() -> list[str]:
    return sorted({p for p in (sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")) if p})


def _stdlib_sources() -> Iterator[tuple[str, Path, bool]]:
    """`(module, source file, is_package)` for public top-level stdlib modules that have Python source.

    `PathFinder.find_spec` (what `importlib.util.find_spec` ends in for a top-level name) only locates:
    nothing is executed. Asking it directly, restricted to the stdlib directories, also skips meta-path
    hooks (setuptools' distutils shim imports code inside `find_spec`) and third-party modules that
    shadow a stdlib name. Frozen modules (os, io, site…) are found as their source files here.
    """
    stdlib_dirs = _stdlib_dirs()
    for name in _public_stdlib_names():
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, stdlib_dirs)
        except (ImportError, ValueError, OSError):
            continue
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        yield name, Path(spec.origin), spec.submodule_search_locations is not None


def _public_stdlib_names() -> list[str]:
    names = (n for n in sys.stdlib_module_names if not n.startswith("_") or n == "__future__")
    return sorted(n for n in names if n not in SKIPPED_MODULES)


@functools.cache
def _extension_modules() -> frozenset[str]:
    """Compiled stdlib modules: built into the interpreter, or shared libraries in lib-dynload."""
    found = set(sys.builtin_module_names)
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for directory in {Path(d, "lib-dynload") for d in _stdlib_dirs()}:
        try:
            files = list(directory.iterdir())
        except OSError:
            continue
        found.update(f.name.split(".", 1)[0] for f in files if f.name.endswith(suffixes))
    return frozenset(found)


def _compiled_modules(with_source: set[str]) -> list[str]:
    """Public, documented stdlib modules with no Python source (`builtins`, `sys`, `math`, `itertools`...)."""
    compiled = _extension_modules()
    names = [n for n in _public_stdlib_names() if n in compiled and n not in with_source]
    return sorted(names, key=lambda n: (n != "builtins", n))


def _own_page_submodules(package: str, path: Path, is_package: bool) -> Iterator[tuple[str, Path]]:
    """Submodules of `package` with their own library page, located on disk without importing."""
    if not is_package:
        return
    for name in sorted(SUBMODULE_PAGES):
        if not name.startswith(package + "."):
            continue
        parts = name.split(".")[1:]
        base = path.parent.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                yield name, candidate
                break
