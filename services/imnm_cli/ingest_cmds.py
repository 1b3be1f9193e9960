"""``imnm ingest`` (raw HL7 v2 / FHIR into events.v1) and ``imnm send-raw`` (put a file of raw
messages on the raw topics, as an interface engine would)."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable
from pathlib import Path

import orjson

from imnm_cli.broker_args import add_bootstrap, broker_of
from imnm_cli.service_start import service_settings
from imnm_common.settings import Settings, get_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_MLLP_FRAMING = re.compile(rb"[\x0b\x1c]")


def register(commands: argparse._SubParsersAction) -> None:
    ingest = commands.add_parser(
        "ingest", help="convert raw HL7 v2 / FHIR messages into events.v1 "
        "(needs IMNM_KAFKA_BOOTSTRAP)")
    ingest.set_defaults(handler=run_ingest)
    send = commands.add_parser("send-raw", help="send a file of raw HL7 v2 or FHIR messages "
                               "to the raw topics")
    which = send.add_mutually_exclusive_group(required=True)
    which.add_argument("--hl7v2", metavar="FILE", help="ER7 messages, each starting at MSH "
                       "(MLLP framing allowed)")
    which.add_argument("--fhir", metavar="FILE", help="one FHIR JSON resource or Bundle, or "
                       "one resource per line")
    add_bootstrap(send)
    send.set_defaults(handler=run_send_raw)


def run_ingest(args: argparse.Namespace) -> int:
    settings = service_settings("ingest", "this service")
    if settings is None:
        return EXIT_USAGE
    from imnm_ingest.entrypoints.process import serve

    asyncio.run(serve(settings, settings.kafka_bootstrap))
    return EXIT_OK


def split_hl7v2(data: bytes) -> list[bytes]:
    """Messages of an ER7 file: each starts at a segment ``MSH|``; MLLP bytes are dropped."""
    text = _MLLP_FRAMING.sub(b"", data).replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    messages: list[list[bytes]] = []
    for segment in text.split(b"\r"):
        if not segment.strip():
            continue
        if segment.startswith(b"MSH") or not messages:
            messages.append([])
        messages[-1].append(segment)
    return [b"\r".join(segments) + b"\r" for segments in messages]


def split_fhir(data: bytes) -> list[bytes]:
    """One JSON document (a resource or a Bundle), or one resource per line."""
    try:
        orjson.loads(data)
        return [data.strip()]
    except orjson.JSONDecodeError:
        return [line.strip() for line in data.splitlines() if line.strip()]


def run_send_raw(args: argparse.Namespace) -> int:
    settings = get_settings()
    broker = broker_of(args, settings, "send-raw")
    if broker is None:
        return EXIT_USAGE
    path = Path(args.hl7v2 or args.fhir)
    try:
        data = path.read_bytes()
    except OSError as error:
        print(f"imnm send-raw: cannot read {path}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if args.hl7v2:
        from imnm_ingest.domain.hl7v2 import events_from_hl7v2

        topic, messages = settings.topics.raw_hl7v2, split_hl7v2(data)
        convert: Callable[[bytes], list] = events_from_hl7v2
    else:
        from imnm_ingest.domain.fhir import events_from_fhir

        topic, messages, convert = settings.topics.raw_fhir, split_fhir(data), events_from_fhir
    try:
        asyncio.run(_send(broker, topic, messages, convert, settings))
    except Exception as error:  # broker unreachable, topic refused ...
        print(f"imnm send-raw: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"sent {len(messages)} messages to {topic}", file=sys.stderr)
    return EXIT_OK


async def _send(broker: str, topic: str, messages: list[bytes],
                convert: Callable[[bytes], list], settings: Settings) -> None:
    from aiokafka import AIOKafkaProducer

    from imnm_common.kafka.topics import create_topics
    from imnm_ingest.domain.conversion import ConversionRejected

    await create_topics(broker, [topic], settings.topic_partitions,
                        settings.topic_replication_factor)
    # Idempotent: a retried batch is not duplicated, and one patient's messages stay in order.
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        sends: list[asyncio.Future[object]] = []
        for message in messages:
            # Keyed by patient_id like every topic, so one patient's messages keep their order;
            # a message the converter rejects is sent unkeyed (and dead-lettered by ingest).
            try:
                events = convert(message)
            except ConversionRejected:
                events = []
            key = events[0].patient_id.encode() if events else None
            sends.append(await producer.send(topic, value=message, key=key))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
