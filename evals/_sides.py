"""The two sides of an A/B eval: what each ran, and how a round of it is run.

A side is the code, model and prompts under test. `InProcessSide` runs this checkout's agent with a model
(`--against-model`, and scripted models in tests); `CheckoutSide` runs another revision's own
`python -m evals` in a git worktree, so the base side is judged by exactly the code it shipped with, and
reads its per-case scores from the `eval-report.json` it writes. A round is one run of every case of every
dataset; the A/B driver runs the two sides' rounds at the same time, round after round (`evals._ab`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from pydantic_evals.evaluators import Evaluator

from agent.models import ModelSpec, model_label
from agent.prompts import research_prompt
from agent.settings import is_offline_model
from evals._cost import CostCap
from evals._datasets import ResearchDataset, dataset_version
from evals._gate import git_revision
from evals._suite import CaseResult, UsageError, evaluate_dataset, parse_prompt_versions, prompt_versions
from evals._task import EvalEnvironment, open_environment
from evals._types import CaseMetadata, EvalInputs, EvalOutput

__all__ = ["CheckoutSide", "InProcessSide", "Side", "SideCase", "SideInfo"]


@dataclass(kw_only=True)
class SideCase:
    """One case on one side, over the rounds run so far."""

    name: str
    question: str
    answers: list[str] = field(default_factory=list)
    answered: list[bool] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    not_run: int = 0

    def extend(self, other: SideCase) -> None:
        self.answers += other.answers
        self.answered += other.answered
        for name, values in other.scores.items():
            self.scores.setdefault(name, []).extend(values)
            self.reasons.setdefault(name, []).extend(other.reasons.get(name, []))
        self.errors += other.errors
        self.not_run += other.not_run

    @classmethod
    def of(cls, case: CaseResult) -> SideCase:
        return cls(
            name=case.name,
            question=case.inputs.question,
            answers=[out.answer for out in case.outputs],
            answered=[out.answered for out in case.outputs],
            scores={name: list(values) for name, values in case.scores.items()},
            reasons={name: list(values) for name, values in case.reasons.items()},
            errors=list(case.errors),
            not_run=case.not_run,
        )


Round = dict[str, dict[str, SideCase]]
"""dataset name → case name → what one round scored."""


@dataclass(kw_only=True)
class SideInfo:
    """What a side is: reported next to the scores, so a reader knows what was compared with what."""

    label: str
    model: str
    revision: str | None
    prompt_version: str = "?"
    """The research prompt's version, as runs record it."""
    prompt_versions: dict[str, str] = field(default_factory=dict)
    """name → `name@hash` of every prompt a run reads (`evals._suite.prompt_versions`), from the side's code."""
    judge_version: str = "?"
    dataset_versions: dict[str, str] = field(default_factory=dict)
    spent_usd: float = 0.0

    @property
    def versions(self) -> dict[str, str]:
        """Every prompt's version when the side recorded them, else its research prompt's alone."""
        return self.prompt_versions or parse_prompt_versions(self.prompt_version)

    @property
    def reads_prompt(self) -> bool:
        """The offline model never reads a prompt (research, critic, revise), so a prompt change cannot move
        its scores."""
        return not is_offline_model(self.model)


class Side(Protocol):
    info: SideInfo

    async def run_round(self) -> Round: ...

    async def aclose(self) -> None: ...


# --- this checkout, any model ---------------------------------------------------------------------------


class InProcessSide:
    """This checkout's agent with `model`, on a fresh database of its own kept for all rounds."""

    def __init__(
        self,
        *,
        label: str,
        model: ModelSpec,
        datasets: Sequence[tuple[Path, ResearchDataset]],
        critic: Evaluator[EvalInputs, EvalOutput, CaseMetadata],
        judge_version: str,
        max_concurrency: int,
        cap: CostCap | None,
        server_url: str | None,
    ) -> None:
        self.info = SideInfo(
            label=label,
            model=model_label(model),
            revision=git_revision(Path(__file__).resolve().parent.parent),
            prompt_version=research_prompt().version,
            prompt_versions=prompt_versions(),
            judge_version=judge_version,
            dataset_versions={dataset.name: dataset_version(path) for path, dataset in datasets},
        )
        self._model = model
        self._datasets = datasets
        self._critic = critic
        self._max_concurrency = max_concurrency
        self._cap = cap
        self._server_url = server_url
        self._stack = AsyncExitStack()
        self._env: EvalEnvironment | None = None

    async def run_round(self) -> Round:
        if self._env is None:
            self._env = await self._stack.enter_async_context(
                open_environment(self._model, server_url=self._server_url)
            )
        scored: Round = {}
        for _, dataset in self._datasets:
            cases = await evaluate_dataset(
                dataset,
                self._env,
                critic=self._critic,
                label=f"{self.info.label}: {self.info.model}",
                max_concurrency=self._max_concurrency,
                cap=self._cap,
            )
            scored[dataset.name] = {case.name: SideCase.of(case) for case in cases}
        if self._cap is not None:
            self.info.spent_usd = float(self._cap.spent)
        return scored

    async def aclose(self) -> None:
        await self._stack.aclose()


