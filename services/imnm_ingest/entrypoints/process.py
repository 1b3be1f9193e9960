"""The ingest service as a process: consumer, producer, metrics server, until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime
from functools import partial
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import start_http_server

from imnm_common.settings import Settings
from imnm_ingest.adapters.kafka_bridge import RawBridge
from imnm_ingest.domain.fhir import events_from_fhir
from imnm_ingest.domain.hl7v2 import events_from_hl7v2
from imnm_ingest.metrics import IngestMetrics

log = logging.getLogger("imnm.ingest")


def utc_now() -> datetime:
    return datetime.now(UTC)


async def serve(settings: Settings, bootstrap: str) -> None:
    topics = settings.topics
    site_zone = ZoneInfo(settings.ingest_hl7_timezone)
    metrics = IngestMetrics()
    server, thread = start_http_server(settings.ingest_metrics_port,
                                       addr=settings.ingest_metrics_host,
                                       registry=metrics.registry)
    consumer = AIOKafkaConsumer(
        topics.raw_hl7v2, topics.raw_fhir, bootstrap_servers=bootstrap,
        group_id=settings.ingest_group_id, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed",
    )
    # Idempotent producer: a retried send is not duplicated and one patient's events keep order.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=5)
    bridge = RawBridge(
        consumer, producer,
        {topics.raw_hl7v2: ("hl7v2", partial(events_from_hl7v2, local_tz=site_zone)),
         topics.raw_fhir: ("fhir", events_from_fhir)},
        topics.events, topics.deadletter, metrics, utc_now,
    )
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    await producer.start()
    await consumer.start()
    log.info("ingest: converting %s and %s into %s", topics.raw_hl7v2, topics.raw_fhir,
             topics.events)
    try:
        await bridge.run()
    except asyncio.CancelledError:
        log.info("ingest: stopping")
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        await producer.stop()
        server.shutdown()
        thread.join(5)
