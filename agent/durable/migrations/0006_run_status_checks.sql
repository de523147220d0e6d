-- A run's status and stop reason, checked by the database against the types the code writes:
-- `RunStatus` and `StopReason` in agent/config.py (the stop reason composes `budgets.CapReason`).
-- tests/test_store.py asserts these lists equal those Literals, so the two cannot drift.

ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN (
    'queued', 'running', 'completed', 'failed', 'budget_exceeded', 'killed', 'awaiting_approval'));

-- Every value any version has written; NULL while a run is queued or running.
ALTER TABLE runs ADD CONSTRAINT runs_stop_reason_check CHECK (stop_reason IS NULL OR stop_reason IN (
    'turns', 'tokens', 'wall_time', 'cost', 'tool_calls', 'loop', 'daily_cap', 'kill_switch',
    'completed', 'error', 'provider_error', 'internal_error', 'approval_required'));
