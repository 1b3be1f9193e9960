"""Topics: created at start; a wrong partition count is reported, not fatal; a changelog that
does not match its events topic stops the worker with a clear message."""

from __future__ import annotations

import json

import pytest

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.kafka.topics import create_topics, describe_topic_configs
from imnm_tracker.testing import TrackerCluster
from imnm_tracker.topics_setup import changelog_topic

pytestmark = pytest.mark.integration


def event(event_id: str, at: str, **fields: object) -> bytes:
    return json.dumps({"event_id": event_id, "patient_id": "MRN-T-1", "occurred_at": at,
                       **fields}).encode()


async def test_partition_mismatch_is_logged_and_the_worker_runs(
    tracker_cluster: TrackerCluster,
) -> None:
    cluster = tracker_cluster
    await create_topics(cluster.bootstrap, [cluster.topics.events], partitions=2)
    await create_topics(cluster.bootstrap, [cluster.topics.alerts], partitions=5)
    worker = cluster.start_worker()
    await worker.wait_ready()
    log = worker.log_tail(400)
    assert f"topic {cluster.topics.events} has 2 partitions, expected 3" in log
    assert f"topic {cluster.topics.alerts} has 5 partitions, expected 3" in log
    assert worker.metric("imnm_tracker_assigned_partitions") == 2

    await cluster.publish_lines([
        event("t-1", "2025-01-01T08:00:00Z", event_type="medication_order", order_id="o",
              status="active", medication={"name": "pravastatin 40 mg"}),
        event("t-2", "2025-01-02T08:00:00Z", event_type="diagnosis", condition="IMNM"),
    ])
    alerts = [AlertTransition.model_validate_json(r.value)
              for r in await cluster.read(cluster.topics.alerts, at_least=1)]
    assert [(a.rule, a.status) for a in alerts] == [("statin_active", "open")]


async def test_a_changelog_with_other_partitions_stops_the_worker(
    tracker_cluster: TrackerCluster,
) -> None:
    cluster = tracker_cluster
    await create_topics(cluster.bootstrap, [changelog_topic(cluster.app_id)], partitions=2)
    worker = cluster.start_worker()
    assert worker.process.wait(timeout=60) == 2
    log = worker.log_tail()
    assert "state changelog" in log and "has 2 partitions" in log


async def test_the_changelog_is_compacted_and_rolls_its_segments(
    tracker_cluster: TrackerCluster,
) -> None:
    cluster = tracker_cluster
    worker = cluster.start_worker()
    await worker.wait_ready()
    configs = await describe_topic_configs(
        cluster.bootstrap, changelog_topic(cluster.app_id), ["cleanup.policy", "segment.ms"]
    )
    assert configs == {"cleanup.policy": "compact", "segment.ms": "600000"}


@pytest.mark.parametrize(("configs", "reported", "not_reported"), [
    # as created by an earlier version: compacted, segments at the broker's default age
    ({"cleanup.policy": "compact"},
     ["state changelog {changelog} rolls its segments every 604800 s",
      "--entity-name {changelog} --add-config segment.ms=600000"], "not compact"),
    ({"cleanup.policy": "delete", "segment.ms": "600000"},
     ["state changelog {changelog} has cleanup.policy=delete, not compact"],
     "rolls its segments"),
])
async def test_an_existing_changelog_with_other_configs_is_reported(
    tracker_cluster: TrackerCluster, configs: dict[str, str], reported: list[str],
    not_reported: str,
) -> None:
    cluster = tracker_cluster
    changelog = changelog_topic(cluster.app_id)
    await create_topics(cluster.bootstrap, [changelog], partitions=3, configs=configs)
    worker = cluster.start_worker()
    await worker.wait_ready()
    log = worker.log_tail(400)
    for text in reported:
        assert text.format(changelog=changelog) in log
    assert not_reported not in log
