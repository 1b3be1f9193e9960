"""Prometheus metrics of one tracker worker, in seconds (faust's own sensor reports ms).

Each worker has its own registry, so several trackers (or tests) in one process never clash
on the global default registry. Labels are categories only: never a patient id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

log = logging.getLogger(__name__)

_PROCESSING_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)


class TrackerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            "imnm_tracker_events_consumed",
            "Valid events consumed (duplicates included), by event type.",
            ["event_type"],
            registry=r,
        )
        self.events_rejected = Counter(
            "imnm_tracker_events_rejected",
            "Messages dead-lettered, by reason code.",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "imnm_tracker_duplicates", "Events already applied (ignored).", registry=r
        )
        self.stale_versions = Counter(
            "imnm_tracker_stale_order_versions",
            "Order versions older than the one held (kept out of state).",
            registry=r,
        )
        self.alert_transitions = Counter(
            "imnm_tracker_alert_transitions",
            "Alert transitions published.",
            ["rule", "severity", "status"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "imnm_tracker_event_processing_seconds",
            "Time to parse, validate and apply one message.",
            buckets=_PROCESSING_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "imnm_tracker_batch_seconds",
            "Time to process, publish and store one batch of messages.",
            registry=r,
        )
        self.tracked_patients = Gauge(
            "imnm_tracker_tracked_patients",
            "Patients in the partitions this worker owns.",
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "imnm_tracker_assigned_partitions",
            "Source partitions this worker owns (after the last recovery).",
            registry=r,
        )
        self.timer_runs = Counter(
            "imnm_tracker_timer_runs", "Timer ticks (each evaluates whatever is due).", registry=r
        )
        self.advance_errors = Counter(
            "imnm_tracker_advance_errors",
            "Evaluations that raised (retried on the next timer tick).",
            registry=r,
        )
        self.batch_failures = Counter(
            "imnm_tracker_batch_failures",
            "Batches that could not be published or stored (the worker stops, unacked).",
            registry=r,
        )
        self.recoveries = Counter(
            "imnm_tracker_recoveries", "Table recoveries completed (rebalances).", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class MetricsServer:
    """The ``/metrics`` HTTP endpoint, served by prometheus_client in a daemon thread."""

    metrics: TrackerMetrics
    host: str
    port: int
    _server: WSGIServer | None = field(default=None, init=False)
    _thread: Thread | None = field(default=None, init=False)

    def start(self) -> None:
        self._server, self._thread = start_http_server(
            self.port, addr=self.host, registry=self.metrics.registry
        )
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
