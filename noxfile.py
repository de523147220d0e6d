"""Developer and CI sessions: `nox -s tests lint typecheck`, `nox -s bench`."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


# One pytest-xdist worker per core (at most 4), each with its own embedded PostgreSQL; a test file stays on
# one worker, so module fixtures (an eval baseline, a fetch server) are built once. Then the 15 slowest tests.
# Arguments after `--` come last and win: `nox -s tests -- -n 0 tests/test_cli.py`.
TEST_ARGS = ("--numprocesses=auto", "--maxprocesses=4", "--dist=loadfile", "--durations=15")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, against a real (embedded) PostgreSQL and a local HTTP server."""
    session.install("-e", ".[test]")
    compile_bytecode(session)
    session.run("pytest", *TEST_ARGS, *session.posargs, env={"LOGFIRE_IGNORE_NO_CONFIG": "1"})


def compile_bytecode(session: nox.Session) -> None:
    """Compile the installed packages and ours once, so no process compiles them again.

    Where PYTHONDONTWRITEBYTECODE=1 is set (as on our machines) and the installer did not compile (uv does
    not by default), nothing caches compiled modules: every worker process a test starts, and every xdist
    worker, would compile the whole stack from source again (seconds each). Up-to-date files are skipped.
    """
    purelib = session.run("python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", silent=True)
    assert isinstance(purelib, str)
    session.run(
        "python",
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        purelib.strip(),
        "agent",
        "tools",
        "budgets",
        "evals",
        "tests",
        silent=True,
    )


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
    session.run("python", "bench/cli_startup.py", env={"LOGFIRE_IGNORE_NO_CONFIG": "1"})


@nox.session
def evals(session: nox.Session) -> None:
    """The eval gate: offline model by default; exit 1 on a regression (`-- --bless` accepts new scores).
    Without arguments it also checks the offline critic against both labelled judgement sets."""
    session.install("-e", ".")
    env = {"LOGFIRE_IGNORE_NO_CONFIG": "1"}
    session.run("python", "-m", "evals", *session.posargs, env=env)
    if not session.posargs:  # the default gate also holds the offline critic to its agreement targets
        for judgements in ("datasets/judgements.yaml", "datasets/judgements_unseen.yaml"):
            session.run("python", "-m", "evals", "judges", "--judgements", judgements, env=env)
