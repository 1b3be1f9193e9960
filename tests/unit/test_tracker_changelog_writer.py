"""write_changelog on a stand-in producer: batches per partition, order kept, offsets reported."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

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
