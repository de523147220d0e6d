"""The package layout holds: public seams between packages, one-way dependencies, no giant classes.

Every `.py` file under `agent/`, `tools/`, `budgets/` and `evals/` is parsed (never imported) and its
imports are checked:

- a module never imports a private module (a dotted component starting with `_`, dunders aside) or a
  private name of ANOTHER of these packages: `from tools._policy import X`, `from tools import _x` and
  `tools._policy.X` are refused; inside its own package a module may use private modules freely;
- `tools/` and `budgets/` import nothing from `agent/` or `evals/` (they receive what they need);
- `evals/` uses only public names of `agent/` (a special case of the first rule, reported on its own).

And no class in those packages is longer than `MAX_CLASS_LINES` lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "tools", "budgets", "evals")
LOWER_LAYERS = {"tools": ("agent", "evals"), "budgets": ("agent", "evals")}
"""Package -> the packages it must not import at all."""
MAX_CLASS_LINES = 250


@dataclass(frozen=True)
class Import:
    """One import in a module: `target` is the dotted module imported (from), `names` what was taken from it."""

    line: int
    target: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the project root, for messages
    module: str
    is_package: bool
    source: str


def is_private(part: str) -> bool:
    """`_x` is private; dunders (`__init__`, `__future__`, `__version__`) are not."""
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _absolute(node: ast.ImportFrom, module: str, *, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, node.module] if node.module else base)


def imports(tree: ast.AST, module: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import anywhere in the module (top level, functions, `TYPE_CHECKING` blocks), made absolute,
    plus `alias._private` attribute reads through a module bound by `import pkg.mod [as alias]`."""
    bound: dict[str, str] = {}  # local name -> module it refers to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name)
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, is_package=is_package)
            yield Import(node.lineno, target, tuple(alias.name for alias in node.names))
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:  # the outermost of a chain only
            chain: list[str] = []
            value: ast.expr = node
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound and any(is_private(part) for part in chain):
                yield Import(node.lineno, ".".join([bound[value.id], *reversed(chain)]))


def _package(dotted: str) -> str:
    return dotted.split(".")[0]


def import_violations(file: SourceFile) -> list[str]:
    """What `file` imports that breaks the layout rules, one message each."""
    tree = ast.parse(file.source, filename=file.path)
    own = _package(file.module)
    found: list[str] = []
    for imp in imports(tree, file.module, is_package=file.is_package):
        other = _package(imp.target)
        if other not in PACKAGES or other == own:
            continue
        where = f"{file.path}:{imp.line}"
        if other in LOWER_LAYERS.get(own, ()):
            found.append(f"{where}: {own}/ must not import {other}/ ({imp.target})")
            continue
        private_parts = [part for part in imp.target.split(".")[1:] if is_private(part)]
        private_names = [name for name in imp.names if is_private(name)]
        if private_parts:
            found.append(f"{where}: imports private {imp.target} of {other}/; import it from `{other}` instead")
        elif private_names:
            found.append(f"{where}: imports private name(s) {', '.join(private_names)} from {imp.target}")
    return sorted(set(found))


def long_classes(file: SourceFile, max_lines: int = MAX_CLASS_LINES) -> list[str]:
    tree = ast.parse(file.source, filename=file.path)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            length = node.end_lineno - node.lineno + 1
            if length > max_lines:
                found.append(f"{file.path}:{node.lineno}: class {node.name} is {length} lines (max {max_lines})")
    return found


