"""Output guardrails: personal data and secrets never reach the stored report, the logs or the spans."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import logfire
import pytest
from logfire.testing import CaptureLogfire, IncrementalIdGenerator, TestExporter, TimeGenerator
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.api import Runtime
from agent.guardrails.redaction import SCRUBBED, redact_report, redact_text
from agent.report import Citation, ResearchReport
from agent.telemetry import scrubbing_options
from tools.secrets import DETECTOR_KINDS, DETECTORS

OPENAI = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv"
ANTHROPIC = "sk-ant-api03-Zx9yW8vU7tS6rQ5pO4nM3lK2"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
GITHUB_PAT = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv"
AWS = "AKIAIOSFODNN7EXAMPLE"
SLACK = "xoxb-1234567890-abcdefghij"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
VISA = "4111 1111 1111 1111"  # Luhn-valid test card
NOT_LUHN = "4111 1111 1111 1112"


def kinds(text: str) -> dict[str, int]:
    return dict(redact_text(text)[1])


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("mail jane.doe+news@example.co.uk today", "email"),
        (f"card {VISA} on file", "payment_card"),
        ("amex 3782-822463-10005", "payment_card"),
        ("pan 5555555555554444.", "payment_card"),
        ("ssn 123-45-6789", "us_ssn"),
        ("NINO AB 12 34 56 C", "uk_nino"),
        ("DNI 12345678Z", "es_dni"),
        ("call +1 415 555 2671 now", "phone"),
        ("call +44 20 7946 0958", "phone"),
        ("call (415) 555-2671", "phone"),
        ("call 415-555-2671", "phone"),
        ("ring 020 7946 0958", "phone"),
        (f"key {OPENAI}", "openai_key"),
        (f"key {ANTHROPIC}", "anthropic_key"),
        (f"token {GITHUB}", "github_token"),
        (f"token {GITHUB_PAT}", "github_token"),
        (f"aws {AWS}", "aws_access_key"),
        (f"slack {SLACK}", "slack_token"),
        (f"jwt {JWT}", "jwt"),
        ("Authorization: Bearer abcDEF123456ghiJKL789", "bearer_token"),
        ("url?api_key=9f86d081884c7d659a2feaa0c55ad015", "secret"),
        ('{"token": "dGhpcyBpcyBhIHNlY3JldA0123=="}', "secret"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "private_key"),
    ],
)
def test_each_detector_redacts_its_kind(text: str, kind: str) -> None:
    redacted, counts = redact_text(text)
    assert counts == {kind: 1}, counts
    assert f"[REDACTED:{kind}]" in redacted


@pytest.mark.parametrize(
    "text",
    [
        f"order {NOT_LUHN} is not a card",
        "ids 1234567890123456 and 7000000000000000",
        "timestamp 1700000000000 ms",
        "ssn-like 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567, 123-45-0000",
        "in 1999, 2004 and 2024 sales were 12,345",
        "python 3.11.4 and version 1.2.3.4 and ip 192.168.100.200",
        "dates 2024-01-15 and 15/01/2024",
        "call extension 1234 or room 555",
        "DNI 12345678A has a wrong control letter",
        "the sk-learn library and task-management",
        "a token: short, password=hunter2",
        "git is fun at scale",
        "QQ 12 34 56 C is not a valid NINO prefix",
        "format(120, '+010') gives '+000000120'",  # no country code starts with 0
    ],
)
def test_lookalikes_are_left_alone(text: str) -> None:
    assert redact_text(text) == (text, {})


def test_each_detectors_trigger_finds_its_matches() -> None:
    """The telemetry scrubber only looks closer at values a trigger matches (`tools.secrets.TRIGGERS`)."""
    samples = [
        "jane.doe+news@example.co.uk",
        VISA,
        "123-45-6789",
        "AB 12 34 56 C",
        "12345678Z",
        "+44 20 7946 0958",
        "(415) 555-2671",
        OPENAI,
        ANTHROPIC,
        GITHUB,
        GITHUB_PAT,
        "glpat-abcdefghij0123",
        AWS,
        SLACK,
        JWT,
        "Bearer abcDEF123456ghiJKL789",
        "api_key=9f86d081884c7d659a2feaa0c55ad015",
        "-----BEGIN RSA PRIVATE KEY-----",
    ]
    seen: set[str] = set()
    for detector in DETECTORS:
        for sample in samples:
            for match in detector.pattern.finditer(sample):
                seen.add(detector.kind)
                assert re.search(detector.trigger, match.group(0), re.IGNORECASE), (detector.kind, sample)
    assert seen == set(DETECTOR_KINDS)


def test_redaction_keeps_the_label_of_a_bearer_or_assignment() -> None:
    redacted, _ = redact_text("Authorization: Bearer abcDEF123456ghiJKL789 and token=abcdef0123456789abcd")
    assert redacted == "Authorization: Bearer [REDACTED:bearer_token] and token=[REDACTED:secret]"
    redacted, counts = redact_text(f"export OPENAI_API_KEY={OPENAI}")
    assert redacted == "export OPENAI_API_KEY=[REDACTED:openai_key]" and counts == {"openai_key": 1}


def test_redact_report_covers_answer_quotes_and_unresolved() -> None:
    report = ResearchReport(
        answer="Write to ops@example.com.",
        citations=[Citation(url="https://x.test/a", title="t", quote=f"pay with {VISA} please")],
        unresolved=[f"is {AWS} live?"],
    )
    redacted, counts = redact_report(report)
    assert counts == {"email": 1, "payment_card": 1, "aws_access_key": 1}
    assert redacted.answer == "Write to [REDACTED:email]."
    assert redacted.citations[0].quote == "pay with [REDACTED:payment_card] please"
    assert redacted.unresolved == ["is [REDACTED:aws_access_key] live?"]
    assert report.answer == "Write to ops@example.com."  # the input is not mutated


def _leaky_model() -> FunctionModel:
    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        args = {
            "answer": f"Contact jane@example.org, card {VISA}, key {OPENAI}.",
            "citations": [],
            "unresolved": [],
        }
        return ModelResponse(parts=[ToolCallPart(tool_name=info.output_tools[0].name, args=args)])

    return FunctionModel(respond, model_name="leaky")


async def test_a_run_stores_a_redacted_report_and_counts_it(runtime: Runtime, capfire: CaptureLogfire) -> None:
    result = await runtime.research("Who should I contact?", model=_leaky_model())
    assert result.status == "completed" and result.report is not None
    answer = result.report.answer
    assert answer == "Contact [REDACTED:email], card [REDACTED:payment_card], key [REDACTED:openai_key]."

    # The key is a secret: the policy guard redacted it from the model's response as it arrived (so the
    # history never held it); the personal data is redacted from the report, after citation checks.
    steps = (await runtime.get_run(result.run_id)).steps
    (event,) = [s for s in steps if s.name == "output_redaction"]
    assert event.kind == "event" and event.args == {"email": 1, "payment_card": 1}
    assert event.seq == max(s.seq for s in steps)

    spans = capfire.exporter.exported_spans_as_dict()
    (run_span,) = [s["attributes"] for s in spans if str(s["name"]).startswith("research run")]
    assert run_span["redactions"] == 2
    logs = [s["attributes"] for s in spans if s["name"] == "model response redacted: {redactions}"]
    assert logs and all(log["logfire.msg"] == "model response redacted: {'openai_key': 1}" for log in logs)


@pytest.fixture
def scrubbing_capture() -> Iterator[TestExporter]:
    """Logfire configured like production scrubbing, exporting to memory."""
    exporter = TestExporter()
    logfire.configure(
        send_to_logfire=False,
        console=False,
        scrubbing=scrubbing_options(),
        additional_span_processors=[SimpleSpanProcessor(exporter)],
        advanced=logfire.AdvancedOptions(id_generator=IncrementalIdGenerator(), ns_timestamp_generator=TimeGenerator()),
        metrics=False,
    )
    yield exporter


def test_spans_and_logs_are_scrubbed_partially_and_counted(scrubbing_capture: TestExporter) -> None:
    before = SCRUBBED.copy()
    with logfire.span("lookup {question}", question="mail bob@example.com", note=f"using {OPENAI} now") as span:
        span.set_attribute("detail", f"paid with {VISA}")
        span.set_attribute("harmless", f"order {NOT_LUHN} version 3.11.4")
    logfire.info("auth header {header}", header="Bearer abcDEF123456ghiJKL789")

    spans = {str(s["name"]): s["attributes"] for s in scrubbing_capture.exported_spans_as_dict()}
    lookup = spans["lookup {question}"]
    assert lookup["question"] == "mail [REDACTED:email]"
    assert lookup["note"] == "using [REDACTED:openai_key] now"
    assert lookup["detail"] == "paid with [REDACTED:payment_card]"
    assert lookup["harmless"] == f"order {NOT_LUHN} version 3.11.4"
    assert "bob@example.com" not in str(lookup["logfire.msg"])
    log = spans["auth header {header}"]
    assert "abcDEF123456ghiJKL789" not in str(log)
    counted = SCRUBBED - before
    assert counted["email"] >= 1 and counted["openai_key"] >= 1 and counted["payment_card"] >= 1, counted


async def test_partial_findings_are_redacted_too(runtime: Runtime) -> None:
    from budgets import Budget

    async def chatty(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart(f"I think jane@example.org knows; card {VISA}.")])

    result = await runtime.research("Who knows?", model=FunctionModel(chatty), budget=Budget(max_turns=1))
    assert result.status == "budget_exceeded" and result.partial is not None
    assert result.partial.notes == ["I think [REDACTED:email] knows; card [REDACTED:payment_card]."]
    steps = (await runtime.get_run(result.run_id)).steps
    (event,) = [s for s in steps if s.name == "output_redaction"]
    assert event.args == {"email": 1, "payment_card": 1}


@pytest.mark.parametrize("prose", ["bearer instruments", "the GHS-classification of hazards", "Bearer tokens"])
def test_token_shaped_prose_is_left_alone(prose: str) -> None:
    assert redact_text(prose) == (prose, Counter())
