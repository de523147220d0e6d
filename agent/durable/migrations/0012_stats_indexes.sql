-- Fleet statistics (`research-agent stats`, agent/durable/store/stats.py, issue 15): every figure is computed
-- in SQL over the runs created in a window (`--since 24h`), and each query reads only that window.
--
-- runs: the window is a range scan of runs_created_idx (0001_runs.sql), which already exists.
--
-- run_steps, approvals, tool_effects: a row of a run created at T was written at or after T, so the queries
-- also bound each of these tables by its own timestamp (`created_at >= window start`, `requested_at >= ...`):
-- a range scan of the indexes below, hash-joined to the window's runs, instead of a probe of the primary key
-- per run. The INCLUDE columns are what the queries read, so a vacuumed table is read from the index alone.
CREATE INDEX run_steps_stats_idx ON run_steps (created_at) INCLUDE (run_id, kind, name, ok, latency_ms)
    WHERE kind IN ('model', 'tool');
CREATE INDEX approvals_requested_idx ON approvals (requested_at) INCLUDE (run_id, status);

-- Where a successful `fetch_url` got its page: the shared page cache, the network, or the local corpus. The
-- ledger (agent/durable/ledger.py) records it with the call's result; NULL for other tools, failed fetches and
-- rows written before this migration. `stats` reports the page cache's hit rate from it.
ALTER TABLE tool_effects ADD COLUMN origin text CHECK (origin IN ('cache', 'network', 'corpus'));
CREATE INDEX tool_effects_fetch_idx ON tool_effects (created_at) INCLUDE (run_id, origin) WHERE origin IS NOT NULL;
