-- Alerts (issue 15, point 2; agent/durable/alerts.py, docs/decisions/0027-alerts-and-run-events.md): what
-- each rule last was, so that a breach fires once, not once per check or per worker.
--
-- A rule that breaches flips `breached` from false (or no row) to true with a single conditional upsert; only
-- the statement that flips it returns a row, and that transaction also writes the `alert.fired` event
-- (webhook_events). A rule that holds again flips it back, which re-arms it. Spend alerts are keyed by the UTC
-- day (`spend_80:2026-12-02`) and never re-armed: once per day each. A rule that could not be evaluated (too
-- few runs, no daily cap) leaves its row as it was.
CREATE TABLE alert_state (
    rule       text PRIMARY KEY,
    breached   boolean NOT NULL,
    value      double precision,
    threshold  double precision NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    fired_at   timestamptz,
    fired_by   text
);
