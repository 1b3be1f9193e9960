"""``imnm up``: the whole suite in one command, on embedded defaults.

Starts the local Kafka broker (unless ``IMNM_KAFKA_BOOTSTRAP`` names one), creates the topics,
runs the tracker (and the console, once installed) as child processes, optionally a demo event
source, prints where everything listens, and stops all of it on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from imnm_common.settings import Settings, get_settings

log = logging.getLogger("imnm.up")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("up", help="start broker, topics, tracker, console (+ demo)")
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
    settings = get_settings()
    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
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
        children.append(_spawn(
            "tracker", [sys.executable, "-m", "imnm_cli.main", "tracker"], env,
            f"metrics http://127.0.0.1:{settings.tracker_metrics_port}/metrics",
        ))
        if importlib.util.find_spec("imnm_console") is not None:
            children.append(_spawn(
                "console", [sys.executable, "-m", "imnm_cli.main", "console"], env,
                f"http://{settings.console_host}:{settings.console_port}",
            ))
        _print_endpoints(bootstrap, settings, children, broker.pid if broker else None)
        if args.demo:
            asyncio.run(_demo(bootstrap, settings, args.demo_patients, children))
        else:
            _wait(children)
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


def _spawn(name: str, argv: list[str], env: dict[str, str], where: str) -> Child:
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    return Child(name, process, where)


def _print_endpoints(bootstrap: str, settings: Settings, children: list[Child],
                     broker_pid: int | None) -> None:
    t = settings.topics
    print("\nimnm-safety is up", flush=True)
    embedded = f" (embedded local broker, pid {broker_pid})" if broker_pid else ""
    print(f"  kafka      {bootstrap}{embedded}")
    print(f"  topics     in {t.events}  out {t.alerts}  dead letters {t.deadletter}")
    for child in children:
        print(f"  {child.name:<10} pid {child.process.pid}  {child.where}")
    print("  follow     imnm tail   (alert transitions as they arrive)")
    print("Press Ctrl-C to stop.\n", flush=True)


def _wait(children: list[Child]) -> None:
    while True:
        for child in children:
            code = child.process.poll()
            if code is not None:
                raise RuntimeError(f"{child.name} exited with status {code}")
        time.sleep(0.5)


async def _demo(bootstrap: str, settings: Settings, patients: int, children: list[Child]) -> None:
    from aiokafka import AIOKafkaProducer

    from imnm_demo.live import run_demo

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        async def send(key: str, value: bytes) -> None:
            await producer.send(settings.topics.events, value=value, key=key.encode())

        demo = asyncio.create_task(run_demo(send, patients=patients))
        while not demo.done():
            for child in children:
                code = child.process.poll()
                if code is not None:
                    demo.cancel()
                    raise RuntimeError(f"{child.name} exited with status {code}")
            await asyncio.sleep(0.5)
        demo.result()
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
