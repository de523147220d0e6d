"""Configuration: one `Settings` object, read from `RESEARCH_AGENT_*` environment variables.

Settings are the single source of truth for configuration. When a run is submitted, the parts that
shape its behaviour are frozen into the run's config (see `agent.config.RunConfig`) so a worker with
different settings still runs it exactly as submitted; secrets are never frozen.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

import annotated_types
import platformdirs
import pydantic  # webhooks: its validators, by their qualified names
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agent.errors import ConfigurationError
from budgets import ModelPrice
from tools import ToolPolicyOverrides

SearchBackendName = Literal["corpus", "duckduckgo", "tavily", "brave", "searxng"]
OFFLINE_MODEL = "offline"
# What `model="auto"` picks when a provider key is present (checked in this order).
AUTO_MODELS: tuple[tuple[str, str], ...] = (
    ("OPENAI_API_KEY", "openai:gpt-4.1-mini"),
    ("ANTHROPIC_API_KEY", "anthropic:claude-sonnet-4-5"),
)


ENV_PREFIX = "RESEARCH_AGENT_"
_JSON_FIELDS = ("tool_policy", "model_prices", "rate_limits")
# Expected forms that cannot be derived from a field's type and bounds (see `_expected_form`).
_FORMS: dict[str, str] = {
    "tool_policy": 'JSON like {"tools": {"fetch_url": "require_approval"}, "timeouts": {"fetch_url": 20}}',
    "model_prices": 'JSON like {"openai:my-model": {"input_per_mtok": 0.5, "output_per_mtok": 1.5}}',
    "data_dir": "a directory path",
    "rate_limits": 'JSON like {"openai:gpt-4.1-mini": {"rpm": 500, "tpm": 200000}}',
}


class ProviderRateLimit(BaseModel):
    """Requests and tokens per rate window (a minute by default) one provider model may take, across all workers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rpm: int | None = Field(default=None, ge=1, description="Requests per window.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens (input bound + output allowance) per window.")


def _default_data_dir() -> Path:
    return platformdirs.user_data_path("research-agent")


def _comma_list(value: object) -> object:
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


def _http_urls(urls: list[str]) -> list[str]:
    """Webhook URLs, syntax only: the SSRF rules (DNS, the allow-list) apply at worker start and at delivery."""
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return urls


WebhookURLs = Annotated[list[str], NoDecode, pydantic.BeforeValidator(_comma_list), pydantic.AfterValidator(_http_urls)]
"""A comma-separated list of http(s) URLs in the environment (RESEARCH_AGENT_WEBHOOKS, ..._ALERT_WEBHOOKS)."""


def _fractions(values: list[float]) -> list[float]:
    for value in values:
        if not 0 < value <= 1:
            raise ValueError(f"{value!r} is not a fraction of the daily cap: give numbers above 0 and at most 1")
    return sorted(set(values))


class OperationsSettings(BaseSettings):
    """The operating part of `Settings`, who is told what: webhooks and alert rules. A base of `Settings` (never
    used alone) so that each class stays short enough to read."""

    # --- webhooks (agent/durable/webhooks.py; docs/decisions/0024-webhooks.md) ------------------------
    webhooks: WebhookURLs = Field(
        default_factory=list,
        description="Comma-separated http(s) URLs told about runs, approvals, alerts and the kill switch (signed "
        "JSON, at least once); the fetch_url SSRF rules apply: a private receiver needs fetch_allow_hosts.",
    )
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key for the signature header.")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="One delivery attempt, in all.")
    webhook_max_attempts: int = Field(default=10, ge=1, le=100, description="Attempts before a delivery is given up.")
    webhook_backoff_seconds: float = Field(default=5.0, gt=0, le=3600, description="First retry wait; doubles.")
    webhook_backoff_max_seconds: float = Field(default=600.0, gt=0, le=86_400, description="Longest retry wait.")

    # --- alerts (agent/durable/alerts.py; docs/decisions/0027-alerts-and-run-events.md; docs/runbook.md) ---
    alert_webhooks: WebhookURLs = Field(
        default_factory=list,
        description="Comma-separated http(s) URLs told only about `alert.fired` (besides RESEARCH_AGENT_WEBHOOKS, "
        "which hear every event); same signing and SSRF rules.",
    )
    alert_window: str = Field(
        default="1h",
        pattern=r"^\s*\d+\s*[smhdwSMHDW]\s*$",
        description="The recent runs the rules look at: a whole number and a unit, s, m, h, d or w.",
    )
    alert_min_runs: int = Field(
        default=20, ge=1, le=1_000_000, description="Finished runs in the window below which no run rule is judged."
    )
    alert_check_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="How often each worker evaluates the rules (0 < s)."
    )
    alert_min_success_rate: float = Field(default=0.90, ge=0, le=1, description="Completed / finished, at least.")
    alert_max_steps_per_run: float = Field(default=8.0, gt=0, description="Model turns per finished run, on average.")
    alert_max_p99_duration_seconds: float = Field(default=90.0, gt=0, description="p99 run duration (elapsed).")
    alert_max_tokens_per_run: float = Field(default=10_000, gt=0, description="Tokens per finished run, on average.")
    alert_max_cost_per_run_usd: Decimal = Field(
        default=Decimal("0.10"), gt=0, description="Cost per finished run, on average."
    )
    alert_max_tool_error_rate: float = Field(default=0.05, ge=0, le=1, description="Tool errors / tool calls.")
    alert_max_approval_rate: float = Field(default=0.20, ge=0, le=1, description="Runs that asked a human / runs.")
    alert_spend_fractions: Annotated[
        list[float], NoDecode, pydantic.BeforeValidator(_comma_list), pydantic.AfterValidator(_fractions)
    ] = Field(
        default_factory=lambda: [0.5, 0.8],
        description="Fractions of RESEARCH_AGENT_DAILY_CAP_USD whose crossing fires a spend alert, once per UTC day.",
    )


