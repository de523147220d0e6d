"""Logfire/OpenTelemetry set-up: spans for runs, steps, model requests, tool calls, HTTP and SQL.

Nothing leaves the machine unless a Logfire token is present (`send_to_logfire='if-token-present'`).
"""

from __future__ import annotations

import re

import logfire

from agent.guardrails.redaction import SCRUBBED, redact_text
from agent.settings import Settings
from tools.secrets import TRIGGERS

_configured = False


def configure_telemetry(settings: Settings, *, console: bool = False) -> None:
    """Idempotent: the first call wins (tests configure their own capture first)."""
    global _configured
    if _configured:
        return
    _configured = True
    logfire.configure(
        send_to_logfire="if-token-present",
        service_name=settings.service_name,
        console=False if not console else None,
        inspect_arguments=False,
        scrubbing=scrubbing_options(),
    )
    logfire.instrument_pydantic_ai()
    logfire.instrument_httpx()
    logfire.instrument_asyncpg()


# Cheap shapes that make logfire hand a value to `_scrub`, which then redacts precisely: one per detector
# of the shared table (`tools.secrets`), so a new detector is scrubbed from spans too.
_TRIGGER = re.compile("|".join(TRIGGERS), re.IGNORECASE | re.DOTALL)


def scrubbing_options() -> logfire.ScrubbingOptions:
    """Logfire scrubbing that redacts only the sensitive part of a value and counts it in `SCRUBBED`.

    Logfire's default patterns (`password`, `session`...) still scrub whole values as before.
    """
    return logfire.ScrubbingOptions(callback=_scrub, extra_patterns=list(TRIGGERS))


def _scrub(match: logfire.ScrubMatch) -> object:
    value = match.value
    if isinstance(value, str):
        redacted, counts = redact_text(value)
        if counts:
            SCRUBBED.update(counts)
            return redacted
        if _TRIGGER.fullmatch(match.pattern_match.group(0)):
            return value  # one of our shapes, but nothing real (a non-Luhn number...): keep it
    return None  # logfire's own patterns: its default, whole-value scrubbing
