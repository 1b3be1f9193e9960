"""Prometheus metrics of one tracker worker, in seconds (faust's own sensor reports ms).

Each worker has its own registry, so several trackers (or tests) in one process never clash
on the global default registry. Labels are categories only: never a patient id.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from threading import Thread
from typing import Any
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

_GC_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
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
        self.rules_configuration = Gauge(
            "imnm_tracker_rules_configuration",
            "1, labelled with the fingerprint of the rules configuration this worker judges "
            "under. Workers of one group must show one fingerprint: two re-judge each other's "
            "patients at every rebalance.",
            ["fingerprint"],
            registry=r,
        )
        self.rejudged_patients = Counter(
            "imnm_tracker_rejudged_patients",
            "Patients found at a recovery judged under another rules configuration (every rule "
            "of theirs judged again at the next tick).",
            registry=r,
        )
        self.catching_up_partitions = Gauge(
            "imnm_tracker_catching_up_partitions",
            "Source partitions with messages waiting behind those processed: their patients are "
            "judged up to the newest event time processed, not the clock's now.",
            registry=r,
        )
        self.gc_pause_seconds = Histogram(
            "imnm_tracker_gc_pause_seconds",
            "Pauses of the cyclic garbage collector, by generation (2 is a full pass over the "
            "heap). Every thread waits for them, the event loop included.",
            ["generation"],
            buckets=_GC_PAUSE_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def record_gc_pauses(self) -> Callable[[], None]:
        """Observe every collection of this process from now on; returns the undo. The
        collector's callbacks are process-wide: one worker per process records them."""
        started = [0.0]
        pauses = {generation: self.gc_pause_seconds.labels(str(generation))
                  for generation in range(3)}

        def on_collection(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pauses[info["generation"]].observe(time.perf_counter() - started[0])

        gc.callbacks.append(on_collection)
        return lambda: gc.callbacks.remove(on_collection)


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