class Settings(OperationsSettings):
    """Everything configurable, with safe defaults. Environment prefix: `RESEARCH_AGENT_`."""

    model_config = SettingsConfigDict(env_prefix="RESEARCH_AGENT_", extra="ignore", frozen=True)

    # --- model -------------------------------------------------------------------------------
    model: str = Field(
        default="auto",
        description="`auto`, `offline`, a pydantic-ai model name (`openai:...`) or `factory:module:callable`.",
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
    model_prices: Annotated[dict[str, ModelPrice], NoDecode] = Field(
        default_factory=dict,
        description='JSON: prices for models genai-prices does not know, e.g. {"openai:my-model": '
        '{"input_per_mtok": 0.5, "output_per_mtok": 1.5}}; keys `system:model`, `model` or `system:*`.',
    )
    provider_max_retries: int = Field(default=4, ge=0, le=20, description="Retries on 429/5xx/timeouts.")
    provider_max_wait_seconds: float = Field(default=60.0, gt=0, description="Longest Retry-After honoured.")
    model_request_timeout_seconds: float = Field(default=120.0, gt=0)
    provider_retry_jitter: float = Field(
        default=0.25, ge=0, le=1, description="Each retry wait is lengthened by a random 0..this fraction of it."
    )

    # --- provider health (agent/durable/providers.py): circuit breaker and shared rate limits ----------------
    rate_limits: Annotated[dict[str, ProviderRateLimit], NoDecode] = Field(
        default_factory=dict,
        description="JSON: requests and tokens per minute per model, shared by every worker, e.g. "
        '{"openai:gpt-4.1-mini": {"rpm": 500, "tpm": 200000}}; keys `system:model` (as in `model_prices`).',
    )
    rate_limit_window_seconds: float = Field(
        default=60.0, gt=0, le=3_600, description="The window `rate_limits` count in (a minute; shorter in tests)."
    )
    breaker_failures: int = Field(
        default=5, ge=1, le=1_000, description="Consecutive provider failures (after retries) that open the breaker."
    )
    breaker_open_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="How long an open breaker refuses requests before one probe."
    )
    breaker_close_successes: int = Field(
        default=2, ge=1, le=100, description="Successful probes in a row that close a half-open breaker."
    )
    breaker_max_wait_seconds: float = Field(
        default=120.0,
        ge=0,
        le=86_400,
        description="How long a run with no fallback left waits for an open breaker before it fails `provider_error`.",
    )

    critic_model: str = Field(
        default="auto",
        description="Model grading each report (agent/review/): `auto` (the run's own model; the offline model "
        "gets the offline critic), `off`, or a model name like the `model` setting, e.g. a cheaper one.",
    )
    critic_threshold: float = Field(
        default=0.7, ge=0.0, le=1.0, description="A report the critic scores below this is revised, once."
    )

    # --- storage -----------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RESEARCH_AGENT_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL URL; when unset an embedded server starts under `data_dir`.",
    )
    data_dir: Path = Field(default_factory=_default_data_dir, description="Where the embedded server lives.")

    # --- tools -------------------------------------------------------------------------------
    search_backend: SearchBackendName | Literal["auto"] = Field(
        default="auto", description="`auto`: the local corpus for the offline model, else DuckDuckGo."
    )
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
    tool_policy: Annotated[ToolPolicyOverrides, NoDecode] = Field(
        default_factory=ToolPolicyOverrides,
        description='JSON merged over the default tool policy, e.g. {"tools": {"web_search": "deny"}, '
        '"timeouts": {"fetch_url": 20}}; tools not named anywhere are denied.',
    )
    fetch_allow_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated domains fetch_url may reach (empty: any public domain)."
    )
    fetch_block_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated domains fetch_url refuses (subdomains included)."
    )
    fetch_approval_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated domains whose fetches need human approval."
    )
    max_tool_args_bytes: int = Field(
        default=65_536,
        ge=1_024,
        le=16_777_216,
        description="A tool call (the final answer included) whose arguments (JSON) are longer is refused with a "
        "structured error, unread (before validation or secret scanning).",
    )

    approval_timeout_seconds: float = Field(
        default=3_600.0,
        gt=0,
        le=30 * 86_400,
        description="How long a tool call waits for a human (`research-agent approvals`) before it counts as rejected.",
    )

    # --- workers -----------------------------------------------------------------------------
    lease_seconds: float = Field(default=15.0, gt=0.5, le=3600, description="A worker's claim on a run.")
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Failed attempts in a row a run may make (its worker died or stalled so its lease expired, or"
        " its execution failed with an unexpected error); then it ends `failed` / `too_many_attempts`, naming the"
        " last error, instead of changing hands.",
    )

    # --- controls (agent/durable/controls.py) ----------------------------------------------------------
    daily_cap_usd: Decimal | None = Field(
        default=None,
        gt=0,
        description="Spend cap across all runs per UTC day, enforced in Postgres; unset = no cap.",
    )
    disabled: bool = Field(
        default=False,
        description="RESEARCH_AGENT_DISABLED=1: this process acts as if the kill switch were on.",
    )

    # --- guardrails (agent/guardrails/screening.py) ------------------------------------------------------
    refuse_injection: bool = Field(
        default=False,
        description="RESEARCH_AGENT_REFUSE_INJECTION=1: refuse questions with prompt-injection markers "
        "(default: record the findings on the run and research the question anyway).",
    )

    # --- metrics (agent/metrics/) ---
    metrics_refresh_seconds: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="How often a worker reads the approvals waiting and the circuit breakers for its metric gauges.",
    )

    # --- observability -----------------------------------------------------------------------
    service_name: str = "research-agent"

    @classmethod
    def load(cls) -> Settings:
        """Settings from the environment; what the CLI and `open_runtime` use.

        Unlike `Settings()`, which raises pydantic's `ValidationError`, a bad value raises a
        `ConfigurationError` with one line per bad variable: its name (`RESEARCH_AGENT_LEASE_SECONDS`),
        the value given and the form expected.
        """
        try:
            return cls()
        except ValidationError as exc:
            raise ConfigurationError(*_describe_problems(exc)) from exc

    def resolved_model(self) -> str:
        """The model `auto` stands for: a real model when a provider key is configured, else offline."""
        if self.model != "auto":
            return self.model
        if self.openai_base_url:
            raise ConfigurationError(
                "RESEARCH_AGENT_OPENAI_BASE_URL is set: also set RESEARCH_AGENT_MODEL=openai:<model name>"
            )
        for env_var, model in AUTO_MODELS:
            if os.environ.get(env_var):
                return model
        return OFFLINE_MODEL

    def resolved_search_backend(self, model: str) -> SearchBackendName:
        """The backend `auto` stands for, given the run's model: offline research searches the corpus."""
        if self.search_backend != "auto":
            return self.search_backend
        return "corpus" if is_offline_model(model) else "duckduckgo"

    @field_validator("fallback_models", "fetch_allow_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("fetch_allow_domains", "fetch_block_domains", "fetch_approval_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("fetch_allow_hosts")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        return [host.lower() for host in value]

    @field_validator(*_JSON_FIELDS, mode="before")
    @classmethod
    def _parse_json(cls, value: object) -> object:
        """JSON settings are decoded here (not by the env source) so a bad one is a validation error like any other."""
        if not isinstance(value, str):
            return value
        if not value.strip():
            return {}
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def critic_label(critic_model: str, *, run_model: str) -> str | None:
    """The critic a run with `run_model` gets from the `critic_model` setting; None when the critic is off."""
    setting = critic_model.strip()
    if setting == "off":
        return None
    return run_model if setting in ("", "auto") else setting


def is_offline_model(model: str) -> bool:
    return model == OFFLINE_MODEL or model.startswith(f"{OFFLINE_MODEL}:")


# --- configuration errors a user can act on --------------------------------------------------------


def env_var(field_name: str) -> str:
    """The environment variable that sets `field_name` (the first alias that is set, for aliased fields)."""
    names = _env_names(field_name)
    return next((name for name in names if _env_value(name) is not None), names[0])


def _env_names(field_name: str) -> list[str]:
    field = Settings.model_fields.get(field_name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"{ENV_PREFIX}{field_name.upper()}"]


def _env_value(name: str) -> str | None:
    """The raw value of `name` in the environment, matched case-insensitively like pydantic-settings does."""
    return next((value for key, value in os.environ.items() if key.upper() == name.upper()), None)


def _field_name(loc_head: str | int) -> str:
    """The field an error is about; errors on aliased fields are located by the alias."""
    head = str(loc_head)
    if head in Settings.model_fields:
        return head
    for name in Settings.model_fields:
        if head.upper() in (alias.upper() for alias in _env_names(name)):
            return name
    return head


def _describe_problems(error: ValidationError) -> list[str]:
    """One line per bad setting: `VARIABLE='value': expected FORM (detail)`."""
    details: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        name = _field_name(item["loc"][0]) if item["loc"] else ""
        found = details.setdefault(name, [])
        if name in _JSON_FIELDS or item["type"] == "value_error":
            where = ".".join(str(part) for part in item["loc"][1:])
            message = str(item["msg"]).removeprefix("Value error, ")
            found.append(f"at {where}: {message}" if where else message)
    return [_problem_line(name, found) for name, found in details.items()]


def _problem_line(name: str, details: list[str]) -> str:
    field = Settings.model_fields.get(name)
    if field is None:  # not a field (pydantic reports a model-level problem): keep its words
        return f"invalid settings: {'; '.join(details) or name}"
    variable = env_var(name)
    raw = _env_value(variable)
    shown = "" if raw is None or _is_secret(name, field) else f"={_clip(raw)!r}"
    detail = f" ({'; '.join(details)})" if details else ""
    return f"{variable}{shown}: expected {_expected_form(name, field)}{detail}"


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_secret(name: str, field: FieldInfo) -> bool:
    return name == "database_url" or SecretStr in _members(field.annotation)


def _members(annotation: Any) -> list[Any]:
    """The types of a union (without None), or the annotation itself."""
    args = get_args(annotation)
    if not args or get_origin(annotation) in (Literal, list, dict):
        return [annotation]
    return [member for arg in args if arg is not type(None) for member in _members(arg)]


def _expected_form(name: str, field: FieldInfo) -> str:
    """What a valid value looks like, from the field's type and bounds (or `_FORMS` where those do not say)."""
    if name in _FORMS:
        return _FORMS[name]
    members = _members(field.annotation)
    literals = [str(value) for member in members if get_origin(member) is Literal for value in get_args(member)]
    if literals:
        return "one of " + ", ".join(literals)
    if bool in members:
        return "1 or 0 (true or false)"
    if any(get_origin(member) is list for member in members):
        return "comma-separated values"
    if not any(member in (int, float, Decimal) for member in members):
        return "text"
    unit = next((form for suffix, form in _UNITS.items() if name.endswith(suffix)), None)
    number = unit or ("a whole number" if int in members else "a number")
    bounds = [bound for bound in map(_bound, field.metadata) if bound]
    return f"{number} {' and '.join(bounds)}" if bounds else number


_UNITS: dict[str, str] = {
    "_seconds": "a number of seconds",
    "_usd": "a dollar amount",
    "_bytes": "a whole number of bytes",
    "_chars": "a whole number of characters",
}


def _bound(meta: object) -> str | None:
    match meta:
        case annotated_types.Gt(gt=value):
            return f"> {value}"
        case annotated_types.Ge(ge=value):
            return f">= {value}"
        case annotated_types.Lt(lt=value):
            return f"< {value}"
        case annotated_types.Le(le=value):
            return f"<= {value}"
    return None
