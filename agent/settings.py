"""Configuration: one `Settings` object, read from `RESEARCH_AGENT_*` environment variables.

Settings are the single source of truth for configuration. When a run is submitted, the parts that
shape its behaviour are frozen into the run's config (see `agent.config.RunConfig`) so a worker with
different settings still runs it exactly as submitted; secrets are never frozen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SearchBackendName = Literal["duckduckgo", "tavily", "brave", "searxng"]


def _default_data_dir() -> Path:
    return platformdirs.user_data_path("research-agent")


class Settings(BaseSettings):
    """Everything configurable, with safe defaults. Environment prefix: `RESEARCH_AGENT_`."""

    model_config = SettingsConfigDict(env_prefix="RESEARCH_AGENT_", extra="ignore", frozen=True)

    # --- model -------------------------------------------------------------------------------
    model: str = Field(
        default="openai:gpt-4.1-mini",
        description="pydantic-ai model name (`openai:...`, `anthropic:...`) or `factory:module:callable`.",
    )
    fallback_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated models tried in order when the primary keeps failing.",
    )
    openai_base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible server (vLLM, Ollama, LM Studio...)."
    )
    openai_api_key: SecretStr | None = Field(
        default=None, description="Key for `openai_base_url`; plain OpenAI also reads OPENAI_API_KEY."
    )
    provider_max_retries: int = Field(default=4, ge=0, le=20, description="Retries on 429/5xx/timeouts.")
    provider_max_wait_seconds: float = Field(default=60.0, gt=0, description="Longest Retry-After honoured.")
    model_request_timeout_seconds: float = Field(default=120.0, gt=0)

    # --- storage -----------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RESEARCH_AGENT_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL URL; when unset an embedded server starts under `data_dir`.",
    )
    data_dir: Path = Field(default_factory=_default_data_dir, description="Where the embedded server lives.")

    # --- tools -------------------------------------------------------------------------------
    search_backend: SearchBackendName = "duckduckgo"
    tavily_api_key: SecretStr | None = None
    brave_api_key: SecretStr | None = None
    searxng_url: str | None = None
    search_max_results: int = Field(default=5, ge=1, le=10)
    fetch_allow_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated `host` or `host:port` entries that may resolve to private addresses.",
    )
    fetch_max_bytes: int = Field(default=2_000_000, ge=1_000, le=50_000_000)
    fetch_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    fetch_max_chars: int = Field(default=12_000, ge=500, le=200_000, description="Page text shown to the model.")
    page_cache_ttl_seconds: int = Field(default=86_400, ge=0)

    # --- workers -----------------------------------------------------------------------------
    lease_seconds: float = Field(default=15.0, gt=0.5, le=3600, description="A worker's claim on a run.")
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)

    # --- observability -----------------------------------------------------------------------
    service_name: str = "research-agent"

    @field_validator("fallback_models", "fetch_allow_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("fetch_allow_hosts")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        return [host.lower() for host in value]
