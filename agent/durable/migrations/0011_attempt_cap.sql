-- A run whose lease expired on `max_attempts` attempts in a row (its worker died, stalled or lost the
-- database each time) ends `failed` with stop reason `too_many_attempts` instead of changing hands
-- forever (issue 14). `lost_leases` counts those expiries; a deliberate requeue (resume, kill switch off,
-- an approval decided) sets it back to 0. `attempts` still counts every claim.
-- The lists equal `RunStatus` and `StopReason` in agent/config.py (tests/test_store.py).

ALTER TABLE runs ADD COLUMN lost_leases integer NOT NULL DEFAULT 0;

ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_stop_reason_check;
ALTER TABLE runs ADD CONSTRAINT runs_stop_reason_check CHECK (stop_reason IS NULL OR stop_reason IN (
    'turns', 'tokens', 'wall_time', 'cost', 'tool_calls', 'loop', 'daily_cap', 'kill_switch',
    'completed', 'error', 'provider_error', 'internal_error', 'approval_required', 'interrupted',
    'too_many_attempts'));
