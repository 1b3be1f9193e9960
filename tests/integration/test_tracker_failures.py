"""When output cannot be published the worker stops without acknowledging the batch; after the
cause is fixed, a restarted worker processes those messages again: nothing is lost."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.kafka.topics import create_topics
from imnm_tracker.app import EXIT_BATCH_FAILED
from imnm_tracker.testing import (
    TrackerCluster,
    replay_rows,
    rows_by_patient,
    synthetic_history,
)

pytestmark = pytest.mark.integration

NOW = "2025-12-01T00:00:00Z"


async def _set_max_message_bytes(bootstrap: str, topic: str, size: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(size)}
        )])
    finally:
        await admin.close()


async def test_unpublishable_output_stops_the_worker_and_loses_nothing(
    tracker_cluster: TrackerCluster,
) -> None:
    cluster = tracker_cluster
    lines = synthetic_history(patients=10, seed=8, with_examples=False)
    # Every alert is larger than this: the broker refuses them (not retriable).
    await create_topics(cluster.bootstrap, [cluster.topics.alerts], cluster.partitions,
                        configs={"max.message.bytes": "300"})
    first = cluster.start_worker("w1")
    await first.wait_ready()
    await cluster.publish_lines(lines)
    assert first.process.wait(timeout=60) == EXIT_BATCH_FAILED  # on purpose
    log = first.log_tail(400)
    assert "could not be published or stored" in log and "without acknowledging" in log
    assert "MessageSizeTooLargeError" in log

    await _set_max_message_bytes(cluster.bootstrap, cluster.topics.alerts, 1_048_588)
    second = cluster.start_worker("w2")
    await second.wait_ready()
    await cluster.wait_caught_up()
    cluster.set_clock(NOW)
    expected = replay_rows(lines, NOW)
    total = sum(len(rows) for rows in expected.values())
    got = rows_by_patient(
        AlertTransition.model_validate_json(r.value)
        for r in await cluster.read(cluster.topics.alerts, at_least=total)
    )
    assert got == expected
