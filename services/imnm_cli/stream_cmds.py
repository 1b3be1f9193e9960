"""``imnm tracker``, ``imnm publish`` and ``imnm tail``: the Kafka side of the command line.

faust and aiokafka are imported inside the handlers, so ``imnm replay`` and friends do not pay
for them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from typing import IO

import orjson

from imnm_cli.broker_args import add_bootstrap, broker_of
from imnm_common.settings import Settings, get_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SKIPPED = 0, 1, 2, 3


def register(commands: argparse._SubParsersAction) -> None:
    tracker = commands.add_parser(
        "tracker",
        help="run one tracker worker (several with one --app-id form one consumer group)",
        description="Consumes events.v1, keeps per-patient state, publishes alert.v1 "
        "transitions and dead letters. Stops on Ctrl-C or SIGTERM. Exit status: 0 stopped, "
        "1 broker unreachable or crashed, 2 configuration error, 70 output could not be "
        "published (nothing committed; restart to reprocess).",
    )
    tracker.add_argument("--app-id", help="faust app id = consumer group (IMNM_TRACKER_APP_ID)")
    add_bootstrap(tracker)
    tracker.add_argument("--timer-interval", type=float,
                         help="seconds between time-based evaluations "
                         "(IMNM_TRACKER_TIMER_INTERVAL_SECONDS)")
    tracker.add_argument("--store", help="memory:// or rocksdb:// (IMNM_TRACKER_STORE)")
    tracker.add_argument("--data-dir", help="faust data directory (IMNM_TRACKER_DATA_DIR)")
    tracker.add_argument("--metrics-port", type=int,
                         help="/metrics port, 0 for none (IMNM_TRACKER_METRICS_PORT)")
    clock = tracker.add_mutually_exclusive_group()
    clock.add_argument("--clock-file",
                       help="read 'now' from this file (epoch seconds or RFC 3339) on every "
                       "use instead of the wall clock; for tests and demos")
    clock.add_argument("--fixed-now", help="a fixed 'now' (epoch seconds or RFC 3339)")
    tracker.add_argument("--processing-guarantee", choices=("at_least_once", "exactly_once"),
                         help="faust processing guarantee (default at_least_once; exactly_once "
                         "is experimental: after a hard kill it repeated and even altered "
                         "transitions in our tests)")
    tracker.set_defaults(handler=run_tracker)

    publish = commands.add_parser(
        "publish", help="send a JSON-lines file of events to the events topic"
    )
    publish.add_argument("file", help="events.v1 JSON lines; '-' reads standard input")
    add_bootstrap(publish)
    publish.add_argument("--topic", help="default: IMNM_TOPIC_EVENTS")
    publish.set_defaults(handler=run_publish)

    tail = commands.add_parser("tail", help="print alert transitions as they arrive")
    add_bootstrap(tail)
    which = tail.add_mutually_exclusive_group()
    which.add_argument("--topic", help="default: IMNM_TOPIC_ALERTS")
    which.add_argument("--dead-letters", action="store_true", help="tail the dead-letter topic")
    tail.add_argument("--from-beginning", action="store_true",
                      help="start at the oldest message instead of new ones only")
    tail.add_argument("--max-messages", type=int, help="stop after this many messages")
    tail.set_defaults(handler=run_tail)


# ------------------------------------------------------------------------- tracker
def run_tracker(args: argparse.Namespace) -> int:
    from imnm_tracker.errors import TrackerConfigError
    from imnm_tracker.options import resolve
    from imnm_tracker.worker import run_worker

    try:
        options = resolve(
            get_settings(),
            app_id=args.app_id,
            bootstrap=args.bootstrap,
            timer_interval=args.timer_interval,
            store=args.store,
            data_dir=args.data_dir,
            metrics_port=args.metrics_port,
            clock_file=args.clock_file,
            fixed_now=args.fixed_now,
            processing_guarantee=args.processing_guarantee,
        )
    except TrackerConfigError as error:
        print(f"imnm tracker: {error}", file=sys.stderr)
        return EXIT_USAGE
    return run_worker(options)


# ------------------------------------------------------------------------- publish
def patient_key(line: bytes) -> bytes:
    """The Kafka key of one JSON line: its ``patient_id``; ValueError says why there is none."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    patient_id = obj.get("patient_id")
    if not isinstance(patient_id, str) or not patient_id:
        raise ValueError("no patient_id (a non-empty string) to key the message by")
    return patient_id.encode()


def run_publish(args: argparse.Namespace) -> int:
    settings = get_settings()
    broker = broker_of(args, settings, "publish")
    if broker is None:
        return EXIT_USAGE
    topic = args.topic or settings.topics.events
    try:
        lines = _open_lines(args.file)
    except OSError as error:
        print(f"imnm publish: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        sent, skipped = asyncio.run(_publish(broker, topic, lines, settings, sys.stderr))
    except Exception as error:  # broker unreachable, topic refused ...
        print(f"imnm publish: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"published {sent} events to {topic}, skipped {skipped} lines", file=sys.stderr)
    return EXIT_SKIPPED if skipped else EXIT_OK


def _open_lines(path: str) -> Iterator[bytes]:
    if path == "-":
        return iter(sys.stdin.buffer)
    handle = open(path, "rb")  # noqa: SIM115 - closed by the generator below

    def lines() -> Iterator[bytes]:
        with handle:
            yield from handle

    return lines()


async def _publish(
    broker: str, topic: str, lines: Iterator[bytes], settings: Settings, err: IO[str]
) -> tuple[int, int]:
    from aiokafka import AIOKafkaProducer

    from imnm_common.kafka.topics import create_topics

    await create_topics(broker, [topic], settings.topic_partitions,
                        settings.topic_replication_factor)
    # Idempotent: a retried batch is not duplicated, and one patient's events stay in order.
    producer = AIOKafkaProducer(
        bootstrap_servers=broker, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    sent = skipped = 0
    pending: list[asyncio.Future[object]] = []
    try:
        for number, line in enumerate(lines, start=1):
            value = line.strip()
            if not value:
                continue
            try:
                key = patient_key(value)
            except ValueError as reason:
                print(f"line {number}: {reason}", file=err)
                skipped += 1
                continue
            pending.append(await producer.send(topic, key=key, value=value))
            sent += 1
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent, skipped


# ------------------------------------------------------------------------- tail
def run_tail(args: argparse.Namespace) -> int:
    settings = get_settings()
    broker = broker_of(args, settings, "tail")
    if broker is None:
        return EXIT_USAGE
    topic = args.topic or (settings.topics.deadletter if args.dead_letters
                           else settings.topics.alerts)
    try:
        asyncio.run(_tail(broker, topic, args.from_beginning, args.max_messages, sys.stdout))
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C is how tail ends
    except Exception as error:
        print(f"imnm tail: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def _tail(
    broker: str, topic: str, from_beginning: bool, limit: int | None, out: IO[str]
) -> None:
    from aiokafka import AIOKafkaConsumer

    # No consumer group: every tail sees every partition and commits nothing. read_committed:
    # never show output of an aborted transaction (a tracker running exactly_once).
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    try:
        seen = 0
        async for message in consumer:
            if message.value is None:
                continue
            out.write(message.value.decode("utf-8", errors="replace") + "\n")
            out.flush()
            seen += 1
            if limit is not None and seen >= limit:
                return
    finally:
        await consumer.stop()
