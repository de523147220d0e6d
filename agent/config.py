"""A run's frozen configuration: everything that shapes its behaviour, captured at submit time."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.settings import SearchBackendName, Settings, critic_label
from budgets import Budget, CapReason, ModelPrice
from tools import ToolPolicy

RunStatus = Literal[
    "queued", "running", "completed", "failed", "budget_exceeded", "killed", "cancelled", "awaiting_approval"
]
"""`runs.status`; the database checks it (agent/durable/migrations/0007_cancelled_runs.sql).

`cancelled` is an interrupted run (Ctrl-C, `Runtime.interrupt`): terminal, and resumable like every stop.
"""
StopReason = Literal[
    CapReason,
    "completed",
    "error",
    "provider_error",
    "internal_error",
    "approval_required",
    "interrupted",
    "too_many_attempts",
]
"""`runs.stop_reason`: a cap that stopped the run (`budgets.CapReason`), or how else it ended or paused.

The database checks it too (0011_attempt_cap.sql); tests/test_store.py keeps the two equal.
"""


class RunConfig(BaseModel):
    """Stored as `runs.config`; a worker runs the run with this, not with its own settings. No secrets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    fallback_models: list[str] = Field(default_factory=list)
    prompt_version: str
    budget: Budget = Field(default_factory=Budget)
    model_prices: dict[str, ModelPrice] = Field(default_factory=dict)
    search_backend: SearchBackendName
    searxng_url: str | None = None
    search_max_results: int
    fetch_allow_hosts: list[str] = Field(default_factory=list)
    fetch_max_bytes: int
    fetch_timeout_seconds: float
    fetch_max_chars: int
    page_cache_ttl_seconds: int
    tool_policy: ToolPolicy = Field(default_factory=ToolPolicy)
    approval_timeout_seconds: float = 3_600.0
    critic_model: str | None = None
    """The model grading the report (`agent.review.critic`); None: no critic, no revision."""
    critic_threshold: float = Field(default=0.7, ge=0.0, le=1.0)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        model: str,
        prompt_version: str,
        budget: Budget | None = None,
        critic_model: str | None = None,
    ) -> RunConfig:
        return cls(
            model=model,
            fallback_models=list(settings.fallback_models),
            prompt_version=prompt_version,
            budget=budget or Budget(),
            model_prices=dict(settings.model_prices),
            search_backend=settings.resolved_search_backend(model),
            searxng_url=settings.searxng_url,
            search_max_results=settings.search_max_results,
            fetch_allow_hosts=list(settings.fetch_allow_hosts),
            fetch_max_bytes=settings.fetch_max_bytes,
            fetch_timeout_seconds=settings.fetch_timeout_seconds,
            fetch_max_chars=settings.fetch_max_chars,
            page_cache_ttl_seconds=settings.page_cache_ttl_seconds,
            approval_timeout_seconds=settings.approval_timeout_seconds,
            critic_model=critic_label(critic_model or settings.critic_model, run_model=model),
            critic_threshold=settings.critic_threshold,
            tool_policy=ToolPolicy.build(
                settings.tool_policy,
                allow_domains=settings.fetch_allow_domains,
                block_domains=settings.fetch_block_domains,
                approval_domains=settings.fetch_approval_domains,
                max_args_bytes=settings.max_tool_args_bytes,
            ),
        )
