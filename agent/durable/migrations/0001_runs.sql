-- Runs, their committed messages and steps, the tool-effect ledger, fetched sources and the page cache.

CREATE TABLE runs (
    id               uuid PRIMARY KEY,
    question         text NOT NULL,
    status           text NOT NULL CHECK (status IN (
                         'queued', 'running', 'completed', 'failed',
                         'budget_exceeded', 'killed', 'awaiting_approval')),
    stop_reason      text,
    error            text,
    config           jsonb NOT NULL,
    model            text NOT NULL,
    prompt_version   text NOT NULL,
    plan             jsonb,
    report           jsonb,
    partial          jsonb,
    usage            jsonb NOT NULL DEFAULT '{}'::jsonb,
    requests         integer NOT NULL DEFAULT 0,
    tool_calls       integer NOT NULL DEFAULT 0,
    input_tokens     bigint NOT NULL DEFAULT 0,
    output_tokens    bigint NOT NULL DEFAULT 0,
    cost_usd         numeric(14, 8) NOT NULL DEFAULT 0,
    cost_known       boolean NOT NULL DEFAULT true,
    elapsed_seconds  double precision NOT NULL DEFAULT 0,
    message_count    integer NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX runs_claimable_idx ON runs (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX runs_created_idx ON runs (created_at DESC);

-- One row per pydantic-ai message, in order. Written only inside a turn commit.
CREATE TABLE run_messages (
    run_id     uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq        integer NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('request', 'response')),
    message    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);

-- Human-readable steps (plan, model turn, tool call, events), written in the same commit as messages.
CREATE TABLE run_steps (
    run_id        uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq           integer NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('plan', 'model', 'tool', 'event')),
    name          text NOT NULL,
    tool_call_id  text,
    args          jsonb,
    summary       text NOT NULL DEFAULT '',
    ok            boolean NOT NULL DEFAULT true,
    input_tokens  integer NOT NULL DEFAULT 0,
    output_tokens integer NOT NULL DEFAULT 0,
    cost_usd      numeric(14, 8),
    latency_ms    double precision,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);

-- Tool-effect ledger: a tool call that finished is never executed again for the same run.
CREATE TABLE tool_effects (
    run_id       uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    tool_call_id text NOT NULL,
    tool_name    text NOT NULL,
    args         jsonb,
    result       jsonb,
    latency_ms   double precision NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, tool_call_id)
);

-- Pages a run fetched, in full: citations are verified against these.
CREATE TABLE run_sources (
    run_id     uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    url        text NOT NULL,
    final_url  text NOT NULL,
    title      text NOT NULL DEFAULT '',
    text       text NOT NULL,
    fetched_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, url)
);

CREATE TABLE page_cache (
    url          text PRIMARY KEY,
    final_url    text NOT NULL,
    status_code  integer NOT NULL,
    content_type text NOT NULL,
    title        text NOT NULL DEFAULT '',
    text         text NOT NULL,
    fetched_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
