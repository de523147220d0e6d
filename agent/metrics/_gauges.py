"""The gauges read from Postgres: approvals waiting for a human and each provider model's circuit breaker.

OpenTelemetry calls a gauge's callback synchronously, on the reader's thread (the periodic exporter's, or
the Prometheus endpoint's at each scrape), where asyncpg cannot run. So a worker's `MetricsRefresher` reads
the figures on its event loop every `metrics_refresh_seconds` and publishes them; the callbacks only hand
out the latest published values. Both are fleet-wide (every worker reads the same rows): aggregate them
across workers with `max`, not `sum`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import asyncpg
from opentelemetry.metrics import CallbackOptions, ObservableGauge, Observation

from agent.durable.background import repeating
from agent.durable.providers import provider_health
from agent.durable.store.providers import ProviderState
from agent.metrics._instruments import (
    APPROVALS_PENDING,
    CIRCUIT_STATE,
    CIRCUIT_STATUS,
    PROVIDER,
    REQUEST_MODEL,
    create_gauge,
    model_attributes,
)
from agent.settings import Settings

BREAKER_STATES: Final = ("closed", "open", "half_open")
PENDING_APPROVALS_SQL: Final = "SELECT count(*) FROM approvals WHERE status = 'pending'"
"""What `stats` counts as pending (read through `approvals_pending_idx`); read-only, unlike
`ApprovalStore.pending`, which first expires the overdue requests."""


@dataclass(frozen=True, kw_only=True)
class GaugeSnapshot:
    """The gauges' values as one refresh read them."""

    approvals_pending: int
    breakers: tuple[ProviderState, ...] = ()

    def circuit_observations(self) -> list[Observation]:
        """One point per breaker and state: 1 for the state it is in, 0 for the others (a state set, as
        `hw.status` in the semantic conventions), so a dashboard can count open breakers with a sum."""
        points: list[Observation] = []
        for breaker in self.breakers:
            model = model_attributes(breaker.key)
            for state in BREAKER_STATES:
                points.append(Observation(int(breaker.state == state), {**model, CIRCUIT_STATE: state}))
        return points


@dataclass
class _Board:
    """The latest snapshot and who published it (several workers may share a process, as in tests)."""

    snapshot: GaugeSnapshot | None = None
    owner: object = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, owner: object, snapshot: GaugeSnapshot) -> None:
        with self.lock:
            self.owner, self.snapshot = owner, snapshot

    def withdraw(self, owner: object) -> None:
        """A stopped refresher's values are not reported as if they were current."""
        with self.lock:
            if self.owner is owner:
                self.owner, self.snapshot = None, None

    def current(self) -> GaugeSnapshot | None:
        with self.lock:
            return self.snapshot


_BOARD = _Board()


def _observe_approvals(options: CallbackOptions) -> Iterable[Observation]:
    snapshot = _BOARD.current()
    return [] if snapshot is None else [Observation(snapshot.approvals_pending)]


def _observe_circuits(options: CallbackOptions) -> Iterable[Observation]:
    snapshot = _BOARD.current()
    return [] if snapshot is None else snapshot.circuit_observations()


@functools.cache
def register_gauges() -> tuple[ObservableGauge, ...]:
    """Create the observable gauges once per process (their callbacks read `_BOARD`); cached, so held."""
    return (
        create_gauge(
            APPROVALS_PENDING,
            unit="{approval}",
            description="Tool calls waiting for a human decision, across the fleet.",
            callback=_observe_approvals,
        ),
        create_gauge(
            CIRCUIT_STATUS,
            unit="1",
            description=f"Each provider model's circuit breaker: 1 for its state ({CIRCUIT_STATE}), 0 for the others "
            f"(by {PROVIDER} and {REQUEST_MODEL}; a model not listed is closed).",
            callback=_observe_circuits,
        ),
    )


async def read_gauges(pool: asyncpg.Pool, settings: Settings) -> GaugeSnapshot:
    """The approvals waiting and every breaker with state worth showing, as the store has them now."""
    pending = await pool.fetchval(PENDING_APPROVALS_SQL)
    breakers = await provider_health(pool, settings=settings)
    return GaugeSnapshot(approvals_pending=int(pending or 0), breakers=tuple(breakers))


class MetricsRefresher:
    """Publishes `read_gauges` every `every_seconds` while started, the first time at once.

    Each worker runs one. A failed read (a database blip) keeps the last values and tries again at the next
    interval; an outage is not logged here (the worker's claim loop reports it once).
    """

    def __init__(self, pool: asyncpg.Pool, settings: Settings, *, every_seconds: float | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.every_seconds = settings.metrics_refresh_seconds if every_seconds is None else every_seconds
        self.refreshed = asyncio.Event()
        """Set after each successful refresh (tests wait on it; clear it to wait for the next one)."""
        self._background = repeating(
            self.refresh,
            every_seconds=self.every_seconds,
            name="metrics gauges",
            failure="could not refresh the metric gauges",
        )

    def start(self) -> None:
        register_gauges()
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()
        _BOARD.withdraw(self)

    async def refresh(self) -> GaugeSnapshot:
        """Read and publish the gauges once."""
        register_gauges()
        snapshot = await read_gauges(self.pool, self.settings)
        _BOARD.publish(self, snapshot)
        self.refreshed.set()
        return snapshot
