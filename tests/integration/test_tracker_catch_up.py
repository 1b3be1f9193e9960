"""A backlog consumed after its time (a history load, a restart after an outage): the tracker
judges each partition on the event times it has reached until its consumer is at the end, so it
gives what ``Replay`` gives rather than alerts judged "now" on half a history."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.kafka.topics import create_topics
from imnm_tracker.testing import TrackerCluster, replay_rows, rows_by_patient, synthetic_history

pytestmark = pytest.mark.integration

NOW = "2025-12-01T00:00:00Z"  # after every event of the history


def _alerts(records: Iterable) -> list[AlertTransition]:  # type: ignore[type-arg]
    return [AlertTransition.model_validate_json(r.value) for r in records]


async def test_a_history_loaded_with_the_clock_past_it_gives_what_replay_gives(
    tracker_cluster: TrackerCluster,
) -> None:
    cluster = tracker_cluster
    lines = synthetic_history(patients=60, seed=23)
    expected = replay_rows(lines, NOW)
    expected_count = sum(len(rows) for rows in expected.values())
    cluster.set_clock(NOW)  # before the worker starts: every message is from the past
    await create_topics(cluster.bootstrap, cluster.topics.all(), cluster.partitions, 1)
    await cluster.publish_lines(lines)

    worker = cluster.start_worker()
    await worker.wait_ready()
    await worker.wait_for(lambda: worker.metric("imnm_tracker_events_consumed_total")
                          + worker.metric("imnm_tracker_events_rejected_total") == len(lines),
                          "every message consumed")
    records = await cluster.read(cluster.topics.alerts, at_least=expected_count)
    assert rows_by_patient(_alerts(records)) == expected
    assert worker.metric("imnm_tracker_catching_up_partitions") == 0  # at the end now
    assert all(r.key == json.loads(r.value)["patient_id"].encode() for r in records)
