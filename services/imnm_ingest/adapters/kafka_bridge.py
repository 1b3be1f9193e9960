"""Raw topics in, events.v1 and dead letters out.

At least once: a batch's events and dead letters are acknowledged by the broker before its
offsets are committed. Event ids derive from the source message (HL7 MSH-10, FHIR id and
version), so a redelivered message gives the same events and the tracker ignores the repeats.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from imnm_common.contracts.deadletter import rejected_message
from imnm_common.contracts.events import CanonicalEvent
from imnm_common.kafka.batches import consume_in_batches
from imnm_ingest.domain.conversion import ConversionRejected
from imnm_ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)
SERVICE = "imnm-ingest"
RawFormat = Literal["hl7v2", "fhir"]
Converter = Callable[[bytes], list[CanonicalEvent]]


class RawBridge:
    """Converts what arrives on the raw topics until cancelled."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        converters: dict[str, tuple[RawFormat, Converter]],  # topic -> (format, converter)
        events_topic: str,
        deadletter_topic: str,
        metrics: IngestMetrics,
        now: Callable[[], datetime],
    ) -> None:
        self._consumer, self._producer, self._converters = consumer, producer, converters
        self._events_topic, self._deadletter_topic = events_topic, deadletter_topic
        self._metrics, self._now = metrics, now

    async def run(self) -> None:
        await consume_in_batches(self._consumer, self.take)

    async def take(self, records: list[ConsumerRecord]) -> None:
        sends: list[asyncio.Future[object]] = []
        for record in records:
            raw_format, convert = self._converters[record.topic]
            try:
                events = convert(bytes(record.value or b""))
            except ConversionRejected as rejected:
                letter = rejected_message(
                    value=record.value, key=record.key, topic=record.topic,
                    partition=record.partition, offset=record.offset, reason=rejected.reason,
                    reason_code=rejected.code, service=SERVICE, rejected_at=self._now(),
                )
                sends.append(await self._producer.send(
                    self._deadletter_topic, value=letter.model_dump_json().encode(),
                    key=None if record.key is None else bytes(record.key),
                ))
                self._metrics.messages.labels(raw_format, "rejected").inc()
                self._metrics.rejected.labels(raw_format, rejected.code).inc()
                log.warning("%s message rejected at %s[%d]@%d: %s", raw_format, record.topic,
                            record.partition, record.offset, rejected.code)
                continue
            outcome = "converted" if events else "no_events"
            self._metrics.messages.labels(raw_format, outcome).inc()
            for event in events:
                sends.append(await self._producer.send(
                    self._events_topic, value=event.model_dump_json(exclude_none=True).encode(),
                    key=event.patient_id.encode(),
                ))
                self._metrics.events.labels(event.event_type).inc()
        await asyncio.gather(*sends)