def project_files() -> list[SourceFile]:
    files: list[SourceFile] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "__pycache__" in relative.parts:
                continue
            parts = list(relative.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            files.append(
                SourceFile(
                    path=relative.as_posix(),
                    module=".".join(parts),
                    is_package=is_package,
                    source=path.read_text(encoding="utf-8"),
                )
            )
    return files


def _report(title: str, offenders: list[str]) -> str:
    return f"{title} ({len(offenders)}):\n  " + "\n  ".join(offenders)


# --- the project ----------------------------------------------------------------------------------


def test_the_scan_sees_every_package() -> None:
    modules = {file.module for file in project_files()}
    assert set(PACKAGES) <= modules, "each package must have an __init__.py"
    assert {"agent.errors", "tools.errors", "budgets._guard", "evals._suite"} <= modules


def test_no_cross_package_private_imports() -> None:
    offenders = [v for file in project_files() for v in import_violations(file) if "must not import" not in v]
    assert not offenders, _report("cross-package imports of private modules or names", offenders)


def test_tools_and_budgets_import_nothing_from_agent_or_evals() -> None:
    offenders = [v for file in project_files() for v in import_violations(file) if "must not import" in v]
    assert not offenders, _report("tools/ and budgets/ must not depend on agent/ or evals/", offenders)


def test_evals_uses_only_public_names_of_agent() -> None:
    offenders = [
        v
        for file in project_files()
        if file.module.startswith("evals")
        for v in import_violations(file)
        if " of agent/" in v or " from agent" in v
    ]
    assert not offenders, _report("evals/ reaches into private parts of agent/", offenders)


def test_no_class_is_longer_than_the_limit() -> None:
    offenders = [v for file in project_files() for v in long_classes(file)]
    assert not offenders, _report(f"classes longer than {MAX_CLASS_LINES} lines; split them", offenders)


# --- the checker itself can fail ------------------------------------------------------------------


def _file(source: str, module: str = "agent.sample", *, is_package: bool = False) -> SourceFile:
    return SourceFile(path=module.replace(".", "/") + ".py", module=module, is_package=is_package, source=source)


@pytest.mark.parametrize(
    "source",
    [
        "from tools._policy import ToolPolicy",
        "import tools._policy",
        "import tools._policy as policy",
        "from tools import _policy",
        "from budgets._loops import call_key",
        "def late():\n    from tools._fetch_tool import CORPUS_SCHEME\n    return CORPUS_SCHEME",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from budgets._guard import BudgetGuard",
        "import tools\nx = tools._policy.REDACTED",
    ],
)
def test_a_private_cross_package_import_is_reported(source: str) -> None:
    (violation,) = import_violations(_file(source))
    assert violation.startswith("agent/sample.py:") and "private" in violation


@pytest.mark.parametrize(
    "source",
    [
        "from tools import ToolPolicy, redact_args",
        "from tools.errors import ResearchAgentError",
        "import tools",
        "from agent._internal import helper",  # its own package
        "from ._internal import helper",
        "from __future__ import annotations",
        "from pydantic_ai._ssrf import x",  # not one of our packages
        "from tools import __version__",
    ],
)
def test_public_or_same_package_imports_pass(source: str) -> None:
    assert import_violations(_file(source)) == []


def test_lower_layers_may_not_import_agent_or_evals() -> None:
    for source in ("from agent import research", "import agent.errors", "from evals import run_suite"):
        (violation,) = import_violations(_file(source, "tools.sample"))
        assert "tools/ must not import" in violation
    assert import_violations(_file("from tools import ToolPolicy", "budgets.sample")) == []


def test_evals_reaching_into_private_agent_modules_is_reported() -> None:
    (violation,) = import_violations(_file("from agent.durable._lease import Lease", "evals.sample"))
    assert "private agent.durable._lease of agent/" in violation
    (violation,) = import_violations(_file("from agent.offline import _rules", "evals.sample"))
    assert "private name(s) _rules from agent.offline" in violation


def test_relative_imports_are_resolved_against_the_module() -> None:
    assert import_violations(_file("from .._private import x", "agent.durable.runner")) == []
    assert import_violations(_file("from . import _x", "agent.durable", is_package=True)) == []


def test_a_long_class_is_reported() -> None:
    body = "\n".join(f"    a{i} = {i}" for i in range(MAX_CLASS_LINES))
    (violation,) = long_classes(_file(f"class Big:\n{body}\n"))
    assert f"class Big is {MAX_CLASS_LINES + 1} lines" in violation
    assert long_classes(_file("class Small:\n    pass\n")) == []
