"""Prometheus metrics of the ingest service. Labels are categories only: never a patient id."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "imnm_ingest_messages",
            "Raw messages read, by format (hl7v2, fhir) and outcome (converted, no_events: "
            "nothing IMNM-relevant in it, rejected).", ["format", "outcome"], registry=r,
        )
        self.rejected = Counter(
            "imnm_ingest_messages_rejected",
            "Raw messages dead-lettered, by format and reason code.", ["format", "reason"],
            registry=r,
        )
        self.events = Counter(
            "imnm_ingest_events_published",
            "events.v1 events published, by event type.", ["event_type"], registry=r,
        )
