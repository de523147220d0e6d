"""The eval gate's LLM-judge path through the real OpenAI client, against a local fake server (issue 13, 6).

Research runs and the `critic` evaluator (`evals._evaluators.LLMCritic`) resolve their models alike, through
`agent.models.resolve_model` with `Settings()`: with RESEARCH_AGENT_OPENAI_BASE_URL set, `openai:NAME` and
`openai-chat:NAME` talk Chat Completions to that server (here the fake, tests/_fake_openai.py) and
`openai-responses:NAME` its Responses API; the SDK's own retries are off and transient errors are retried
by the project's tenacity transport (RESEARCH_AGENT_PROVIDER_MAX_RETRIES / _MAX_WAIT_SECONDS, kept small
here). OPENAI_BASE_URL and OPENAI_API_KEY point at a decoy that must never be asked. Nothing is replaced in
process: the fake answers the research conversation, and the judge's grading request with a score that a
test scripts (`FakeOpenAI.judge`), so the scores the gate decides on can be traced to what the judge said.

The cases search a corpus collection of their own (one fixture page carrying the fake's quote), on fresh
databases of the session's PostgreSQL server; the whole test runs with non-local connections refused.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from evals import ABOptions, SuiteOptions, run_ab, run_suite
from tests._fake_openai import CHAT_PATH, FakeOpenAI, Fault, JudgeCall, request_model, request_text
from tests._http_server import LocalHTTPServer, Request
from tests._no_network.sitecustomize import refused_network

DATASET = "judged"
COLLECTION = "judged-quux"
PAGE_URL = f"corpus://{COLLECTION}/quux-client.md"
TITLE = "quux client settings"
QUOTE = "The quux client waits 45 seconds for a response before it gives up on a request."
WRONG = "The quux client never times out; it waits for a response forever."
QUESTIONS = {
    "timeout": "How long does the quux client wait for a response before it gives up?",
    "give-up": "When does the quux client give up on a request?",
    "seconds": "How many seconds does a quux client request wait for a response?",
    "default-wait": "What is the default wait of the quux client before a request fails?",
    "patience": "How patient is the quux client with a slow server?",
    "limit": "Is there a limit on how long the quux client waits for a reply?",
}
GOOD, BAD, JUDGE = "fake-good", "fake-bad", "fake-judge"
MAX_RETRIES = 2  # RESEARCH_AGENT_PROVIDER_MAX_RETRIES: attempts per request are 1 + this
MAX_WAIT = 0.3  # RESEARCH_AGENT_PROVIDER_MAX_WAIT_SECONDS: the longest backoff between attempts
API_KEY = "test-key"
DECOY = "/decoy/v1"  # OPENAI_BASE_URL's path: pydantic-ai's own OpenAI provider would send here
_INPUT_SECTION = re.compile(r"<Input>\n(.*?)\n</Input>", re.DOTALL)


def write_dataset(directory: Path, names: list[str]) -> Path:
    """A corpus dataset: every case searches one collection holding the page the fake quotes."""
    document = {
        "url": PAGE_URL,
        "title": TITLE,
        "body": f"{QUOTE}\nSet QUUX_TIMEOUT to change how long the quux client waits for a response.\n",
    }
    cases = [
        {
            "name": name,
            "inputs": {"question": QUESTIONS[name], "collection": COLLECTION, "documents": [document]},
            "metadata": {"sources": [PAGE_URL]},
        }
        for name in names
    ]
    data = {"name": DATASET, "evaluators": ["AnswerOutcome", "CitationGrounding", "Trajectory"], "cases": cases}
    path = directory / f"{DATASET}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def graded_question(text: str) -> str:
    """The question a judge request carries, from pydantic-evals' <Input> section."""
    section = _INPUT_SECTION.search(text)
    assert section is not None, text[:300]
    return str(json.loads(section.group(1))["question"])


def case_named(text: str) -> str:
    """The case whose question a grading request's text carries."""
    question = graded_question(text)
    return next(name for name, asked in QUESTIONS.items() if asked == question)


def case_of(call: JudgeCall) -> str:
    return case_named(call.text)


def judge_requests(server: LocalHTTPServer, path: str = CHAT_PATH) -> list[Request]:
    """Every request (answered or not) the judge model sent to `path`, in arrival order."""
    return [r for r in server.requests if r.path == path and request_model(r) == JUDGE]


