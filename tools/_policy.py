"""The tool policy: which tools may run, which fetch destinations are allowed, and how long a tool may take.

Deny by default: a tool the policy does not name never runs. `fetch_url` is further checked against
domain allow/block/approval lists before any DNS lookup or connection, so an attacker domain is
refused without the agent ever touching it (private addresses are refused later by the SSRF layer in
`tools._fetch`, which sees the resolved IPs). The policy is plain data, frozen into each run's config.

Before any of that, a call's arguments are screened (`screen_args`): over `max_args_bytes` they are
refused unread (no validation, no regex), and a secret shape in any of them, as written or disguised
(`tools.secrets.find_secret`), refuses the call: secrets never leave through a tool.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from tools.secrets import REDACTED, find_secret, is_secret_name, redact_text

Decision = Literal["allow", "deny", "require_approval"]
CORPUS_SCHEME = "corpus"

DEFAULT_TOOLS: dict[str, Decision] = {"record_plan": "allow", "web_search": "allow", "fetch_url": "allow"}
DEFAULT_TIMEOUTS: dict[str, float] = {"record_plan": 5.0, "web_search": 20.0, "fetch_url": 30.0}
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_ARGS_BYTES = 65_536
ARGS_TOO_LARGE = "arguments_too_large"
SECRET_IN_ARGS = "secret_in_arguments"
OMITTED_ARGS_KEY = "_omitted_by_policy"
"""The one key of the stand-in for arguments refused unread (they are never stored or replayed)."""


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
    max_args_bytes: int = Field(default=DEFAULT_MAX_ARGS_BYTES, ge=1)
    """A call whose arguments (as JSON) are longer is refused before they are validated or scanned."""

    @classmethod
    def build(
        cls,
        overrides: ToolPolicyOverrides | None = None,
        *,
        allow_domains: Iterable[str] = (),
        block_domains: Iterable[str] = (),
        approval_domains: Iterable[str] = (),
        max_args_bytes: int = DEFAULT_MAX_ARGS_BYTES,
    ) -> ToolPolicy:
        overrides = overrides or ToolPolicyOverrides()
        return cls(
            tools={**DEFAULT_TOOLS, **overrides.tools},
            timeouts={**DEFAULT_TIMEOUTS, **overrides.timeouts},
            fetch_allow_domains=[normalize_domain(d) for d in allow_domains],
            fetch_block_domains=[normalize_domain(d) for d in block_domains],
            fetch_require_approval_domains=[normalize_domain(d) for d in approval_domains],
            max_args_bytes=max_args_bytes,
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


@dataclass(frozen=True, kw_only=True)
class ArgsRefusal:
    """Why a call's arguments are refused before anything reads them: `code` goes back to the model as the
    tool error, `reason` into the audit."""

    code: str
    reason: str

    def as_result(self) -> dict[str, Any]:
        return {"ok": False, "error": self.code, "message": f"Refused by the tool policy: {self.reason}."}


def args_size(args: str | Mapping[str, Any] | None) -> int:
    """The size in bytes of a call's arguments as the model sent them (JSON, UTF-8), without parsing them."""
    if args is None:
        return 0
    if isinstance(args, str):
        return len(args.encode("utf-8", errors="surrogatepass"))
    return len(to_json(args, fallback=str))


def screen_size(args: str | Mapping[str, Any] | None, *, max_bytes: int) -> ArgsRefusal | None:
    """A refusal for arguments over `max_bytes`, judged by size alone, or for the stand-in (`omitted_args`)
    that replaced such arguments in a committed response; None otherwise. Nothing else is read."""
    size = args_size(args)
    if size > max_bytes:
        return ArgsRefusal(
            code=ARGS_TOO_LARGE,
            reason=f"the arguments are {size:,} bytes, over the {max_bytes:,}-byte limit; they were not read",
        )
    parsed = _as_mapping(args)
    if parsed.keys() == {OMITTED_ARGS_KEY}:
        return ArgsRefusal(code=ARGS_TOO_LARGE, reason=f"the arguments were too large ({parsed[OMITTED_ARGS_KEY]})")
    return None


def screen_args(args: str | Mapping[str, Any] | None, *, max_bytes: int) -> ArgsRefusal | None:
    """A refusal for arguments over `max_bytes` (`screen_size`) or holding a secret shape (as written or
    disguised); None if they may go on. A redaction marker (`[REDACTED:openai_key]`) carries nothing: it may go."""
    if (refusal := screen_size(args, max_bytes=max_bytes)) is not None:
        return refusal
    parsed = _as_mapping(args)
    for where, text in _strings(parsed, ""):
        if (finding := find_secret(text)) is not None:
            return ArgsRefusal(
                code=SECRET_IN_ARGS,
                reason=f"{where or 'an argument'} carries a secret ({finding.describe()}); secrets never leave"
                " through a tool, so the call was not made",
            )
    return None


def omitted_args(size: int, max_bytes: int) -> dict[str, Any]:
    """What stands in for arguments refused unread, in the history and the audit."""
    return {OMITTED_ARGS_KEY: f"{size:,} bytes of arguments, over the {max_bytes:,}-byte limit"}


def redact_secrets(args: str | Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, Counter[str]]:
    """`args` with every secret shape (as written or disguised) replaced by `[REDACTED:<kind>]` (None if there
    was none), and the count per kind: what a model's tool call keeps in the history once the policy saw it."""
    parsed = _as_mapping(args)
    counts: Counter[str] = Counter()
    redacted = _redact_secret_values(parsed, counts)
    return (redacted if redacted != parsed else None), counts


def _as_mapping(args: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if args is None:
        return {}
    if isinstance(args, str):
        try:
            loaded = json.loads(args) if args.strip() else {}
        except ValueError:
            return {"_raw": args}
        return dict(loaded) if isinstance(loaded, dict) else {"_raw": args}
    return dict(args)


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string in `value` (dict keys too), with where it is (`query`, `sub_questions[1]`)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield where, str(key)
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")


def _redact_secret_values(value: Any, counts: Counter[str]) -> Any:
    if isinstance(value, str):
        text, found = redact_text(value, category="secret")
        counts.update(found)
        if (deeper := find_secret(text)) is not None:  # nested deeper than the redaction looks: all of it goes
            counts[deeper.kind] += 1
            return f"[REDACTED:{deeper.kind}]"
        return text
    if isinstance(value, Mapping):
        return {_redact_secret_values(str(k), counts): _redact_secret_values(v, counts) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_secret_values(v, counts) for v in value]
    return value


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


def redact_url(url: str) -> str:
    """`url` (or a path with a query) with its password and secret-named query parameters (`api_key=`,
    `token=`...) masked as `[REDACTED]`; secret shapes are left to `redact_text`."""
    return url if any(c.isspace() for c in url.strip()) else _redact_url(url.strip())


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
