"""Developer and CI sessions: `nox -s tests lint typecheck`, `nox -s bench`."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, against a real (embedded) PostgreSQL and a local HTTP server."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs, env={"LOGFIRE_IGNORE_NO_CONFIG": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[lint]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks print ratios measured side by side in one run (no pass/fail)."""
    session.install("-e", ".[test]")
    session.run("python", "bench/step_overhead.py", *session.posargs, env={"LOGFIRE_IGNORE_NO_CONFIG": "1"})


@nox.session
def evals(session: nox.Session) -> None:
    """The eval gate: offline model by default; exit 1 on a regression (`-- --bless` accepts new scores)."""
    session.install("-e", ".")
    session.run("python", "-m", "evals", *session.posargs, env={"LOGFIRE_IGNORE_NO_CONFIG": "1"})
