"""One factory for what a run needs from the outside world: its model, pricer, critic and search backend.

A worker builds these per run from the run's frozen config plus the worker's own keys (keys are never
frozen into a run). Everything is resolved before any spend, so a misconfigured model, critic or price
fails the run up front with a `ConfigurationError` instead of after the research was paid for.
The HTTP clients are shared by every run of one runner: creating one loads the CA bundle (~20 ms). Given the
run store's pool, provider models are wrapped in the shared circuit breaker and rate limits
(`agent.durable.providers`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg
import httpx
import httpx2
from pydantic_ai.models import Model

from agent.durable.providers import ProviderHealth
from agent.durable.store import RunRecord
from agent.errors import ConfigurationError
from agent.events import ProgressCallback, ProgressEvent, ignore_progress
from agent.models import resolve_model, retrying_http_client
from agent.offline import OfflineCriticModel
from agent.review import Critic
from agent.settings import Settings, is_offline_model
from budgets import Pricer, pricer_for
from tools import (
    CORPUS_SCHEME,
    CorpusSearchBackend,
    CorpusStore,
    FetchedPage,
    IndexProgress,
    LocalPages,
    SearchBackend,
    build_search_backend,
    ensure_python_docs,
)


@dataclass(frozen=True, kw_only=True)
class RunComponents:
    """What one execution of a run is built from."""

    model: Model
    pricer: Pricer | None
    critic: Critic | None
    search: SearchBackend
    corpus: LocalPages
    """Local documents `fetch_url` serves: the whole corpus offline, only `corpus://` URLs online."""


@dataclass(frozen=True)
class CorpusUrlsOnly:
    """The corpus as an online run sees it: its own `corpus://` URLs only, never mirrored web pages."""

    corpus: CorpusStore

    async def get_document(self, url: str) -> FetchedPage | None:
        if not url.lower().startswith(f"{CORPUS_SCHEME}://"):
            return None
        return await self.corpus.get_document(url)


class RunFactory:
    """Builds `RunComponents` for a run; owns the HTTP clients they share (close with `aclose`)."""

    def __init__(
        self,
        *,
        settings: Settings,
        models: Mapping[str, Model] | None = None,
        search_backend: SearchBackend | None = None,
        pool: asyncpg.Pool | None = None,
    ) -> None:
        self.settings = settings
        # With the run store's pool, provider models get the shared circuit breaker and rate limits.
        self.health = ProviderHealth(pool, settings) if pool is not None else None
        # Model instances by config label, for in-process runs with a Model object (tests, notebooks).
        self.models = dict(models or {})
        self.search_backend = search_backend
        self._provider_http: httpx2.AsyncClient | None = None
        self._http: httpx.AsyncClient | None = None

    def build(
        self, run: RunRecord, corpus: CorpusStore, *, progress: ProgressCallback = ignore_progress
    ) -> RunComponents:
        """Resolve everything the run needs; a `ConfigurationError` means the run cannot work as configured.

        `progress` hears `index` events if the offline search first has to index the Python reference.
        """
        model = self.model_for(run.config.model, fallback_models=run.config.fallback_models)
        offline = run.config.search_backend == "corpus"
        return RunComponents(
            model=model,
            pricer=run_pricer(model, run),
            critic=self._critic_for(run),  # before any spend: a critic that cannot run fails the run now
            search=self.search_backend or self._search_backend(run, corpus, progress),
            # Offline runs read the corpus; online runs only for explicit corpus:// URLs.
            corpus=corpus if offline else CorpusUrlsOnly(corpus),
        )

    def model_for(self, label: str, *, fallback_models: Sequence[str] = ()) -> Model:
        """A `Model` passed in for this label (tests, notebooks), else the label resolved with this worker's keys."""
        if label in self.models:
            return self.models[label]
        if self._provider_http is None:
            self._provider_http = retrying_http_client(self.settings)
        return resolve_model(
            label,
            settings=self.settings,
            fallback_models=list(fallback_models),
            http_client=self._provider_http,
            guard=self.health.guard if self.health is not None else None,
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._provider_http is not None:
            await self._provider_http.aclose()
            self._provider_http = None

    def _critic_for(self, run: RunRecord) -> Critic | None:
        """The run's critic, or None when it has none; a critic that cannot work is a configuration error."""
        label = run.config.critic_model
        if label is None:
            return None
        model = OfflineCriticModel() if is_offline_model(label) else self.model_for(label)
        critic_off = 'turn the critic off: Settings(critic_model="off") (environment: RESEARCH_AGENT_CRITIC_MODEL=off)'
        pricer = run_pricer(model, run, role="critic model", alternative=critic_off)
        return Critic(model=model, pricer=pricer, label=label)

    def _search_backend(self, run: RunRecord, corpus: CorpusStore, progress: ProgressCallback) -> SearchBackend:
        """The run's frozen backend choice; keys come from this worker's settings (never frozen)."""
        settings = self.settings
        if run.config.search_backend == "corpus":
            # The Python reference is indexed the first time an offline search needs it, with progress.
            indexing = index_progress(progress, run.id)
            return CorpusSearchBackend(corpus, prepare=lambda: ensure_python_docs(corpus, progress=indexing))
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
        return build_search_backend(
            backend=run.config.search_backend,
            tavily_api_key=settings.tavily_api_key.get_secret_value() if settings.tavily_api_key else None,
            brave_api_key=settings.brave_api_key.get_secret_value() if settings.brave_api_key else None,
            searxng_url=run.config.searxng_url,
            client=self._http,
        )


INDEXING_MESSAGE = "indexing the Python reference (first use)"


def index_progress(progress: ProgressCallback, run_id: str) -> IndexProgress:
    """Indexing progress as the run's `index` events (`done`/`total` for a progress bar)."""

    def report(done: int, total: int) -> None:
        progress(ProgressEvent(run_id=run_id, kind="index", message=INDEXING_MESSAGE, done=done, total=total))

    return report


def run_pricer(
    model: Model,
    run: RunRecord,
    *,
    role: str = "model",
    alternative: str = "run without a cost cap: budget=Budget(max_cost_usd=None) (CLI: --max-cost none)",
) -> Pricer | None:
    """How to price `model` in this run; a cost cap with no known price is a configuration error, not a silent $0.

    The message names the fix for both audiences: Python callers (`Settings`, `Budget`) and the CLI (variables, flags).
    """
    pricer = pricer_for(model, overrides=run.config.model_prices)
    if pricer is None and run.config.budget.max_cost_usd is not None:
        label = f"{model.system}:{model.model_name}"
        raise ConfigurationError(
            f"no price is known for {role} {label!r}, so the ${run.config.budget.max_cost_usd} cost cap cannot "
            f'be enforced; give it a price with Settings(model_prices={{"{label}": budgets.ModelPrice('
            f"input_per_mtok=..., output_per_mtok=...)}}) (environment: RESEARCH_AGENT_MODEL_PRICES="
            f'\'{{"{label}": {{"input_per_mtok": ..., "output_per_mtok": ...}}}}\'), or {alternative}'
        )
    return pricer
