-- Provider health (issue 15, point 4; docs/decisions/0025-circuit-breaker.md): one circuit breaker per
-- provider model, and a rate-limit ledger, shared by every worker on the database. Keys are `system:model`
-- (`openai:gpt-4.1-mini`), as in `model_prices` and `rate_limits`. Every write is one atomic statement
-- (agent/durable/store/providers.py); the app role gets SELECT/INSERT/UPDATE/DELETE on both tables from
-- `research_agent_grant_app`, which `apply_migrations` runs after this migration.

CREATE TABLE provider_health (
    key text PRIMARY KEY,
    state text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    opened_at timestamptz,                      -- when it last opened: open until opened_at + the open period
    probe_until timestamptz,                    -- half-open: the one probe in flight, until then (a dead worker's
                                                -- probe expires and another may probe)
    half_open_successes integer NOT NULL DEFAULT 0 CHECK (half_open_successes >= 0),
    last_error text,
    last_failure_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (state = 'closed' OR opened_at IS NOT NULL)
);

-- Requests and tokens reserved per key and rate window (`window_start` aligned on the database's clock, so
-- every worker agrees on the window). Rows of past windows are deleted as new windows start.
CREATE TABLE provider_rate_usage (
    key text NOT NULL,
    window_start timestamptz NOT NULL,
    requests integer NOT NULL DEFAULT 0,
    tokens bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (key, window_start)
);
