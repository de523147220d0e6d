-- Webhooks (issue 15, point 5; docs/decisions/0024-webhooks.md): a transactional outbox.
--
-- `webhook_events` holds one row per event. The triggers below write the events that announce a state change
-- in the same transaction as the change itself, whichever statement makes it (`runs.finish`, the attempt cap's
-- `fail_exhausted`, parking a run for approval, expiring a request, flipping the kill switch), so an event is
-- never lost and never announces a change that rolled back. Other events (`alert.fired`) are written with
-- `agent.durable.webhooks.enqueue_event` inside the caller's transaction.
--
-- `webhook_deliveries` holds one row per event and destination, created when a worker's dispatcher takes the
-- event (`dispatched_at`) for the URLs in its RESEARCH_AGENT_WEBHOOKS. A destination is the SHA-256 of its URL
-- plus the URL's origin as a label: webhook URLs often carry a token in their path, which stays out of the
-- database. A delivery is claimed by pushing `next_attempt_at` past the request's time limit (a visibility
-- timeout): a worker that dies mid-delivery leaves it to be claimed again once that passes (at least once).

CREATE TABLE webhook_events (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    type          text NOT NULL CHECK (type ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$'),
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz
);
CREATE INDEX webhook_events_undispatched_idx ON webhook_events (created_at) WHERE dispatched_at IS NULL;
CREATE INDEX webhook_events_created_idx ON webhook_events (created_at);

CREATE TABLE webhook_deliveries (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id          uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    destination       text NOT NULL,
    destination_label text NOT NULL,
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    claimed_by        text,
    last_attempt_at   timestamptz,
    last_status       integer,
    last_error        text,
    delivered_at      timestamptz,
    gave_up_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, destination)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;

-- run.finished: a run reaching a terminal status, however it got there.
CREATE FUNCTION research_agent_webhook_run_finished() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO webhook_events (type, payload) VALUES ('run.finished', jsonb_build_object(
        'run_id', NEW.id,
        'status', NEW.status,
        'stop_reason', NEW.stop_reason,
        'cost_usd', NEW.cost_usd::text,
        'cost_known', NEW.cost_known,
        'answered', NEW.report IS NOT NULL AND coalesce((NEW.report ->> 'answered')::boolean, true),
        'attempts', NEW.attempts,
        'elapsed_seconds', NEW.elapsed_seconds,
        'finished_at', NEW.finished_at));
    RETURN NULL;
END;
$$;
CREATE TRIGGER runs_webhook_finished AFTER UPDATE OF status ON runs FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('completed', 'failed', 'budget_exceeded', 'killed', 'cancelled'))
    EXECUTE FUNCTION research_agent_webhook_run_finished();

-- approval.requested / approval.expired: a request parked for a human, and one nobody decided in time.
CREATE FUNCTION research_agent_webhook_approval() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO webhook_events (type, payload) VALUES (
        CASE WHEN TG_OP = 'INSERT' THEN 'approval.requested' ELSE 'approval.expired' END,
        jsonb_build_object(
            'approval_id', NEW.id,
            'run_id', NEW.run_id,
            'tool', NEW.tool,
            'args', NEW.args,
            'reason', NEW.reason,
            'status', NEW.status,
            'requested_at', NEW.requested_at,
            'expires_at', NEW.expires_at,
            'decided_at', NEW.decided_at));
    RETURN NULL;
END;
$$;
CREATE TRIGGER approvals_webhook_requested AFTER INSERT ON approvals FOR EACH ROW
    WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION research_agent_webhook_approval();
CREATE TRIGGER approvals_webhook_expired AFTER UPDATE OF status ON approvals FOR EACH ROW
    WHEN (OLD.status = 'pending' AND NEW.status = 'expired')
    EXECUTE FUNCTION research_agent_webhook_approval();

-- kill_switch.changed: the shared switch turned on or off (setting it to what it already is changes nothing).
CREATE FUNCTION research_agent_webhook_kill_switch() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.name <> 'kill_switch' THEN
        RETURN NULL;
    END IF;
    IF (TG_OP = 'INSERT' AND NOT NEW.enabled) OR (TG_OP = 'UPDATE' AND OLD.enabled = NEW.enabled) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_events (type, payload) VALUES ('kill_switch.changed', jsonb_build_object(
        'enabled', NEW.enabled,
        'reason', NEW.reason,
        'updated_at', NEW.updated_at));
    RETURN NULL;
END;
$$;
CREATE TRIGGER control_flags_webhook_kill_switch AFTER INSERT OR UPDATE ON control_flags FOR EACH ROW
    EXECUTE FUNCTION research_agent_webhook_kill_switch();
