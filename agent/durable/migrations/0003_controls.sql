-- Cross-run controls (agent/controls.py, docs/decisions/0007): the kill switch and the daily spend cap.

-- Operator flags shared by every process on this database. Changing one also sends
-- pg_notify('research_agent_controls', ...) in the same transaction, so listeners hear it on commit.
CREATE TABLE control_flags (
    name       text PRIMARY KEY,
    enabled    boolean NOT NULL DEFAULT false,
    reason     text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO control_flags (name, enabled) VALUES ('kill_switch', false);

-- Spend per UTC day across all runs. `reserved_usd` is the worst-case cost of model requests in
-- flight: a request reserves before it is sent and settles (spent += actual, reserved -= reserved)
-- after, so spent + reserved never exceeds the cap, however many processes share it.
CREATE TABLE daily_spend (
    day          date PRIMARY KEY,
    spent_usd    numeric(14, 8) NOT NULL DEFAULT 0,
    reserved_usd numeric(14, 8) NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Every reservation in `reserved_usd`, so that reserved_usd = sum(amount) for the day. `holder` is the
-- run: a worker killed mid-request leaves its hold here, and the run's next execution releases it
-- before reserving again. Settling deletes the hold by token, so nothing is ever released twice.
CREATE TABLE daily_spend_holds (
    token      uuid PRIMARY KEY,
    holder     text,
    day        date NOT NULL,
    amount     numeric(14, 8) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX daily_spend_holds_holder_idx ON daily_spend_holds (holder);
