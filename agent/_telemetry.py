"""Logfire/OpenTelemetry set-up: spans for runs, steps, model requests, tool calls, HTTP and SQL.

Nothing leaves the machine unless a Logfire token is present (`send_to_logfire='if-token-present'`).
"""

from __future__ import annotations

import logfire

from agent.settings import Settings

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
    )
    logfire.instrument_pydantic_ai()
    logfire.instrument_httpx()
    logfire.instrument_asyncpg()
