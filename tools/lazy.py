"""Lazy public names for a package's `__init__` (PEP 562), so importing the package imports nothing heavy.

`research-agent --help` must not load pydantic-ai, provider SDKs or logfire (docs/decisions/0016): each
package lists where its public names live, and a name's module is imported on its first use only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    modules: Mapping[str, tuple[str, ...]], namespace: dict[str, Any]
) -> tuple[dict[str, str], Callable[[str], object], Callable[[], list[str]]]:
    """`(exports, __getattr__, __dir__)` for the package whose globals are `namespace`.

    `modules` maps each module to the public names it defines; `exports` is the inverse (name -> module).
    A name once loaded is bound in `namespace`, so later reads are plain attribute reads.
    """
    exports = {name: module for module, names in modules.items() for name in names}
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace["__all__"]})

    return exports, __getattr__, __dir__
