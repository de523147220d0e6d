-- Named run events (issue 15, point 6; agent/durable/store/events.py): each run's life as the events the
-- operating guides name, written by triggers in the transaction that makes the change they record, whichever
-- statement makes it. A change that rolls back (a worker that lost its lease) leaves no event; a change
-- that commits always has one.
--
--   run.started      the first claim                      run.resumed   a later claim (crash, approval, requeue)
--   cost.recorded    a committed model request             budget.warning  a run at 80 % of a cap
--   tool.blocked     the tool policy refused a call        loop.halted   the loop detector stopped the run
--   run.requeued     a stopped run queued again (`runs resume`, kill switch off): its terminal event is history
--   terminal, exactly one per finish: run.completed, run.limit_exceeded (a cap, or the daily cap),
--   run.failed, run.killed, run.cancelled
CREATE TABLE run_events (
    id         bigserial PRIMARY KEY,
    run_id     uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (name ~ '^[a-z][a-z_]*\.[a-z][a-z_]*$'),
    attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_events_run_idx ON run_events (run_id, id);
CREATE INDEX run_events_created_idx ON run_events (created_at);

CREATE FUNCTION research_agent_run_events_runs() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    finished CONSTANT text[] := ARRAY['completed', 'failed', 'budget_exceeded', 'killed', 'cancelled'];
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = 'running' AND NEW.attempts > OLD.attempts THEN
        INSERT INTO run_events (run_id, name, attributes) VALUES (NEW.id,
            CASE WHEN NEW.attempts = 1 THEN 'run.started' ELSE 'run.resumed' END,
            jsonb_build_object('attempt', NEW.attempts, 'worker', NEW.lease_owner, 'model', NEW.model));
    END IF;
    IF NEW.status = ANY (finished) AND (TG_OP = 'INSERT' OR NOT OLD.status = ANY (finished)) THEN
        IF NEW.stop_reason = 'loop' THEN
            INSERT INTO run_events (run_id, name, attributes)
            VALUES (NEW.id, 'loop.halted', jsonb_build_object('error', NEW.error));
        END IF;
        INSERT INTO run_events (run_id, name, attributes) VALUES (NEW.id,
            CASE NEW.status WHEN 'completed' THEN 'run.completed'
                            WHEN 'budget_exceeded' THEN 'run.limit_exceeded'
                            ELSE 'run.' || NEW.status END,
            jsonb_build_object(
                'status', NEW.status, 'stop_reason', NEW.stop_reason, 'cost_usd', NEW.cost_usd::text,
                'input_tokens', NEW.input_tokens, 'output_tokens', NEW.output_tokens,
                'requests', NEW.requests, 'attempts', NEW.attempts, 'elapsed_seconds', NEW.elapsed_seconds));
    ELSIF TG_OP = 'UPDATE' AND OLD.status = ANY (finished) AND NOT NEW.status = ANY (finished) THEN
        INSERT INTO run_events (run_id, name, attributes)
        VALUES (NEW.id, 'run.requeued', jsonb_build_object('was', OLD.status, 'stop_reason', OLD.stop_reason));
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER runs_run_events AFTER INSERT OR UPDATE OF status, attempts ON runs
    FOR EACH ROW EXECUTE FUNCTION research_agent_run_events_runs();

CREATE FUNCTION research_agent_run_events_steps() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.kind = 'model' THEN
        INSERT INTO run_events (run_id, name, attributes) VALUES (NEW.run_id, 'cost.recorded', jsonb_build_object(
            'step', NEW.seq, 'model', NEW.name, 'input_tokens', NEW.input_tokens,
            'output_tokens', NEW.output_tokens, 'cost_usd', NEW.cost_usd::text, 'latency_ms', NEW.latency_ms));
    ELSIF NEW.kind = 'event' AND NEW.name = 'budget_warning' THEN
        INSERT INTO run_events (run_id, name, attributes)
        VALUES (NEW.run_id, 'budget.warning', coalesce(NEW.args, '{}'::jsonb) || jsonb_build_object('step', NEW.seq));
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER run_steps_run_events AFTER INSERT ON run_steps
    FOR EACH ROW WHEN (NEW.kind = 'model' OR (NEW.kind = 'event' AND NEW.name = 'budget_warning'))
    EXECUTE FUNCTION research_agent_run_events_steps();

CREATE FUNCTION research_agent_run_events_audit() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO run_events (run_id, name, attributes)
    SELECT NEW.run_id, 'tool.blocked', jsonb_build_object('tool', NEW.tool, 'reason', NEW.reason, 'audit_id', NEW.id)
    WHERE EXISTS (SELECT 1 FROM runs WHERE id = NEW.run_id);
    RETURN NULL;
END;
$$;
CREATE TRIGGER tool_audit_run_events AFTER INSERT ON tool_audit
    FOR EACH ROW WHEN (NEW.decision = 'deny') EXECUTE FUNCTION research_agent_run_events_audit();
