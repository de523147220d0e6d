"""How long the README's `pip install .` takes, and whether pip's resolver backtracks (issue 11).

Creates a fresh venv in a temp dir with the interpreter running this script, times `pip install <checkout>`
there exactly as a new user would run it (same pip configuration and index; nothing pre-installed), and
counts the resolver's backtracking notices: "INFO: pip is looking at multiple versions of X", "... is still
looking ..." and "This is taking longer than usual". Any such line means some requirement's newest
candidate was rejected; with the OpenTelemetry family pinned together in pyproject.toml the count is 0.

By default one untimed install into a throwaway venv comes first, so the timed one runs with a warm pip
cache (`--warmup 0` skips it). Where the index sends no caching headers, pip's HTTP cache stays empty and
"warm" changes little. `--pip bundled` (default) keeps the pip that `python -m venv` ships; `--pip latest`
or `--pip 'pip==26.3'` upgrades it first (untimed). After the install, `research-agent --help` and
`import agent, tools, budgets, evals` must work in the venv.

Prints the result; exits non-zero only when the install or that smoke check fails (no time limit asserted).

    python3 bench/install_time.py [--runs 1] [--warmup 1] [--pip bundled|latest|SPEC] [--log pip.log] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# pip's PipReporter prints these on the 1st, 8th and 13th rejected candidate of one package.
BACKTRACK = re.compile(
    r"INFO: (?:pip is (?:still )?looking at multiple versions of (?P<pkg>\S+)|This is taking longer than usual)"
)
TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3}) ")


@dataclass
class Result:
    seconds: float
    cpu_seconds: float  # user + sys of pip and its children (less sensitive to machine load than wall time)
    resolve_seconds: float | None  # start -> pip starts installing our wheel's dependency set
    install_seconds: float | None  # unpacking + byte-compiling the resolved set
    pip_version: str
    returncode: int
    backtrack_lines: int
    taking_longer_lines: int
    backtracked_packages: list[str] = field(default_factory=list)
    collected: int = 0  # "Collecting ..." lines: one per candidate whose metadata pip fetched
    installed: int = 0
    smoke_ok: bool | None = None


def run(cmd: list[str], cwd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, check=False, cwd=cwd, env=env)


def make_venv(where: Path, pip_spec: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    python = where / "bin" / "python"
    if pip_spec != "bundled":
        spec = "pip" if pip_spec == "latest" else pip_spec
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", spec], check=True)
    return python


def pip_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.pop("VIRTUAL_ENV", None)
    return env


def phases(log: Path) -> tuple[float | None, float | None]:
    """Split pip's timestamped --log at its last "Installing collected packages" (the first ones are the
    build backend's own isolated environment)."""
    stamps: list[datetime] = []
    split: datetime | None = None
    for line in log.read_text(errors="replace").splitlines():
        m = TIMESTAMP.match(line)
        if not m:
            continue
        stamp = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S,%f")
        stamps.append(stamp)
        if "Installing collected packages:" in line:
            split = stamp
    if not stamps or split is None:
        return None, None
    return (split - stamps[0]).total_seconds(), (stamps[-1] - split).total_seconds()


def install_once(project: Path, pip_spec: str, keep_log: Path | None) -> Result:
    with tempfile.TemporaryDirectory(prefix="install-time-") as tmp:
        python = make_venv(Path(tmp) / "venv", pip_spec)
        pip_version = run([str(python), "-m", "pip", "--version"], cwd=tmp).stdout.split()[1]
        log = Path(tmp) / "pip.log"
        cmd = [str(python), "-m", "pip", "install", "--log", str(log), str(project)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = run(cmd, env=pip_env(), cwd=tmp)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        output = proc.stdout + proc.stderr
        if keep_log is not None:
            keep_log.write_text(output)
        hits = [m for m in map(BACKTRACK.search, output.splitlines()) if m]
        packages = sorted({m.group("pkg") for m in hits if m.group("pkg")})
        installed = re.search(r"^Successfully installed (.*)$", proc.stdout, re.MULTILINE)
        resolve_s, install_s = phases(log) if log.exists() else (None, None)
        result = Result(
            seconds=round(seconds, 1),
            cpu_seconds=round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
            resolve_seconds=None if resolve_s is None else round(resolve_s, 1),
            install_seconds=None if install_s is None else round(install_s, 1),
            pip_version=pip_version,
            returncode=proc.returncode,
            backtrack_lines=len(hits),
            taking_longer_lines=sum(1 for m in hits if not m.group("pkg")),
            backtracked_packages=packages,
            collected=len(re.findall(r"^Collecting ", output, re.MULTILINE)),
            installed=len(installed.group(1).split()) if installed else 0,
        )
        if proc.returncode != 0:
            sys.stderr.write(output[-4000:])
            return result
        help_ok = run([str(python.parent / "research-agent"), "--help"], cwd=tmp).returncode == 0
        import_ok = run([str(python), "-c", "import agent, tools, budgets, evals"], cwd=tmp).returncode == 0
        result.smoke_ok = help_ok and import_ok
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=ROOT, help="checkout to install (default: this one)")
    parser.add_argument("--runs", type=int, default=1, help="timed installs, each into a new venv")
    parser.add_argument("--warmup", type=int, default=1, help="untimed installs first, to warm pip's cache")
    parser.add_argument("--pip", default="bundled", help="bundled (venv's own pip), latest, or a spec")
    parser.add_argument("--log", type=Path, help="write the last timed run's pip output here")
    parser.add_argument("--json", action="store_true", help="print one JSON object per timed run")
    args = parser.parse_args()

    for i in range(args.warmup):
        print(f"warm-up {i + 1}/{args.warmup} (untimed) ...", file=sys.stderr, flush=True)
        warm = install_once(args.project, args.pip, None)
        if warm.returncode != 0:
            print(f"warm-up install failed (pip exit {warm.returncode})", file=sys.stderr)
            return 1
    failed = False
    for i in range(args.runs):
        load = os.getloadavg()[0]
        result = install_once(args.project, args.pip, args.log)
        failed |= result.returncode != 0 or result.smoke_ok is False
        if args.json:
            print(json.dumps({"run": i + 1, "load_avg_1m": round(load, 2), **asdict(result)}))
            continue
        print(
            f"run {i + 1}: pip install . (pip {result.pip_version}, Python {sys.version.split()[0]}) "
            f"exit {result.returncode}: {result.seconds:.1f} s wall, {result.cpu_seconds:.1f} s CPU "
            f"[resolve+download+build {result.resolve_seconds} s, install {result.install_seconds} s]; "
            f"load avg {load:.1f} on {os.cpu_count()} cores"
        )
        print(
            f"  {result.installed} packages installed, {result.collected} candidates collected; "
            f"backtracking lines: {result.backtrack_lines} "
            f"(taking-longer: {result.taking_longer_lines}"
            + (f"; packages: {', '.join(result.backtracked_packages)}" if result.backtracked_packages else "")
            + f"); research-agent --help + imports: {'ok' if result.smoke_ok else 'FAILED'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
