-- Human approval of tool calls (agent/approvals.py) and the critic's review of a run's report.

ALTER TABLE runs ADD COLUMN review jsonb;

-- One row per tool call a run paused on. A run in `awaiting_approval` goes back to `queued` when its
-- last pending row is decided (approved, rejected, or expired by the timeout).
CREATE TABLE approvals (
    id            text PRIMARY KEY,
    run_id        uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    tool_call_id  text NOT NULL,
    tool          text NOT NULL,
    args          jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason        text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
    decided_by    text,
    note          text,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    decided_at    timestamptz,
    UNIQUE (run_id, tool_call_id)
);
CREATE INDEX approvals_pending_idx ON approvals (expires_at) WHERE status = 'pending';

-- Human decisions join the append-only audit next to the policy's own.
ALTER TABLE tool_audit DROP CONSTRAINT tool_audit_decision_check;
ALTER TABLE tool_audit ADD CONSTRAINT tool_audit_decision_check
    CHECK (decision IN ('allow', 'deny', 'require_approval', 'approved', 'rejected', 'expired'));
