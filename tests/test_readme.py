"""Every Python example in the README runs as written, so an example can never drift from the code again.

Each ```python (or ```py) block is one test: it is compiled with top-level `await` allowed and executed in a
fresh namespace, in this test's event loop, against a fresh database in which the Python reference is
already indexed (as after a user's first question). The environment is a new user's: no provider key, so
`auto` is the offline model, and no `RESEARCH_AGENT_*` setting but the database and the data directory. No
snippet is special-cased: what an example needs (a model, a price) it must construct itself, and the
network guard (tests/_no_network) proves none of them leaves the machine.

What each snippet must show, judged from the database and the objects it leaves in its namespace:
- it created at least one run, and every run it created is named by an object it holds (a `ResearchResult`,
  a `RunView`, a run id), so an example never does work it does not show;
- a `ResearchResult` it holds completed with a report, and says what the run store says about that run;
- a `RunView` it holds is the stored run; no run it created failed (a submitted one stays `queued`), and
  none of its reviews failed for want of a critic that can grade.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent import telemetry
from agent.api import ResearchResult, RunView
from agent.durable.database import create_pool
from agent.durable.store import RunRecord, RunStore
from agent.report import ResearchReport
from tests._no_network.sitecustomize import refused_network
from tests._processes import ROOT

README = ROOT / "README.md"
_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
PYTHON_LANGS = frozenset({"python", "py", "python3"})
# Read from the environment by Settings() or the model providers; a new user has none of them set.
_FOREIGN_ENV = ("RESEARCH_AGENT_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "GROQ_", "MISTRAL_", "CO_API")


@dataclass(frozen=True)
class Snippet:
    number: int
    heading: str
    line: int
    code: str

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-") or "top"
        return f"snippet-{self.number}-{slug}"


def python_snippets(markdown: str) -> list[Snippet]:
    """The README's Python code blocks in order, each with the heading it sits under."""
    snippets: list[Snippet] = []
    heading = ""
    fence: str | None = None  # the opening fence of the block we are in
    lang = ""
    start = 0
    body: list[str] = []
    for number, line in enumerate(markdown.splitlines(), start=1):
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence, lang, start, body = match.group(1), match.group(2).lower(), number + 1, []
            elif heading_match := _HEADING.match(line):
                heading = heading_match.group(1)
        elif match and match.group(1).startswith(fence) and not match.group(2):
            if lang in PYTHON_LANGS:
                snippets.append(Snippet(len(snippets) + 1, heading, start, "\n".join(body) + "\n"))
            fence = None
        else:
            body.append(line)
    assert fence is None, f"README.md: the code block opened on line {start - 1} is never closed"
    return snippets


SNIPPETS = python_snippets(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_examples() -> None:
    """If extraction breaks (or the examples move), this fails instead of the snippet tests silently vanishing."""
    assert len(SNIPPETS) > 0
    opening_fences = re.findall(r"^```(?:python|py)\s*$", README.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(SNIPPETS) == len(opening_fences)
    assert all(s.code.strip() for s in SNIPPETS)
    assert len({s.id for s in SNIPPETS}) == len(SNIPPETS)


def test_extraction_keeps_order_headings_and_skips_other_languages() -> None:
    markdown = (
        "# Title\n\n```bash\n# not a heading\necho hi\n```\n\n## Using it\n\n```python\nx = 1\n```\n\n"
        "````markdown\n```python\nnot = 'a snippet'\n```\n````\n\n### More\n\n```py\ny = await f()\n```\n"
    )
    snippets = python_snippets(markdown)
    assert [(s.number, s.heading, s.line, s.code) for s in snippets] == [
        (1, "Using it", 11, "x = 1\n"),
        (2, "More", 23, "y = await f()\n"),
    ]
    assert [s.id for s in snippets] == ["snippet-1-using-it", "snippet-2-more"]


@pytest.fixture
def new_user_env(monkeypatch: pytest.MonkeyPatch, docs_database_url: str, tmp_path: Path) -> str:
    """A new user's environment pointed at this test's database; returns the database URL."""
    for name in list(os.environ):
        if name.startswith(_FOREIGN_ENV) or name in ("DATABASE_URL", "LOGFIRE_TOKEN"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RESEARCH_AGENT_DATABASE_URL", docs_database_url)
    monkeypatch.setenv("RESEARCH_AGENT_DATA_DIR", str(tmp_path / "data"))
    # `open_runtime` configures Logfire once per process ("the first call wins"); leave this test process's
    # instrumentation as the other tests expect it (tests/_cli.py does the same for in-process commands).
    monkeypatch.setattr(telemetry, "_configured", True)
    return docs_database_url


async def run_snippet(snippet: Snippet) -> dict[str, object]:
    """Execute `snippet` as a module of its own, awaiting it when it uses top-level `await`."""
    code = compile(snippet.code, f"README.md (line {snippet.line})", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, object] = {"__name__": f"readme_{snippet.number}"}
    outcome = eval(code, namespace)  # the README's own code, nothing else
    if inspect.isawaitable(outcome):
        await outcome
    return namespace


async def stored_runs(database_url: str) -> dict[str, RunRecord]:
    pool = await create_pool(database_url, max_size=2)
    try:
        return {run.id: run for run in await RunStore(pool).list_runs(limit=1_000)}
    finally:
        await pool.close()


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
async def test_readme_snippet_runs_as_written(snippet: Snippet, new_user_env: str, tmp_path: Path) -> None:
    before = await stored_runs(new_user_env)
    network_log = tmp_path / "network.log"
    with refused_network(network_log):
        namespace = await run_snippet(snippet)
    assert not network_log.exists(), network_log.read_text()

    after = await stored_runs(new_user_env)
    created = {run_id: run for run_id, run in after.items() if run_id not in before}
    assert created, "the example created no run"
    for run in created.values():
        assert run.error is None and run.status in ("completed", "queued"), (run.id, run.status, run.error)
        skipped = str((run.review or {}).get("skip_reason") or "")
        assert not skipped.startswith("critic failed"), f"the example's critic could not grade: {skipped}"

    results = [value for value in namespace.values() if isinstance(value, ResearchResult)]
    views = [value for value in namespace.values() if isinstance(value, RunView)]
    run_ids = {value for value in namespace.values() if isinstance(value, str) and value in created}
    for result in results:
        assert result.status == "completed" and result.error is None, (result.status, result.stop_reason, result.error)
        assert result.report is not None and result.report.answer.strip()
        stored = created[result.run_id]
        assert stored.status == "completed" and stored.report is not None
        assert ResearchReport.model_validate(stored.report) == result.report
        assert stored.cost_usd == result.cost_usd and stored.usage == result.usage
    for view in views:
        assert view.run.id in created and view.run.question == created[view.run.id].question
        assert view.run.status == created[view.run.id].status
    shown = {r.run_id for r in results} | {v.run.id for v in views} | run_ids
    assert shown == set(created), f"runs the example made but does not show: {set(created) - shown}"
