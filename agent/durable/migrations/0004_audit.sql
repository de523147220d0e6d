-- Tool policy audit (tools/_policy.py, agent/_policy_guard.py, docs/decisions/0010): every decision on a
-- tool call. Append-only, enforced here: triggers refuse UPDATE, DELETE and TRUNCATE for every role,
-- including the superuser the tests connect as (a REVOKE would not bind the table owner).
CREATE TABLE tool_audit (
    id         bigserial PRIMARY KEY,
    run_id     uuid NOT NULL,
    tool       text NOT NULL,
    args       jsonb NOT NULL DEFAULT '{}'::jsonb,
    decision   text NOT NULL CHECK (decision IN ('allow', 'deny', 'require_approval')),
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tool_audit_run_idx ON tool_audit (run_id, id);

CREATE FUNCTION tool_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tool_audit is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER tool_audit_no_update_delete
    BEFORE UPDATE OR DELETE ON tool_audit
    FOR EACH ROW EXECUTE FUNCTION tool_audit_append_only();

CREATE TRIGGER tool_audit_no_truncate
    BEFORE TRUNCATE ON tool_audit
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit_append_only();
