"""The tool policy: decisions, redaction, the append-only audit table, and the policy inside a real run."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from agent.api import Runtime
from agent.config import RunConfig
from agent.settings import Settings
from tests._http_server import LocalHTTPServer
from tests._web import install_web
from tests.scripted import scripted_calls
from tools import ToolPolicy, ToolPolicyOverrides, redact_args
from tools._policy import REDACTED


def _policy(**kwargs: object) -> ToolPolicy:
    return ToolPolicy.build(
        ToolPolicyOverrides.model_validate(kwargs.pop("overrides", {})),
        allow_domains=kwargs.pop("allow", ()),  # type: ignore[arg-type]
        block_domains=kwargs.pop("block", ()),  # type: ignore[arg-type]
        approval_domains=kwargs.pop("approval", ()),  # type: ignore[arg-type]
    )


def test_default_tools_are_allowed_and_unnamed_tools_are_denied() -> None:
    policy = ToolPolicy()
    assert policy.decide("record_plan", {"sub_questions": ["a?"]}).decision == "allow"
    assert policy.decide("web_search", {"query": "x"}).decision == "allow"
    assert policy.decide("fetch_url", {"url": "https://example.com/"}).decision == "allow"
    shell = policy.decide("shell", {"cmd": "ls"})
    assert shell.decision == "deny" and "deny by default" in shell.reason


def test_tools_can_be_denied_or_need_approval_and_timeouts_merge() -> None:
    policy = _policy(overrides={"tools": {"web_search": "deny", "fetch_url": "require_approval"}, "timeouts": {"x": 1}})
    assert policy.decide("web_search", {"query": "x"}).decision == "deny"
    assert policy.decide("fetch_url", {"url": "https://example.com/"}).decision == "require_approval"
    assert policy.timeout_for("x") == 1 and policy.timeout_for("fetch_url") == 30 and policy.timeout_for("new") == 30


def test_domain_lists_match_subdomains_case_and_idna() -> None:
    policy = _policy(block=["Attacker.Example"], approval=["bücher.example"])
    assert policy.decide("fetch_url", {"url": "http://attacker.example/x"}).decision == "deny"
    assert policy.decide("fetch_url", {"url": "http://DOCS.attacker.example./x"}).decision == "deny"
    assert policy.decide("fetch_url", {"url": "http://notattacker.example/x"}).decision == "allow"
    assert policy.decide("fetch_url", {"url": "http://xn--bcher-kva.example/"}).decision == "require_approval"
    assert policy.decide("fetch_url", {"url": "http://shop.BÜCHER.example/"}).decision == "require_approval"

    only = _policy(allow=["example.com"])
    assert only.decide("fetch_url", {"url": "https://docs.example.com/a"}).decision == "allow"
    refused = only.decide("fetch_url", {"url": "https://example.org/a"})
    assert refused.decision == "deny" and "allow list" in refused.reason


def test_corpus_urls_are_local_and_odd_schemes_are_refused() -> None:
    policy = _policy(allow=["example.com"])
    assert policy.decide("fetch_url", {"url": "corpus://python-docs/library/asyncio"}).decision == "allow"
    assert policy.decide("fetch_url", {"url": "file:///etc/passwd"}).decision == "deny"
    assert policy.decide("fetch_url", {"url": "http:///nohost"}).decision == "deny"
    denied = _policy(overrides={"tools": {"fetch_url": "deny"}})
    assert denied.decide("fetch_url", {"url": "corpus://python-docs/x"}).decision == "deny"


def test_redact_args_masks_secret_keys_values_and_url_parameters() -> None:
    redacted = redact_args(
        {
            "url": "https://user:hunter2@api.example.com/v1?api_key=abc123&q=quic&access_token=zzz",
            "headers": {"Authorization": "Bearer abcdefghijklmnop", "Accept": "text/html"},
            "password": "hunter2",
            "query": "my key is sk-proj-abcdefghijklmnopqrstuvwx please",
            "items": [{"token": "t"}, "ghp_abcdefghijklmnopqrstuv"],
            "max_results": 5,
        }
    )
    assert "abc123" not in redacted["url"] and "zzz" not in redacted["url"] and "hunter2" not in redacted["url"]
    assert "q=quic" in redacted["url"]
    assert redacted["headers"] == {"Authorization": REDACTED, "Accept": "text/html"}
    assert redacted["password"] == REDACTED
    assert redacted["query"] == f"my key is {REDACTED} please"
    assert redacted["items"] == [{"token": REDACTED}, REDACTED]
    assert redacted["max_results"] == 5


@pytest.mark.parametrize(
    "token",
    [
        "glpat-abcdefghij0123",
        "ghs_abcdefghij0123",
        "gho-abcdefghij",
        "xoxs_abcdefghij",
        "Bearer abcd1234",
        "SK-ABCDEFGHIJKLMNOP",
    ],
)
def test_redact_args_masks_every_token_shape_of_the_shared_table(token: str) -> None:
    redacted = redact_args({"query": f"look up {token} now"})["query"]
    assert REDACTED in redacted and token.split()[-1] not in redacted


def test_the_policy_is_frozen_into_the_run_config_from_settings(settings: Settings) -> None:
    custom = settings.model_copy(
        update={
            "tool_policy": ToolPolicyOverrides(tools={"web_search": "deny"}),
            "fetch_block_domains": ["evil.example"],
        }
    )
    config = RunConfig.from_settings(custom, model="test", prompt_version="v")
    assert config.tool_policy.tools["web_search"] == "deny"
    assert config.tool_policy.decide("fetch_url", {"url": "http://a.evil.example/"}).decision == "deny"
    assert RunConfig.model_validate(config.model_dump(mode="json")) == config


def test_settings_read_policy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESEARCH_AGENT_TOOL_POLICY", '{"tools": {"fetch_url": "deny"}, "timeouts": {"web_search": 5}}')
    monkeypatch.setenv("RESEARCH_AGENT_FETCH_BLOCK_DOMAINS", "evil.example, bad.example")
    monkeypatch.setenv("RESEARCH_AGENT_FETCH_ALLOW_DOMAINS", "")
    monkeypatch.setenv("RESEARCH_AGENT_FETCH_APPROVAL_DOMAINS", "slow.example")
    settings = Settings()
    assert settings.tool_policy.tools == {"fetch_url": "deny"} and settings.tool_policy.timeouts == {"web_search": 5}
    assert settings.fetch_block_domains == ["evil.example", "bad.example"]
    assert settings.fetch_allow_domains == [] and settings.fetch_approval_domains == ["slow.example"]


async def test_the_audit_table_is_append_only_in_the_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        run_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO tool_audit (run_id, tool, args, decision, reason) VALUES ($1, 'shell', '{}', 'deny', 'r')",
            run_id,
        )
        assert await conn.fetchval("SELECT count(*) FROM tool_audit") == 1
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("UPDATE tool_audit SET decision = 'allow'")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("DELETE FROM tool_audit")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("TRUNCATE tool_audit")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO tool_audit (run_id, tool, decision, reason) VALUES ($1, 'x', 'maybe', 'r')", run_id
            )
        assert await conn.fetchval("SELECT decision FROM tool_audit") == "deny"
    finally:
        await conn.close()


async def test_refused_calls_become_structured_failures_and_are_audited_with_redacted_args(
    runtime: Runtime, http_server: LocalHTTPServer
) -> None:
    install_web(http_server)
    settings = runtime.settings.model_copy(
        update={
            "tool_policy": ToolPolicyOverrides(tools={"web_search": "deny"}),
            "fetch_block_domains": ["blocked.example"],
            "fetch_approval_domains": ["approve.example"],
        }
    )
    rt = Runtime(pool=runtime.pool, settings=settings)
    page = http_server.url("/pages/http3")
    model = scripted_calls(
        [
            ("record_plan", {"sub_questions": ["QUIC?"]}),
            ("web_search", {"query": "QUIC"}),
            ("fetch_url", {"url": "https://blocked.example/p?api_key=s3cr3t-value"}),
            ("fetch_url", {"url": page}),
        ]
    )
    result = await rt.research("What is QUIC?", model=model)

    assert result.status == "completed"
    steps = (await rt.get_run(result.run_id)).steps
    summaries = [s.summary for s in steps if not s.ok]
    assert any("denied_by_policy" in s for s in summaries)
    rows = await rt.store.audit_rows(result.run_id)
    assert [(r.tool, r.decision) for r in rows] == [
        ("record_plan", "allow"),
        ("web_search", "deny"),
        ("fetch_url", "deny"),
        ("fetch_url", "allow"),
    ]
    assert "s3cr3t" not in str(rows[2].args) and REDACTED in rows[2].args["url"]
    assert "block list" in rows[2].reason
    assert sum(http_server.hits.values()) == 1  # only the allowed page was fetched


async def test_a_tool_slower_than_its_policy_timeout_is_stopped(runtime: Runtime, http_server: LocalHTTPServer) -> None:
    install_web(http_server)
    settings = runtime.settings.model_copy(update={"tool_policy": ToolPolicyOverrides(timeouts={"web_search": 0.2})})
    rt = Runtime(pool=runtime.pool, settings=settings)

    class SlowBackend:
        name = "slow"

        async def search(self, query: str, *, max_results: int) -> list[object]:
            await asyncio.sleep(5)
            return []

    model = scripted_calls([("record_plan", {"sub_questions": ["QUIC?"]}), ("web_search", {"query": "QUIC"})])
    result = await rt.research("What is QUIC?", model=model, search_backend=SlowBackend())  # type: ignore[arg-type]

    assert result.status == "completed"
    rows = await rt.store.audit_rows(result.run_id)
    assert [(r.tool, r.decision) for r in rows][-2:] == [("web_search", "allow"), ("web_search", "allow")]
    assert "timed out" in rows[-1].reason
