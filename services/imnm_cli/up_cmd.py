"""``imnm up``: the whole suite in one command, on embedded defaults.

Starts the local Kafka broker (unless ``IMNM_KAFKA_BOOTSTRAP`` names one), creates the topics,
runs the tracker, the HL7 v2 / FHIR ingest service and the pharmacy alert console as child
processes, optionally a demo event source, prints where everything listens, and stops all of it
on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from imnm_common.settings import Settings, get_settings

log = logging.getLogger("imnm.up")
LOG_DIR = Path(".imnm-data") / "logs"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "up", help="start broker, topics, tracker, ingest, console (+ demo)")
    parser.add_argument("--demo", action="store_true",
                        help="publish a synthetic stream of IMNM patients")
    parser.add_argument("--demo-patients", type=int, default=60)
    parser.set_defaults(handler=run)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    where: str


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Leader elections of freshly created topics make aiokafka retry noisily; it recovers.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    settings = get_settings()
    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl-C must stop the suite even when started from a shell that ignores SIGINT for its
    # background jobs (``make test &``, nohup): Python keeps an inherited "ignore" as it is.
    signal.signal(signal.SIGINT, on_signal)
    broker = None
    children: list[Child] = []
    try:
        bootstrap = settings.kafka_bootstrap
        if not bootstrap:
            from imnm_common.kafka.local_broker import LocalKafkaBroker

            broker = LocalKafkaBroker(data_dir=None)
            broker.start()
            bootstrap = broker.bootstrap
        asyncio.run(_create_topics(bootstrap, settings))
        env = {**os.environ, "IMNM_KAFKA_BOOTSTRAP": bootstrap}
        if broker is not None and "IMNM_DATABASE_URL" not in os.environ:
            env["IMNM_DATABASE_URL"] = _fresh_console_store()
        children.append(_spawn(
            "tracker", [sys.executable, "-m", "imnm_cli.main", "tracker"], env,
            f"metrics http://127.0.0.1:{settings.tracker_metrics_port}/metrics",
        ))
        children.append(_spawn(
            "ingest", [sys.executable, "-m", "imnm_cli.main", "ingest"], env,
            f"HL7 v2 / FHIR in, metrics http://127.0.0.1:{settings.ingest_metrics_port}/metrics",
        ))
        console = f"http://{settings.console_host}:{settings.console_port}"
        children.append(_spawn(
            "console", [sys.executable, "-m", "imnm_cli.main", "console"], env,
            f"worklist {console}/  metrics {console}/metrics",
        ))
        _print_endpoints(bootstrap, settings, children, broker.pid if broker else None)
        asyncio.run(_supervise(bootstrap, settings, children,
                               args.demo_patients if args.demo else None))
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except Exception as error:
        print(f"imnm up: {error}", file=sys.stderr)
        return 1
    finally:
        for child in reversed(children):
            _stop(child)
        if broker is not None:
            broker.stop()
    return 0


async def _create_topics(bootstrap: str, settings: Settings) -> None:
    from imnm_common.kafka.topics import create_topics

    report = await create_topics(bootstrap, settings.topics.all(), settings.topic_partitions,
                                 settings.topic_replication_factor)
    print(f"topics: {report.summary()}", flush=True)


def _fresh_console_store() -> str:
    """The embedded broker starts empty every time, so the console's store does too: kept
    across runs it would show the last run's open alerts, whose resolutions can never arrive."""
    LOG_DIR.parent.mkdir(parents=True, exist_ok=True)
    path = LOG_DIR.parent / "console.db"
    for leftover in (path, path.with_name("console.db-wal"), path.with_name("console.db-shm")):
        leftover.unlink(missing_ok=True)
    return f"sqlite:///{path}"


def _spawn(name: str, argv: list[str], env: dict[str, str], where: str) -> Child:
    # Service logs go to files so the terminal shows what a user came for: the alerts.
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return Child(name, process, f"{where}  log {log_path}")


def _print_endpoints(bootstrap: str, settings: Settings, children: list[Child],
                     broker_pid: int | None) -> None:
    t = settings.topics
    print("\nimnm-safety is up", flush=True)
    embedded = f" (embedded local broker, pid {broker_pid})" if broker_pid else ""
    print(f"  kafka      {bootstrap}{embedded}")
    print(f"  topics     in {t.events}  out {t.alerts}  actions {t.alert_actions}  "
          f"dead letters {t.deadletter}")
    print(f"             raw in {t.raw_hl7v2} (HL7 v2), {t.raw_fhir} (FHIR)")
    for child in children:
        print(f"  {child.name:<10} pid {child.process.pid}  {child.where}")
    print("  also       imnm tail (alert.v1 JSON), imnm tail --dead-letters, "
          "imnm send-raw --hl7v2 FILE | --fhir FILE")
    print("Alert transitions follow as they arrive. Press Ctrl-C to stop.\n", flush=True)


async def _supervise(bootstrap: str, settings: Settings, children: list[Child],
                     demo_patients: int | None) -> None:
    """Print alert transitions as they arrive; run the demo source; stop if a child dies."""
    tasks = [asyncio.create_task(_print_alerts(bootstrap, settings.topics.alerts))]
    if demo_patients is not None:
        tasks.append(asyncio.create_task(_demo(bootstrap, settings, demo_patients)))
    try:
        while True:
            for child in children:
                code = child.process.poll()
                if code is not None:
                    raise RuntimeError(f"{child.name} exited with status {code}; see its log")
            for task in tasks:
                if task.done():
                    task.result()  # re-raise what stopped it
            await asyncio.sleep(0.5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _print_alerts(bootstrap: str, topic: str) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    await consumer.start()
    try:
        async for record in consumer:
            alert = orjson.loads(record.value)
            when = alert["resolved_at"] or alert["raised_at"]
            print(f"{when[:16]}  {alert['status']:<8} {alert['severity']:<8} "
                  f"{alert['patient_id']:<12} {alert['summary']}", flush=True)
    finally:
        await consumer.stop()


async def _demo(bootstrap: str, settings: Settings, patients: int) -> None:
    from aiokafka import AIOKafkaProducer

    from imnm_demo.live import run_demo

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        async def send(key: str, value: bytes) -> None:
            await producer.send(settings.topics.events, value=value, key=key.encode())

        await run_demo(send, patients=patients)
    finally:
        await producer.stop()


def _stop(child: Child, timeout: float = 15.0) -> None:
    if child.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, signal.SIGTERM)
    try:
        child.process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()
