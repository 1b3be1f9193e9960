"""The tracker's changelog writes on a stand-in producer: batches per partition, order kept,
offsets reported, and FaustStateStore's store-now, changelog-on-flush saves."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from faust.types import TP

from imnm_common.domain.state import PatientState
from imnm_tracker import app
from imnm_tracker.changelog import ChangelogRecord, write_changelog


class Batch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: float | None) -> object | None:
        size = sum(len(k) + len(v) for k, v in self.records)
        if self.records and size + len(key) + len(value) > self.capacity:
            return None  # full, like aiokafka's BatchBuilder
        if len(key) + len(value) > self.capacity:
            return None
        self.records.append((key, value))
        return object()


class Metadata:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class Producer:
    """Each partition's log starts at offset 100; a batch gets its base offset on send."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []
        self.ends: dict[int, int] = {}

    def create_batch(self) -> Batch:
        return Batch(self.capacity)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        base = self.ends.get(partition, 100)
        self.ends[partition] = base + len(batch.records)
        self.sent.append((topic, partition, batch.records))
        future: asyncio.Future[Metadata] = asyncio.get_running_loop().create_future()
        future.set_result(Metadata(base))
        return future


def rec(partition: int, key: str, value: str) -> ChangelogRecord:
    return ChangelogRecord(partition, key.encode(), value.encode())


async def test_one_batch_per_partition_in_order_with_the_last_offsets() -> None:
    producer = Producer()
    written: dict[TP, int] = {}
    records = [rec(0, "a", "1"), rec(2, "b", "1"), rec(0, "c", "1"), rec(0, "a", "2")]
    await write_changelog(producer, "t-changelog", records, written.__setitem__)
    assert producer.sent == [
        ("t-changelog", 0, [(b"a", b"1"), (b"c", b"1"), (b"a", b"2")]),
        ("t-changelog", 2, [(b"b", b"1")]),
    ]
    assert written == {TP("t-changelog", 0): 102, TP("t-changelog", 2): 100}


async def test_a_full_batch_is_sent_and_the_rest_follows_in_the_next() -> None:
    producer = Producer(capacity=12)  # two 5-byte records per batch
    written: dict[TP, int] = {}
    records = [rec(1, f"k{i}", "abc") for i in range(5)]
    await write_changelog(producer, "t", records, written.__setitem__)
    assert [len(batch) for _, _, batch in producer.sent] == [2, 2, 1]
    assert [k for _, _, batch in producer.sent for k, _ in batch] == [
        f"k{i}".encode() for i in range(5)
    ]
    assert written == {TP("t", 1): 104}


async def test_a_state_larger_than_a_batch_is_an_error_not_a_loss() -> None:
    producer = Producer(capacity=8)
    with pytest.raises(ValueError, match="does not fit"):
        await write_changelog(producer, "t", [rec(0, "a", "1"), rec(0, "big", "x" * 20)],
                              lambda tp, offset: None)


# ------------------------------------------------------------------ FaustStateStore, batched
class Store(dict[bytes, bytes]):
    """The table's store: faust's stores take the restart offsets too."""

    def __init__(self) -> None:
        super().__init__()
        self.persisted: dict[TP, int] = {}

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset


class Table:
    def __init__(self) -> None:
        self.data = Store()
        self.assigned: dict[bytes, bytes] = {}  # what went through faust's own changelog path
        self.changelog_topic = self

    def get_topic_name(self) -> str:
        return "imnm-tracker-state-changelog"

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.assigned[key] = value
        self.data[key] = value


class FailingOnce(Producer):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker gone")
        return await super().send_batch(batch, topic, partition=partition)


def faust_store(monkeypatch: pytest.MonkeyPatch, producer: Producer, *, batched: bool
                ) -> tuple[Any, Table]:
    monkeypatch.setattr(app, "aiokafka_producer", lambda _: producer)
    table = Table()
    # the app only reaches faust's producer, replaced above, and the stand-in events
    return app.FaustStateStore(cast(Any, object()), cast(Any, table), "events",
                               batched=batched), table


async def a_failed_flush(monkeypatch: pytest.MonkeyPatch, partitions: dict[str, int]
                         ) -> tuple[Any, Table, FailingOnce]:
    """A batched store that saved one state per patient, whose first flush failed."""
    producer = FailingOnce()
    store, table = faust_store(monkeypatch, producer, batched=True)
    for patient_id, partition in partitions.items():
        store.save(patient_id, partition, PatientState(patient_id=patient_id), None)
    with pytest.raises(ConnectionError):
        await store.flush()
    return store, table, producer


async def test_the_store_is_written_at_once_and_the_changelog_on_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, table, producer = await a_failed_flush(monkeypatch, {"P1": 0, "P2": 3})
    assert set(table.data) == {b"P1", b"P2"} and table.assigned == {}
    assert producer.sent == [] and table.data.persisted == {}
    store.save("P1", 0, PatientState(patient_id="P1", clock=9.0), None)
    await store.flush()  # the failed records go first, then the newer write of P1
    assert [(p, [k for k, _ in batch]) for _, p, batch in producer.sent] == [
        (0, [b"P1", b"P1"]), (3, [b"P2"]),
    ]
    assert producer.sent[0][2][-1][1] == table.data[b"P1"]  # the last record is the store's value
    topic = "imnm-tracker-state-changelog"
    assert table.data.persisted == {TP(topic, 0): 101, TP(topic, 3): 100}
    await store.flush()  # nothing new
    assert len(producer.sent) == 2


async def test_unbatched_saves_are_table_assignments(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = Producer()
    store, table = faust_store(monkeypatch, producer, batched=False)
    store.save("P1", 2, PatientState(patient_id="P1"), None)
    await store.flush()
    assert set(table.assigned) == {b"P1"} and producer.sent == []


async def test_revoked_partitions_lose_their_unflushed_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, _, producer = await a_failed_flush(monkeypatch, {"P1": 0, "P2": 1})
    store.drop_partitions([1])  # another worker owns partition 1 now
    await store.flush()
    assert [(p, [k for k, _ in batch]) for _, p, batch in producer.sent] == [(0, [b"P1"])]
