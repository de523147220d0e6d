"""Logfire/OpenTelemetry set-up: spans for runs, steps, model requests, tool calls, HTTP and SQL.

Nothing leaves the machine unless a Logfire token is present (`send_to_logfire='if-token-present'`).

Scrubbing (`scrubbing_options`) redacts the shared table's shapes (`tools.secrets`) from every attribute
logfire scrubs, only the matched part. Logfire exempts some attributes from scrubbing altogether
(`SAFE_KEYS`): among them the ones that carry URLs (`http.url`, `http.target`, `url.full`...) and the
model's response (`gen_ai.output.messages`). Those are taken off the exemption here: a URL attribute
keeps its host and path with its password, secret-named query parameters and secret shapes masked, and
a response keeps its words with secret shapes redacted. The history attributes (`gen_ai.input.messages`,
`pydantic_ai.all_messages`) stay exempt: what they record was redacted before it entered the history
(the question at submission, tool results in the tools, the model's responses in the policy guard), and
rescanning the whole history on every model request would cost the event loop time that grows with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import logfire

from agent.guardrails.redaction import SCRUBBED, redact_text
from agent.settings import Settings
from tools import redact_url
from tools.secrets import TRIGGERS

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader

URL_ATTRIBUTES: Final = frozenset({"http.url", "http.target", "url.full", "url.path", "url.query"})
SCRUBBED_MESSAGE_ATTRIBUTES: Final = frozenset({"gen_ai.output.messages"})
_URL_TRIGGERS: Final = (r"^[a-z][a-z0-9+.-]*://", r"^/")
"""A value that is a URL or a path is handed to `_scrub`, which masks what a URL can carry."""

_configured = False


def configure_telemetry(
    settings: Settings, *, console: bool = False, metric_readers: Sequence[MetricReader] = ()
) -> None:
    """Idempotent: the first call wins (tests configure their own capture first).

    `metric_readers` (the worker's Prometheus endpoint, `agent.metrics.start_prometheus`) read every metric
    alongside logfire's own exporter; with them, histograms use explicit buckets (`agent.metrics.metrics_options`).
    """
    global _configured
    if _configured:
        return
    _configured = True
    metrics: logfire.MetricsOptions | None = None
    if metric_readers:  # metrics hook
        from agent.metrics import metrics_options

        metrics = metrics_options(readers=metric_readers)
    logfire.configure(
        send_to_logfire="if-token-present",
        service_name=settings.service_name,
        console=False if not console else None,
        inspect_arguments=False,
        scrubbing=scrubbing_options(),
        metrics=metrics,
    )
    logfire.instrument_pydantic_ai()
    logfire.instrument_httpx()
    logfire.instrument_asyncpg()


# Cheap shapes that make logfire hand a value to `_scrub`, which then redacts precisely: one per detector
# of the shared table (`tools.secrets`), so a new detector is scrubbed from spans too; and URLs.
_OUR_TRIGGERS: Final = (*TRIGGERS, *_URL_TRIGGERS)
_TRIGGER = re.compile("|".join(_OUR_TRIGGERS), re.IGNORECASE | re.DOTALL)
_URL = re.compile("|".join(_URL_TRIGGERS), re.IGNORECASE)


def scrubbing_options() -> logfire.ScrubbingOptions:
    """Logfire scrubbing that redacts only the sensitive part of a value and counts it in `SCRUBBED`.

    Logfire's default patterns (`password`, `session`...) still scrub whole values as before, except in
    URL and model-response attributes (partial only). Also takes those attributes off logfire's exemption.
    """
    _scrub_exempt_attributes()
    return logfire.ScrubbingOptions(callback=_scrub, extra_patterns=list(_OUR_TRIGGERS))


def _scrub_exempt_attributes() -> None:
    """Make logfire scrub the URL and model-response attributes it exempts by default.

    logfire has no option for this: its exemption list is a class attribute of its scrubber, read on every
    span. tests/test_secrets_leave_nothing.py fails if a logfire upgrade moves it.
    """
    from logfire._internal.scrubbing import BaseScrubber  # private: see above

    BaseScrubber.SAFE_KEYS.difference_update(URL_ATTRIBUTES | SCRUBBED_MESSAGE_ATTRIBUTES)


def _scrub(match: logfire.ScrubMatch) -> object:
    value = match.value
    attribute = str(match.path[1]) if len(match.path) > 1 and match.path[0] == "attributes" else ""
    partial_only = attribute in URL_ATTRIBUTES or attribute in SCRUBBED_MESSAGE_ATTRIBUTES
    if isinstance(value, str) and match.pattern_match.string is value:  # the value matched, not its key
        redacted, counts = redact_text(redact_url(value) if _URL.match(value) else value)
        if counts or redacted != value:
            SCRUBBED.update(counts)
            return redacted
        if partial_only or _TRIGGER.fullmatch(match.pattern_match.group(0)):
            return value  # one of our shapes but nothing real (a non-Luhn number...), or a URL: keep it
    return None  # logfire's own patterns (or a secret-named key): its default, whole-value scrubbing
