"""Sending dead letters back to the topics they were read from (the Kafka side of
:mod:`imnm_common.service_layer.redrive`).

The dead-letter topic is read from the re-drive consumer group's committed offsets (or from its
start) up to the end it had when the run began, so a run is finite and a letter written by this
very run (a message refused again) waits for the next one. The offsets are committed only once
every chosen message is acknowledged by the broker: a run that fails sends those letters again
next time, which the suite takes as duplicates.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from imnm_common.service_layer.redrive import RedriveChoice, RedriveTally, to_redrive

# Where a re-driven message came from, for whoever reads the topic: "<topic>/<partition>/<offset>"
# of its dead letter.
REDRIVEN_FROM_HEADER = "imnm-redriven-from"


@dataclass(frozen=True, slots=True)
class RedriveRun:
    bootstrap: str
    deadletter_topic: str
    group_id: str
    from_beginning: bool = False
    dry_run: bool = False


async def redrive(run: RedriveRun, choice: RedriveChoice) -> RedriveTally:
    tally = RedriveTally()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=run.bootstrap, group_id=run.group_id, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        # the producer fetches the topic's metadata, which an assigning consumer lacks
        partitions = [TopicPartition(run.deadletter_topic, p)
                      for p in sorted(await producer.partitions_for(run.deadletter_topic))]
        consumer.assign(partitions)
        if run.from_beginning:
            await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = []
        reached = {tp: await consumer.position(tp) for tp in partitions}
        while any(reached[tp] < ends[tp] for tp in partitions):
            batches = await consumer.getmany(*[tp for tp in partitions if reached[tp] < ends[tp]],
                                             timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    message = to_redrive(record.value, choice, tally)
                    if message is not None and not run.dry_run:
                        where = f"{tp.topic}/{tp.partition}/{record.offset}".encode()
                        pending.append(await producer.send(
                            message.topic, key=message.key, value=message.value,
                            headers=[(REDRIVEN_FROM_HEADER, where)],
                        ))
                reached[tp] = await consumer.position(tp)
        if not run.dry_run:
            await asyncio.gather(*pending)  # every message acknowledged before the commit
            await consumer.commit({tp: ends[tp] for tp in partitions})
        return tally
    finally:
        await producer.stop()
        await consumer.stop()
