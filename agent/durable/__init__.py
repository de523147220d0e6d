"""Durable execution: the runner, the per-run session and its commits, the worker and its leases,
the run store and its numbered SQL migrations."""