# --- another revision, in a git worktree -----------------------------------------------------------------


class CheckoutSide:
    """Another revision's own `python -m evals`, one subprocess per round, in `checkout`.

    It runs with this interpreter (the same installed dependencies) and the checkout first on the path,
    against an empty baseline directory (no gate of its own: we only read its per-case scores).
    """

    def __init__(
        self,
        *,
        label: str,
        checkout: Path,
        revision: str,
        model: str,
        dataset_paths: Sequence[Path],
        judge_model: str | None,
        max_concurrency: int,
        max_cost: Decimal | None,
        server_url: str | None = None,
    ) -> None:
        # Read from its files, not its report: a revision older than the report's `prompt_versions` has them too.
        self.info = SideInfo(label=label, model=model, revision=revision, prompt_versions=prompt_versions(checkout))
        self.checkout = checkout
        self._paths = list(dataset_paths)
        self._judge_model = judge_model
        self._max_concurrency = max_concurrency
        self._max_cost = max_cost
        self._server_url = server_url
        self._caps_itself: bool | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="ra-evals-base-")

    async def supports_cost_cap(self) -> bool:
        """Older revisions have no --max-cost; the driver then only starts if the worst case fits anyway."""
        if self._caps_itself is None:
            code, out, _ = await self._evals("--help")
            self._caps_itself = code == 0 and "--max-cost" in out
        return self._caps_itself

    async def _evals(self, *args: str) -> tuple[int, str, str]:
        env = {**os.environ, "PYTHONPATH": str(self.checkout), "LOGFIRE_IGNORE_NO_CONFIG": "1"}
        if self._server_url:  # its fresh database on our server: no second embedded server to start
            env["DATABASE_URL"] = self._server_url
            env.pop("RESEARCH_AGENT_DATABASE_URL", None)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "evals",
            *args,
            cwd=self.checkout,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await process.communicate()
        except BaseException:  # Ctrl-C or a failed sibling side: do not leave the base's eval running
            if process.returncode is None:
                process.kill()
                await asyncio.shield(process.wait())
            raise
        return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def run_round(self) -> Round:
        report_dir = Path(self._tmp.name) / "report"
        baselines = Path(self._tmp.name) / "no-baselines"
        baselines.mkdir(exist_ok=True)
        args = [
            "--model",
            self.info.model,
            "--repeat",
            "1",
            "--report-dir",
            str(report_dir),
            "--baseline-dir",
            str(baselines),
            "--max-concurrency",
            str(self._max_concurrency),
        ]
        if self._judge_model:
            args += ["--judge-model", self._judge_model]
        if self._max_cost is not None and await self.supports_cost_cap():
            remaining = max(Decimal(0), self._max_cost - Decimal(str(self.info.spent_usd)))
            args += ["--max-cost", str(remaining), "--yes"]
        for path in self._paths:
            args += ["--dataset", str(path)]
        code, out, err = await self._evals(*args)
        data_file = report_dir / "eval-report.json"
        if code not in (0, 1) or not data_file.exists():
            tail = (err or out).strip().splitlines()[-12:]
            raise UsageError(f"the base revision's evals failed (exit {code}):\n" + "\n".join(tail))
        data = json.loads(data_file.read_text(encoding="utf-8"))
        data_file.unlink()
        return self._read(data)

    def _read(self, data: dict[str, Any]) -> Round:
        self.info.prompt_version = str(data.get("prompt_version", "?"))
        self.info.judge_version = str(data.get("judge_version", "?"))
        scored: Round = {}
        run_costs = 0.0
        for dataset in data.get("datasets", []):
            name = str(dataset["name"])
            path = Path(str(dataset.get("path", "")))
            if path.is_file():
                self.info.dataset_versions[name] = dataset_version(path)
            cases: dict[str, SideCase] = {}
            for case in dataset.get("cases", []):
                runs = case.get("runs", [])
                run_costs += sum(float(run.get("cost_usd") or 0.0) for run in runs)
                cases[str(case["name"])] = SideCase(
                    name=str(case["name"]),
                    question=str(case.get("question", "")),
                    answers=[str(run.get("answer", "")) for run in runs],
                    answered=[bool(run.get("answered", True)) for run in runs],
                    scores={k: [float(x) for x in v["values"]] for k, v in case.get("scores", {}).items()},
                    reasons={k: [str(x) for x in v.get("reasons", [])] for k, v in case.get("scores", {}).items()},
                    errors=[str(e) for e in case.get("errors", [])],
                    not_run=int(case.get("not_run", 0)),
                )
            scored[name] = cases
        capped = data.get("cost") or {}  # revisions with --max-cost also count the judge's worst case
        self.info.spent_usd += float(capped.get("spent", run_costs))
        return scored

    async def aclose(self) -> None:
        self._tmp.cleanup()