@pytest.fixture
def fake(http_server: LocalHTTPServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeOpenAI]:
    """The fake serving research models and the judge, both resolved through `agent.models`."""
    server = FakeOpenAI(http_server, page_url=PAGE_URL, quote=QUOTE, title=TITLE)
    # Research runs (evals._task.open_environment) and the judge (LLMCritic) both read `Settings`, that is
    # the RESEARCH_AGENT_* variables. The plain OpenAI variables point at a decoy with no route: a judge
    # resolved by pydantic-ai's own provider would send there (and get 404s), which teardown checks.
    monkeypatch.setenv("RESEARCH_AGENT_OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("RESEARCH_AGENT_OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", http_server.url(DECOY))
    monkeypatch.setenv("OPENAI_API_KEY", "decoy-key")
    monkeypatch.setenv("RESEARCH_AGENT_PROVIDER_MAX_RETRIES", str(MAX_RETRIES))
    monkeypatch.setenv("RESEARCH_AGENT_PROVIDER_MAX_WAIT_SECONDS", str(MAX_WAIT))
    monkeypatch.setenv("RESEARCH_AGENT_MODEL_PRICES", '{"openai:*": {"input_per_mtok": 1, "output_per_mtok": 4}}')
    # The run's own critic would ask the research model to grade each report too; this file is about
    # the eval's judge, so every grading request the fake sees is the judge's.
    monkeypatch.setenv("RESEARCH_AGENT_CRITIC_MODEL", "off")
    for name in ("RESEARCH_AGENT_FALLBACK_MODELS", "RESEARCH_AGENT_TOOL_POLICY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    try:
        with refused_network(tmp_path / "network.log"):
            yield server
    finally:
        server.release.set()
    assert not (tmp_path / "network.log").exists(), (tmp_path / "network.log").read_text()
    assert not [r.path for r in http_server.requests if r.path.startswith(DECOY)]
    assert {r.headers.get("authorization") for r in http_server.requests} <= {f"Bearer {API_KEY}"}


@pytest.mark.parametrize(
    ("judge_model", "api"),
    [("openai:fake-judge", "chat"), ("openai-chat:fake-judge", "chat"), ("openai-responses:fake-judge", "responses")],
    ids=["openai", "openai-chat", "openai-responses"],
)
async def test_critic_scores_are_what_the_judge_returned(
    fake: FakeOpenAI, postgres_url: str, tmp_path: Path, judge_model: str, api: str
) -> None:
    names = ["timeout", "give-up", "seconds", "default-wait"]
    scripted = {"timeout": 0.75, "give-up": 0.8, "seconds": 0.9, "default-wait": 0.95}
    by_question = {QUESTIONS[name]: score for name, score in scripted.items()}
    fake.judge = lambda model, text: by_question[graded_question(text)]
    baselines = tmp_path / "baselines"
    baselines.mkdir()

    result = await run_suite(
        SuiteOptions(
            model=f"openai:{GOOD}",
            judge_model=judge_model,
            datasets=[write_dataset(tmp_path, names)],
            server_url=postgres_url,
            baseline_dir=baselines,
            max_concurrency=4,
        )
    )

    (dataset,) = result.datasets
    cases = {case.name: case for case in dataset.cases}
    assert sorted(cases) == sorted(names)
    for name, case in cases.items():
        assert case.errors == []
        assert [out.answer for out in case.outputs] == [QUOTE]
        assert case.scores["critic"] == [scripted[name]]
        assert case.reasons["critic"] == [f"fake judge {JUDGE}: score {scripted[name]:g}"]
        assert case.scores["grounding"] == [1.0] and case.scores["trajectory"] == [1.0]
    # One grading request per case run, to the judge model configured, over the API its name selects on an
    # OpenAI-compatible server (as for a research model), grading the answer the run gave; the research
    # model was never asked to grade anything.
    judged = fake.judged()
    assert len(judged) == len(names)
    assert {(call.model, call.api, call.tool) for call in judged} == {(JUDGE, api, "final_result")}
    assert Counter(case_of(call) for call in judged) == Counter(names)
    assert all(call.answer == QUOTE for call in judged)
    assert {call.arguments["score"] for call in judged} == set(scripted.values())
    assert all(call.arguments["pass"] is True for call in judged)
    assert [c.status for c in fake.attempts(model=JUDGE)] == [200] * len(names)
    path = CHAT_PATH if api == "chat" else "/v1/responses"
    sent = judge_requests(fake.server, path)
    assert len(sent) == len(names)  # every judge request went to the fake at RESEARCH_AGENT_OPENAI_BASE_URL
    assert {r.headers.get("authorization") for r in sent} == {f"Bearer {API_KEY}"}  # with its key
    assert Counter(c.status for c in fake.attempts(model=GOOD)) == Counter({200: 4 * len(names)})
    assert result.judge_version.endswith(f"({judge_model})")
    assert result.passed, result.failures  # critic mean 0.85 ≥ its 0.70 threshold; no baseline to regress from


async def test_ab_with_the_same_model_on_both_sides_passes(fake: FakeOpenAI, postgres_url: str, tmp_path: Path) -> None:
    names = list(QUESTIONS)

    result = await run_ab(
        ABOptions(
            model=f"openai:{GOOD}",
            against_model=f"openai:{GOOD}",
            datasets=[write_dataset(tmp_path, names)],
            repeat=1,
            judge_model=f"openai:{JUDGE}",
            server_url=postgres_url,
            max_concurrency=4,
        )
    )

    assert result.passed, result.failures
    assert result.notes == []  # in particular the critic was compared: both sides have the same judge
    (dataset,) = result.datasets
    for side in (dataset.base, dataset.current):
        assert {name: case.scores["critic"] for name, case in side.items()} == {name: [1.0] for name in names}
        assert all(case.answers == [QUOTE] for case in side.values())
    critic = result.family[f"{DATASET}/critic"]
    assert (critic.cases, critic.baseline, critic.current, critic.mean_diff) == (len(names), 1.0, 1.0, 0.0)
    assert not critic.regressed and not result.family.regressed
    judged = fake.judged()
    assert len(judged) == 2 * len(names)  # one grading per case run, on each side
    assert {(call.model, call.api) for call in judged} == {(JUDGE, "chat")}
    assert Counter(case_of(call) for call in judged) == Counter({name: 2 for name in names})


async def test_ab_where_the_current_model_answers_wrongly_regresses_on_the_critic(
    fake: FakeOpenAI, postgres_url: str, tmp_path: Path
) -> None:
    names = list(QUESTIONS)
    kept = {"timeout"}  # the bad model still answers this one right; every other case wrongly
    fake.answers[BAD] = lambda question: None if any(QUESTIONS[name] in question for name in kept) else WRONG

    result = await run_ab(
        ABOptions(
            model=f"openai:{BAD}",
            against_model=f"openai:{GOOD}",
            datasets=[write_dataset(tmp_path, names)],
            repeat=2,
            judge_model=f"openai:{JUDGE}",
            server_url=postgres_url,
            max_concurrency=4,
        )
    )

    assert not result.passed
    (dataset,) = result.datasets
    assert {n: c.scores["critic"] for n, c in dataset.base.items()} == {n: [1.0, 1.0] for n in names}
    assert {n: c.scores["critic"] for n, c in dataset.current.items()} == {
        n: [1.0, 1.0] if n in kept else [0.0, 0.0] for n in names
    }
    assert {n: c.answers for n, c in dataset.current.items()} == {
        n: [QUOTE, QUOTE] if n in kept else [WRONG, WRONG] for n in names
    }
    # Only the judge tells the sides apart: the wrong answers still cite the page's quote, and the
    # dataset asks for no key facts, so grounding, trajectory and outcome are equal on both sides.
    regressed = [e.name for e in result.family.evaluators if e.regressed]
    assert regressed == [f"{DATASET}/critic"]
    critic = result.family[f"{DATASET}/critic"]
    assert critic.mean_diff == pytest.approx(-(len(names) - len(kept)) / len(names))
    assert any(failure.startswith(f"{DATASET}/critic regressed") for failure in result.failures)
    judged = fake.judged()
    assert len(judged) == 2 * 2 * len(names)  # both sides, two rounds, one grading per case run
    wrong = [call for call in judged if call.answer == WRONG]
    assert len(wrong) == 2 * (len(names) - len(kept)) and all(call.score == 0.0 for call in wrong)
    assert {call.api for call in judged} == {"chat"}


async def test_a_judge_500_is_retried_by_the_projects_transport(
    fake: FakeOpenAI, http_server: LocalHTTPServer, postgres_url: str, tmp_path: Path
) -> None:
    names = ["timeout", "give-up", "seconds"]
    # Retry-After asks for 30 s: the transport honours it only up to provider_max_wait_seconds (MAX_WAIT).
    fake.inject(Fault(500, "the judge is overloaded", headers={"Retry-After": "30"}), model=JUDGE)
    baselines = tmp_path / "baselines"
    baselines.mkdir()

    result = await run_suite(
        SuiteOptions(
            model=f"openai:{GOOD}",
            judge_model=f"openai:{JUDGE}",
            datasets=[write_dataset(tmp_path, names)],
            server_url=postgres_url,
            baseline_dir=baselines,
            max_concurrency=1,  # one grading at a time: the attempt after the 500 is its retry
        )
    )

    # The project's tenacity transport (agent.models.retrying_http_client) hides one 500 from the gate:
    # every case is scored by the judge, nothing is recorded as an error.
    (dataset,) = result.datasets
    assert {case.name: case.scores["critic"] for case in dataset.cases} == {name: [1.0] for name in names}
    assert all(case.errors == [] for case in dataset.cases)
    attempts = fake.attempts(model=JUDGE)
    assert [a.status for a in attempts] == [500] + [200] * len(names)
    waited = attempts[1].at - attempts[0].at
    assert MAX_WAIT * 0.95 <= waited < 5, waited  # backed off, for max_wait rather than Retry-After's 30 s
    sent = judge_requests(http_server)
    assert len(sent) == 1 + len(names)
    # The retry resent the very same request below the SDK (built with max_retries=0): its retry-count
    # header never moves, where an SDK retry would have sent "1"; and the second grading is the same case.
    assert [r.headers.get("x-stainless-retry-count") for r in sent] == ["0"] * (1 + len(names))
    assert sent[1].body == sent[0].body
    assert [case_named(request_text(r)) for r in sent] == [names[0], *names]
    assert len(fake.judged()) == len(names)
    assert result.passed, result.failures


async def test_a_judge_that_keeps_failing_scores_zero_visibly(
    fake: FakeOpenAI, http_server: LocalHTTPServer, postgres_url: str, tmp_path: Path
) -> None:
    names = ["timeout", "give-up"]
    fake.rule = lambda model, step: Fault(500, "the judge is down") if model == JUDGE else None
    baselines = tmp_path / "baselines"
    baselines.mkdir()

    result = await run_suite(
        SuiteOptions(
            model=f"openai:{GOOD}",
            judge_model=f"openai:{JUDGE}",
            datasets=[write_dataset(tmp_path, names)],
            server_url=postgres_url,
            baseline_dir=baselines,
            max_concurrency=4,
        )
    )

    # Retries exhausted (1 + MAX_RETRIES attempts per case, by the project's transport), the evaluator fails;
    # `evals._suite.collect` scores that 0 with the error as its reason, and the gate fails on the critic's
    # threshold.
    (dataset,) = result.datasets
    for case in dataset.cases:
        assert case.scores["critic"] == [0.0]
        (reason,) = case.reasons["critic"]
        assert reason.startswith("evaluator failed:") and "500" in reason and "the judge is down" in reason
        assert len(case.errors) == 1 and case.errors[0].startswith("critic:")
        assert case.scores["grounding"] == [1.0]  # the research itself was fine
    assert Counter(a.status for a in fake.attempts(model=JUDGE)) == Counter({500: (1 + MAX_RETRIES) * len(names)})
    sent = judge_requests(http_server)
    assert Counter(case_named(request_text(r)) for r in sent) == Counter({name: 1 + MAX_RETRIES for name in names})
    assert {r.headers.get("x-stainless-retry-count") for r in sent} == {"0"}  # no SDK retry on top
    assert fake.judged() == []
    assert not result.passed
    assert any(f"{DATASET}: critic 0.000 is below its threshold" in failure for failure in result.failures)


async def test_an_ab_whose_judge_is_down_on_both_sides_does_not_pass(
    fake: FakeOpenAI, postgres_url: str, tmp_path: Path
) -> None:
    names = ["timeout", "give-up", "seconds"]
    fake.rule = lambda model, step: Fault(500, "the judge is down") if model == JUDGE else None

    result = await run_ab(
        ABOptions(
            model=f"openai:{GOOD}",
            against_model=f"openai:{GOOD}",
            datasets=[write_dataset(tmp_path, names)],
            repeat=1,
            judge_model=f"openai:{JUDGE}",
            server_url=postgres_url,
            max_concurrency=4,
        )
    )

    (dataset,) = result.datasets
    for side in (dataset.base, dataset.current):
        for case in side.values():  # recorded, per case...
            assert case.scores["critic"] == [0.0]
            assert len(case.errors) == 1 and "the judge is down" in case.errors[0]
    assert fake.judged() == []
    assert Counter(a.status for a in fake.attempts(model=JUDGE)) == Counter({500: 2 * (1 + MAX_RETRIES) * len(names)})
    assert not result.family[f"{DATASET}/critic"].tested  # 0 vs 0 everywhere: nothing for the test to find...
    # ...so the failures themselves fail the A/B: every one listed, and named among its failures.
    assert sorted(error.partition(": ")[0] for error in result.errors) == sorted(
        f"{side}:{DATASET}/{name}" for side in ("base", "current") for name in names
    )
    assert all(": critic: " in error and "the judge is down" in error for error in result.errors)
    assert not result.passed, "an A/B in which the judge never answered must not pass"
    (failure,) = [f for f in result.failures if "failed" in f]
    assert failure.startswith(
        f"{2 * len(names)} run(s) or evaluator(s) failed, so those cases were not judged; first: "
    ), result.failures
    assert len(result.failures) == 1, result.failures  # nothing regressed: the errors alone fail it
