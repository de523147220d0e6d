"""What people see: the live progress panel of `ask`."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Console

from agent.cli.render import LiveProgress
from agent.events import ProgressEvent


def test_live_progress_shows_plan_searches_fetches_tokens_and_cost() -> None:
    console = Console(record=True, width=100)
    progress = LiveProgress(console)
    progress(ProgressEvent(run_id="r", kind="plan", message="plan recorded", detail=["What is QUIC?", "Why UDP?"]))
    progress(ProgressEvent(run_id="r", kind="search", message="search: QUIC transport"))
    progress(ProgressEvent(run_id="r", kind="fetch", message="fetch: https://example.org/quic"))
    progress(
        ProgressEvent(
            run_id="r",
            kind="model",
            message="model responded",
            input_tokens=1200,
            output_tokens=34,
            cost_usd=Decimal("0.0021"),
        )
    )
    console.print(progress)
    text = console.export_text()
    for expected in ("1. What is QUIC?", "2. Why UDP?", "search: QUIC transport", "fetch: https://example.org/quic"):
        assert expected in text
    assert "1234 tokens" in text and "$0.0021" in text
