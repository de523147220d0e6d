"""Settings: `auto` picks the offline model without a key, a real model with one; bad values fail clearly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.durable.factory import CorpusUrlsOnly
from agent.errors import ConfigurationError
from agent.settings import Settings
from tools import CorpusStore


def test_auto_model_is_offline_without_a_key_and_real_with_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "RESEARCH_AGENT_MODEL", "RESEARCH_AGENT_SEARCH_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.resolved_model() == "offline"
    assert settings.resolved_search_backend("offline") == "corpus"

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    assert Settings().resolved_model().startswith("anthropic:")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    online = Settings()
    assert online.resolved_model() == "openai:gpt-4.1-mini"
    assert online.resolved_search_backend(online.resolved_model()) == "duckduckgo"

    monkeypatch.setenv("RESEARCH_AGENT_SEARCH_BACKEND", "searxng")
    assert Settings().resolved_search_backend("offline") == "searxng"  # an explicit choice wins


def test_env_lists_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESEARCH_AGENT_FETCH_ALLOW_HOSTS", "Intranet.Local, 127.0.0.1:8080")
    monkeypatch.setenv("RESEARCH_AGENT_FALLBACK_MODELS", "openai:a,anthropic:b")
    settings = Settings()
    assert settings.fetch_allow_hosts == ["intranet.local", "127.0.0.1:8080"]
    assert settings.fallback_models == ["openai:a", "anthropic:b"]

    monkeypatch.setenv("RESEARCH_AGENT_LEASE_SECONDS", "0")
    with pytest.raises(ValidationError, match="lease_seconds"):
        Settings()


def test_base_url_without_a_model_name_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESEARCH_AGENT_MODEL", raising=False)
    with pytest.raises(ConfigurationError, match="RESEARCH_AGENT_MODEL"):
        Settings(openai_base_url="http://127.0.0.1:8000/v1").resolved_model()


async def test_online_runs_never_read_mirrored_pages_from_the_corpus(database_url: str) -> None:
    from agent.durable.database import create_pool

    pool = await create_pool(database_url, max_size=2)
    try:
        corpus = CorpusStore(pool)
        await corpus.upsert_document(
            url="https://example.org/x.html", collection="web", source="x", title="X", body="mirror"
        )
        await corpus.upsert_document(url="corpus://notes/a.md", collection="notes", source="a", title="A", body="mine")
        await corpus.upsert_document(
            url="corpus://python-docs/topics/pass", collection="python-docs", source="p", title="P", body="pydoc"
        )
        online_view = CorpusUrlsOnly(corpus)
        assert await online_view.get_document("https://example.org/x.html") is None
        page = await online_view.get_document("corpus://notes/a.md")
        assert page is not None and page.text == "mine"
        docs = await online_view.get_document("corpus://python-docs/topics/pass")  # the Python docs are corpus URLs
        assert docs is not None and docs.text == "pydoc"
        assert (await corpus.get_document("https://example.org/x.html")) is not None  # offline runs see it
    finally:
        await pool.close()
