-- Retention (agent/durable/store/retention.py, `research-agent runs purge`, docs/architecture.md).
--
-- Workers delete expired page_cache rows every few minutes (`purge_expired_pages`): with this index each
-- sweep reads only the expired rows instead of every cached page.
CREATE INDEX page_cache_expires_idx ON page_cache (expires_at);

-- `runs purge` deletes old finished runs with their messages, steps, sources, tool effects and approvals
-- (each references runs ON DELETE CASCADE: 0001_runs.sql, 0005_approvals_review.sql). The run's tool_audit
-- rows stay: they are the record. tool_audit has no foreign key to runs (0004_audit.sql), so no cascade
-- ever reaches it, and its append-only triggers are left exactly as they are.
