"""The local Kafka broker: a real round trip, topic creation, and start-up failures that say why."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from imnm_common.kafka.errors import (
    BrokerError,
    BrokerStartError,
    JarFetchError,
    JavaMissingError,
    PortInUseError,
)
from imnm_common.kafka.local_broker import LocalKafkaBroker, fetch_jars, probe_metadata
from imnm_common.kafka.topics import PartitionMismatch, create_topics

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port that some other process is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (leak check for broker JVMs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def _assert_cleaned_up(broker: LocalKafkaBroker) -> None:
    assert not broker.is_running()
    assert broker.data_dir is not None
    assert _processes_mentioning(str(broker.data_dir)) == []
    assert not broker.data_dir.exists()


# --------------------------------------------------------------------------- real broker


async def test_keyed_round_trip(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("roundtrip")
    report = await create_topics(kafka_bootstrap, [topic], partitions=3)
    assert report.created == (topic,)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        first = await producer.send_and_wait(topic, key=b"patient-42", value=b'{"ck": 1200}')
        second = await producer.send_and_wait(topic, key=b"patient-42", value=b'{"ck": 900}')
    finally:
        await producer.stop()
    assert first.partition == second.partition  # same key, same partition

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=unique_name("group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = [await asyncio.wait_for(consumer.getone(), timeout=30) for _ in range(2)]
        await consumer.commit()  # exercises the group coordinator / __consumer_offsets
    finally:
        await consumer.stop()
    assert [(m.key, m.value) for m in got] == [
        (b"patient-42", b'{"ck": 1200}'),
        (b"patient-42", b'{"ck": 900}'),
    ]
    assert {m.partition for m in got} == {first.partition}
    assert [m.offset for m in got] == [first.offset, second.offset]


async def test_create_topics_counts_and_mismatch(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b, c = unique_name("a"), unique_name("b"), unique_name("c")

    first = await create_topics(kafka_bootstrap, [a, b, a], partitions=3)
    assert first.created == (a, b)
    assert first.existing == ()
    assert first.ok

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics([a, b])}
    finally:
        await admin.close()
    assert {name: len(t["partitions"]) for name, t in described.items()} == {a: 3, b: 3}

    same = await create_topics(kafka_bootstrap, [a, b], partitions=3)
    assert same.created == ()
    assert same.existing == (a, b)
    assert same.ok

    with caplog.at_level(logging.WARNING, logger="imnm_common.kafka.topics"):
        other = await create_topics(kafka_bootstrap, [a, c], partitions=2)
    assert other.created == (c,)
    assert other.existing == (a,)
    assert other.mismatched == (PartitionMismatch(topic=a, expected=2, actual=3),)
    assert not other.ok
    assert a in other.summary()
    assert any(a in r.getMessage() and "3 partitions" in r.getMessage() for r in caplog.records)


async def test_create_topics_rejects_bad_arguments(kafka_bootstrap: str) -> None:
    with pytest.raises(ValueError):
        await create_topics(kafka_bootstrap, ["x"], partitions=0)
    empty = await create_topics(kafka_bootstrap, [], partitions=1)
    assert empty.created == () and empty.existing == ()


def test_metadata_probe_sees_the_broker(kafka_bootstrap: str) -> None:
    host, port = kafka_bootstrap.rsplit(":", 1)
    cluster_id, brokers = probe_metadata(host, int(port))
    assert cluster_id
    assert brokers >= 1


# --------------------------------------------------------------------------- failures


def test_not_started_broker_has_no_bootstrap() -> None:
    broker = LocalKafkaBroker()
    with pytest.raises(BrokerError, match="not running"):
        _ = broker.bootstrap
    assert broker.log_tail() == ""
    broker.stop()  # stopping a broker that never started is a no-op


def test_missing_java_is_reported() -> None:
    broker = LocalKafkaBroker(java="/nonexistent/jdk/bin/java")
    with pytest.raises(JavaMissingError, match="/nonexistent/jdk/bin/java"):
        broker.start()
    assert broker.data_dir is None  # failed before creating anything


def test_taken_port_is_reported_before_starting_java(held_port: int) -> None:
    broker = LocalKafkaBroker(port=held_port)
    with pytest.raises(PortInUseError) as caught:
        broker.start()
    assert str(held_port) in str(caught.value)
    assert "already in use" in str(caught.value)
    _assert_cleaned_up(broker)


def test_broker_exit_reports_code_and_log_tail(held_port: int) -> None:
    """The JVM itself fails to bind: the error has its exit code, cause and log tail."""
    fetch_jars()
    controller = _free_port()
    broker = LocalKafkaBroker(
        controller_port=controller,
        # The pre-check looks at the (free) default listener; this one is taken.
        extra_properties={
            "listeners": f"PLAINTEXT://127.0.0.1:{held_port},CONTROLLER://127.0.0.1:{controller}"
        },
        start_timeout_s=45,
    )
    with pytest.raises(PortInUseError) as caught:
        broker.start()
    error = caught.value
    assert error.exit_code is not None and error.exit_code != 0
    assert f"exited with code {error.exit_code}" in str(error)
    assert f"127.0.0.1:{held_port}" in error.reason
    assert "Address already in use" in error.log_tail
    assert len(error.log_tail.splitlines()) <= 40
    assert error.log_tail in str(error)
    _assert_cleaned_up(broker)


def test_bad_config_reports_formatting_failure() -> None:
    broker = LocalKafkaBroker(extra_properties={"num.io.threads": "lots"})
    with pytest.raises(BrokerStartError) as caught:
        broker.start()
    assert "StorageTool" in caught.value.reason
    assert caught.value.exit_code not in (None, 0)
    assert "num.io.threads" in str(caught.value)
    _assert_cleaned_up(broker)


def test_start_timeout_kills_the_process() -> None:
    broker = LocalKafkaBroker(start_timeout_s=0.3)
    expected = r"did not answer metadata requests .* within 0.3 s"
    with pytest.raises(BrokerStartError, match=expected) as caught:
        broker.start()
    assert "was killed" in caught.value.reason
    _assert_cleaned_up(broker)


def test_missing_maven_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deploy = tmp_path / "kafka"
    deploy.mkdir()
    (deploy / "pom.xml").write_text((Path(fetch_jars()).parent / "pom.xml").read_text())
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn here
    with pytest.raises(JarFetchError, match=r"Maven \('mvn'\) is not on PATH"):
        fetch_jars(deploy)
