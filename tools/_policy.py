"""The tool policy: which tools may run, which fetch destinations are allowed, and how long a tool may take.

Deny by default: a tool the policy does not name never runs. `fetch_url` is further checked against
domain allow/block/approval lists before any DNS lookup or connection, so an attacker domain is
refused without the agent ever touching it (private addresses are refused later by the SSRF layer in
`tools._fetch`, which sees the resolved IPs). The policy is plain data, frozen into each run's config.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from tools.secrets import REDACTED, is_secret_name, redact_text

Decision = Literal["allow", "deny", "require_approval"]
CORPUS_SCHEME = "corpus"

DEFAULT_TOOLS: dict[str, Decision] = {"record_plan": "allow", "web_search": "allow", "fetch_url": "allow"}
DEFAULT_TIMEOUTS: dict[str, float] = {"record_plan": 5.0, "web_search": 20.0, "fetch_url": 30.0}
DEFAULT_TIMEOUT_SECONDS = 30.0


class PolicyDecision(BaseModel):
    """What the policy says about one tool call, and why (the reason is shown to the model and audited)."""

    model_config = ConfigDict(frozen=True)

    decision: Decision
    reason: str


class ToolPolicyOverrides(BaseModel):
    """`RESEARCH_AGENT_TOOL_POLICY`: per-tool decisions and timeouts merged over the defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tools: dict[str, Decision] = Field(default_factory=dict)
    timeouts: dict[str, float] = Field(default_factory=dict)


def normalize_domain(host: str) -> str:
    """Lower-case ASCII (IDNA) form without a trailing dot, so `Bücher.example.` == `xn--bcher-kva.example`."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host


def domain_matches(host: str, domains: Iterable[str]) -> str | None:
    """The first entry of `domains` that `host` is, or is a subdomain of; None if none."""
    host = normalize_domain(host)
    for entry in domains:
        domain = normalize_domain(entry)
        if domain and (host == domain or host.endswith("." + domain)):
            return entry
    return None


class ToolPolicy(BaseModel):
    """Allow / deny / require-approval per tool and per `fetch_url` domain, plus per-tool timeouts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tools: dict[str, Decision] = Field(default_factory=lambda: dict(DEFAULT_TOOLS))
    fetch_allow_domains: list[str] = Field(default_factory=list)
    """Empty: any public domain (the SSRF layer still refuses private addresses)."""
    fetch_block_domains: list[str] = Field(default_factory=list)
    fetch_require_approval_domains: list[str] = Field(default_factory=list)
    timeouts: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))

    @classmethod
    def build(
        cls,
        overrides: ToolPolicyOverrides | None = None,
        *,
        allow_domains: Iterable[str] = (),
        block_domains: Iterable[str] = (),
        approval_domains: Iterable[str] = (),
    ) -> ToolPolicy:
        overrides = overrides or ToolPolicyOverrides()
        return cls(
            tools={**DEFAULT_TOOLS, **overrides.tools},
            timeouts={**DEFAULT_TIMEOUTS, **overrides.timeouts},
            fetch_allow_domains=[normalize_domain(d) for d in allow_domains],
            fetch_block_domains=[normalize_domain(d) for d in block_domains],
            fetch_require_approval_domains=[normalize_domain(d) for d in approval_domains],
        )

    def timeout_for(self, tool_name: str) -> float:
        return self.timeouts.get(tool_name, DEFAULT_TIMEOUT_SECONDS)

    def decide(self, tool_name: str, args: Mapping[str, Any]) -> PolicyDecision:
        """The decision for one call; tools first, then (for `fetch_url`) the destination's domain."""
        verdict = self.tools.get(tool_name)
        if verdict is None:
            return PolicyDecision(decision="deny", reason=f"tool {tool_name!r} is not allowed (deny by default)")
        if verdict == "deny":
            return PolicyDecision(decision="deny", reason=f"tool {tool_name!r} is denied by the policy")
        if verdict == "require_approval":
            return PolicyDecision(decision="require_approval", reason=f"tool {tool_name!r} requires human approval")
        if tool_name == "fetch_url":
            return self._decide_url(str(args.get("url", "")))
        return PolicyDecision(decision="allow", reason=f"tool {tool_name!r} is allowed")

    def _decide_url(self, url: str) -> PolicyDecision:
        try:
            parts = urlsplit(url.strip())
            host = parts.hostname or ""
        except ValueError:
            return PolicyDecision(decision="deny", reason="the URL cannot be parsed")
        scheme = parts.scheme.lower()
        if scheme == CORPUS_SCHEME:
            return PolicyDecision(decision="allow", reason="corpus:// URLs are local documents")
        if scheme not in ("http", "https"):
            return PolicyDecision(decision="deny", reason=f"scheme {scheme or '(none)'!r} is not allowed")
        if not host:
            return PolicyDecision(decision="deny", reason="the URL has no host")
        if (blocked := domain_matches(host, self.fetch_block_domains)) is not None:
            return PolicyDecision(decision="deny", reason=f"domain {host!r} is on the block list ({blocked})")
        if self.fetch_allow_domains and domain_matches(host, self.fetch_allow_domains) is None:
            return PolicyDecision(decision="deny", reason=f"domain {host!r} is not on the allow list")
        if (needs := domain_matches(host, self.fetch_require_approval_domains)) is not None:
            return PolicyDecision(
                decision="require_approval", reason=f"domain {host!r} requires human approval ({needs})"
            )
        return PolicyDecision(decision="allow", reason=f"fetching {host!r} is allowed")


def redact_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `args` safe to store: secret-named keys, secret URL parameters and every secret shape of
    the shared table (`tools.secrets`) masked as `[REDACTED]`."""
    return {key: _redact(key, value) for key, value in args.items()}


def _redact(key: str, value: Any) -> Any:
    if is_secret_name(key) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact("", v) for v in value]
    if isinstance(value, str):
        return _redact_text(value)
    return value


def _redact_text(text: str) -> str:
    if "://" in text and not any(c.isspace() for c in text.strip()):
        text = _redact_url(text.strip())
    return redact_text(text, category="secret", placeholder=REDACTED)[0]


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        netloc = parts.netloc
        if parts.password:
            netloc = netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    except ValueError:
        return url
    if not query and netloc == parts.netloc:
        return url
    masked = [(k, REDACTED if is_secret_name(k) else v) for k, v in query]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(masked, safe="[]") if query else "", parts.fragment))
