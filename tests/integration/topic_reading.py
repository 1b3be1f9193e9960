"""Reading a whole test topic from the beginning, the way a checking subscriber would."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord


async def read_topic(bootstrap: str, topic: str, want: int, timeout: float = 60
                     ) -> list[ConsumerRecord]:
    """Every record of ``topic``: wait for ``want`` of them, then 1.5 s more, so that a test
    also sees any record beyond those it expected."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < want and time.monotonic() < deadline:
            for part in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(part)
        for part in (await consumer.getmany(timeout_ms=1500)).values():
            records.extend(part)
    finally:
        await consumer.stop()
    return records
