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


def test_live_progress_shows_indexing_as_a_progress_bar_and_says_when_it_starts_and_ends() -> None:
    console = Console(record=True, width=100)
    progress = LiveProgress(console)
    message = "indexing the Python reference (first use)"
    progress(ProgressEvent(run_id="r", kind="plan", message="plan recorded", detail=["What is nonlocal?"]))
    progress(ProgressEvent(run_id="r", kind="index", message=message, done=10, total=40))
    progress(ProgressEvent(run_id="r", kind="index", message=message, done=21, total=40))
    console.print(progress)
    during = console.export_text()
    assert during.count(f"{message}…") == 1  # said once, above the panel, for pipes and logs
    [bar] = [line for line in during.splitlines() if line.startswith(f"│ {message} ━")]
    assert bar.rstrip(" │").endswith("52%")
    assert "1. What is nonlocal?" in during and "0 tokens" in during

    progress(ProgressEvent(run_id="r", kind="index", message=message, done=40, total=40))
    progress(ProgressEvent(run_id="r", kind="search", message="search: nonlocal"))
    console.print(progress)
    after = console.export_text()
    assert f"{message}: done in " in after
    assert "━" not in after and "%" not in after  # the bar is gone once indexing is done
    assert "search: nonlocal" in after


def test_the_index_bar_counts_to_the_total() -> None:
    console = Console(record=True, width=100)
    for done, percent in ((0, "  0%"), (1, "  2%"), (40, "100%")):
        console.print(LiveProgress.index_bar("indexing the Python reference", done, 40))
        assert console.export_text().rstrip().endswith(percent)
