"""The consume loop of the services that are not faust apps (the console, ingest)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord

BATCH_RECORDS = 500


async def consume_in_batches(
    consumer: AIOKafkaConsumer,
    handle: Callable[[list[ConsumerRecord]], Awaitable[None]],
    max_records: int = BATCH_RECORDS,
) -> None:
    """Hand each polled batch to ``handle``, then commit its offsets; until cancelled.

    At least once: offsets are committed only after ``handle`` returned, so whatever it wrote
    (rows, produced messages it awaited) is done before the batch counts as consumed. A crash in
    between redelivers the batch, which is why every handler here is idempotent.
    """
    while True:
        polled = await consumer.getmany(timeout_ms=1000, max_records=max_records)
        records = [record for part in polled.values() for record in part]
        if records:
            await handle(records)
            await consumer.commit()
