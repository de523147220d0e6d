"""Output guardrails: personal data and secrets redacted from reports, logs and spans, and counted.

The detectors (a regex per shape, a validity check where a shape alone is too loose, and the
`[REDACTED:<kind>]` replacement) are the one table in `tools.secrets`, which the tool-call audit and the
telemetry scrubber (`agent.telemetry`) use too; this module applies it to reports and counts what the
scrubber redacted.
"""

from __future__ import annotations

from collections import Counter

from agent.report import ResearchReport
from tools.secrets import DETECTOR_KINDS, redact_text

__all__ = ["DETECTOR_KINDS", "SCRUBBED", "redact_report", "redact_text"]

SCRUBBED: Counter[str] = Counter()
"""Redactions made by the telemetry scrubber in this process (spans and logs), by kind."""


def redact_report(report: ResearchReport) -> tuple[ResearchReport, Counter[str]]:
    """Redact every text field of a report.

    Run this after citation verification: a redacted quote no longer matches its page verbatim.
    """
    counts: Counter[str] = Counter()

    def clean(text: str) -> str:
        redacted, found = redact_text(text)
        counts.update(found)
        return redacted

    citations = [
        citation.model_copy(
            update={"url": clean(citation.url), "title": clean(citation.title), "quote": clean(citation.quote)}
        )
        for citation in report.citations
    ]
    redacted = report.model_copy(
        update={
            "answer": clean(report.answer),
            "citations": citations,
            "unresolved": [clean(item) for item in report.unresolved],
        }
    )
    return redacted, counts
