"""Kafka in and out of the console: alert.v1 transitions into the store, alert-action.v1 out.

At least once, made exactly-once in effect: a batch is committed to the store in one transaction
before its offsets are committed to Kafka, and the store ignores an (alert_id, status) it holds,
so a redelivered batch changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError

from imnm_common.contracts.actions import AlertAction
from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.deadletter import DeadLetter, rejected_message
from imnm_common.kafka.batches import consume_in_batches
from imnm_console.adapters.store import AlertStore, Received
from imnm_console.metrics import ConsoleMetrics

log = logging.getLogger(__name__)
SERVICE = "imnm-console"


class PublishFailed(Exception):
    """The broker did not take the message; nothing was recorded."""


class ActionPublisher:
    """alert-action.v1, keyed by patient_id, acknowledged by every in-sync replica."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, action: AlertAction) -> None:
        try:
            await self._producer.send_and_wait(
                self._topic, value=action.model_dump_json().encode(),
                key=action.patient_id.encode(),
            )
        except Exception as error:  # aiokafka raises many kinds; the caller needs one
            raise PublishFailed(f"{type(error).__name__}: {error}") from error


def parse_transition(record: ConsumerRecord, now: datetime) -> AlertTransition | DeadLetter:
    """The transition, or the dead letter saying why the message is not one."""
    reason: str
    code: str
    try:
        return AlertTransition.model_validate_json(record.value or b"")
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            code, reason = "bad_json", f"not JSON: {first['msg']}"
        else:
            where = ".".join(str(part) for part in first["loc"]) or "message"
            code, reason = "schema_violation", f"{where}: {first['msg']}"
    return rejected_message(
        value=record.value, key=record.key, topic=record.topic, partition=record.partition,
        offset=record.offset, reason=reason, reason_code=code, service=SERVICE,
        rejected_at=now,
    )


class AlertFeed:
    """Consumes alert.v1 into the store until cancelled."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        store: AlertStore,
        metrics: ConsoleMetrics,
        deadletter_topic: str,
        now: Callable[[], datetime],
    ) -> None:
        self._consumer, self._producer, self._store = consumer, producer, store
        self._metrics, self._deadletter_topic, self._now = metrics, deadletter_topic, now

    async def run(self) -> None:
        await consume_in_batches(self._consumer, self.take)

    async def take(self, records: list[ConsumerRecord]) -> None:
        valid: list[tuple[AlertTransition, Received]] = []
        for record in records:
            parsed = parse_transition(record, self._now())
            if isinstance(parsed, DeadLetter):
                await self._producer.send_and_wait(
                    self._deadletter_topic, value=parsed.model_dump_json().encode(),
                    key=None if record.key is None else bytes(record.key),
                )
                self._metrics.rejected.labels(parsed.reason_code).inc()
                log.warning("alert.v1 message rejected at %s[%d]@%d: %s", record.topic,
                            record.partition, record.offset, parsed.reason_code)
                continue
            valid.append((parsed, Received(record.topic, record.partition, record.offset)))
        if valid:
            outcomes = await asyncio.to_thread(self._store.apply_transitions, valid, self._now())
            for outcome in outcomes:
                self._metrics.transitions.labels(outcome.value).inc()

