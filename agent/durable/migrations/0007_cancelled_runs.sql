-- An interrupted run (Ctrl-C during `ask`, `Runtime.interrupt`) ends `cancelled` with stop reason
-- `interrupted`: a terminal state that `runs resume` queues again from its last committed turn.
-- The lists equal `RunStatus` and `StopReason` in agent/config.py (tests/test_store.py checks it).

ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN (
    'queued', 'running', 'completed', 'failed', 'budget_exceeded', 'killed', 'cancelled', 'awaiting_approval'));

-- Every value any version has written; NULL while a run is queued or running.
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_stop_reason_check;
ALTER TABLE runs ADD CONSTRAINT runs_stop_reason_check CHECK (stop_reason IS NULL OR stop_reason IN (
    'turns', 'tokens', 'wall_time', 'cost', 'tool_calls', 'loop', 'daily_cap', 'kill_switch',
    'completed', 'error', 'provider_error', 'internal_error', 'approval_required', 'interrupted'));
