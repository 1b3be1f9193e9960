"""A batch's state writes to the table's changelog topic: one produce batch per partition.

faust sends a changelog record by itself for every table assignment, one message at a time: a
``FutureMessage``, a hop through its producer buffer, an aiokafka ``send`` with a future per
message and, with the event loop busy, often a produce request per message. The tracker writes
one state per patient a batch touched, so it writes the table's store directly and sends the
batch's records here instead: aiokafka's ``create_batch``/``send_batch``, one batch (or a few,
when large) per changelog partition, awaited before the source messages are acked.

What faust's own path also did, and where it went:
- the RocksDB store's "persisted offset" (where a restart resumes reading the changelog) is set
  from the acknowledged offsets, as faust's ``Table._on_changelog_sent`` sets it;
- faust's sensors and key TTLs (windowed tables only) are not used by the tracker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faust.types import TP


@dataclass(frozen=True, slots=True)
class ChangelogRecord:
    partition: int
    key: bytes
    value: bytes


class BatchProducer(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` used here."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any: ...


OffsetWritten = Callable[[TP, int], None]
"""Told the offset of the last record written to each changelog partition."""


async def write_changelog(
    producer: BatchProducer,
    topic: str,
    records: Sequence[ChangelogRecord],
    on_written: OffsetWritten,
) -> None:
    """Send ``records`` in per-partition batches, in order, and wait for every acknowledgement.

    Within a partition the records keep their order, so a key written twice ends on its last
    value, as compaction and recovery expect.
    """
    by_partition: dict[int, list[ChangelogRecord]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record)
    sent: list[tuple[int, int, Any]] = []  # (partition, records in the batch, its future)
    for partition, items in by_partition.items():
        while items:
            # as many records as fit (the producer's max_batch_size), then the rest
            batch, count = producer.create_batch(), 0
            while count < len(items) and batch.append(
                key=items[count].key, value=items[count].value, timestamp=None
            ) is not None:
                count += 1
            if count == 0:
                raise ValueError(
                    f"a state of {len(items[0].value)} bytes does not fit in a produce batch"
                )
            sent.append((partition, count, await producer.send_batch(
                batch, topic, partition=partition)))
            items = items[count:]
    for partition, count, future in sent:
        metadata = await future
        on_written(TP(topic, partition), metadata.offset + count - 1)
