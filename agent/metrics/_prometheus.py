"""The worker's optional Prometheus scrape endpoint, and the metric options it needs from logfire."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import logfire
from opentelemetry.sdk.metrics import Histogram
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)

from agent.errors import ConfigurationError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


def metrics_options(*, readers: Sequence[MetricReader]) -> logfire.MetricsOptions:
    """Logfire's metric options with `readers` added, and every histogram in explicit buckets.

    Logfire aggregates histograms into exponential buckets by default (a view on every histogram), which the
    Prometheus text format cannot carry: the exporter would drop them. This keeps logfire's other default
    views and replaces that one, so every reader sees the same histograms, bucketed at the boundaries each
    instrument advises (ours, and pydantic-ai's token histogram) or OpenTelemetry's defaults.
    """
    views = [
        view
        for view in logfire.MetricsOptions.DEFAULT_VIEWS
        if not isinstance(getattr(view, "_aggregation", None), ExponentialBucketHistogramAggregation)
    ]
    views.append(View(instrument_type=Histogram, aggregation=ExplicitBucketHistogramAggregation()))
    return logfire.MetricsOptions(additional_readers=list(readers), views=views)


@dataclass(frozen=True, kw_only=True)
class PrometheusEndpoint:
    """A scrape endpoint serving `reader`'s metrics at `url` from a daemon thread, until `close`."""

    reader: MetricReader
    url: str
    server: WSGIServer

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_prometheus(*, host: str = "127.0.0.1", port: int = 0) -> PrometheusEndpoint:
    """Serve metrics for Prometheus at `http://host:port/metrics` (`port` 0: a free port the OS picks).

    The reader must then be given to `configure_telemetry(metric_readers=...)`: it sees only what the meter
    provider it is configured into records. Its registry is its own (not prometheus_client's global one),
    so nothing else in the process is exposed and endpoints can be started and closed repeatedly.
    Raises `ConfigurationError` (one line) when the address cannot be served.
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    if not 0 <= port <= 65535:
        raise ConfigurationError(f"--metrics-port must be 0-65535 (0: any free port), not {port}")
    registry = CollectorRegistry(auto_describe=True)
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:  # in use, not permitted, or a host that does not resolve (socket.gaierror)
        reason = exc.strerror or str(exc)
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {reason}") from exc
    reader = PrometheusMetricReader(registry=registry)
    bound = server.server_address[0]
    bound_host = bound.decode() if isinstance(bound, bytes) else str(bound)
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host  # an IPv6 address
    return PrometheusEndpoint(reader=reader, url=f"http://{shown}:{server.server_address[1]}/metrics", server=server)
