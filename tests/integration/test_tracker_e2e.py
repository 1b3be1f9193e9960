"""End to end on the real broker: the tracker gives, patient by patient, what ``Replay`` gives.

Why per patient: Kafka orders messages within a partition only, and partitions are processed
independently (and the timer fires per worker), so transitions of different patients interleave
differently. Within one patient (one key, one partition) the sequence must be identical.

The clock: workers start with their clock at the epoch, before every event, so batches judge
nothing "now" and only the events themselves move each patient's time, as in a replay. Once
every message is consumed the clock moves to the replay's ``--now`` and the timer finishes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.deadletter import DeadLetter
from imnm_tracker.testing import (
    TrackerCluster,
    imnm_executable,
    replay_rows,
    rows_by_patient,
    synthetic_history,
)

pytestmark = pytest.mark.integration

NOW = "2025-12-01T00:00:00Z"


async def test_kafka_gives_what_replay_gives(
    tracker_cluster: TrackerCluster, tmp_path: Path
) -> None:
    cluster = tracker_cluster
    lines = synthetic_history(patients=60, seed=21)
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(lines) + b"\n")
    expected = replay_rows(lines, NOW)
    expected_count = sum(len(rows) for rows in expected.values())
    assert expected_count > 100 and len(expected) > 30

    worker = cluster.start_worker()
    await worker.wait_ready()
    published = subprocess.run(
        [*imnm_executable(), "publish", str(events_file)],
        env=cluster.env(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert published.returncode == 0, published.stderr
    assert f"published {len(lines)} events" in published.stderr

    await worker.wait_for(lambda: worker.metric("imnm_tracker_events_consumed_total")
                          + worker.metric("imnm_tracker_events_rejected_total") == len(lines),
                          "every message consumed")
    before_now = sum(len(rows) for rows in
                     rows_by_patient(_alerts(await cluster.read(cluster.topics.alerts))).values())
    assert 0 < before_now < expected_count  # time-based alerts wait for the clock

    cluster.set_clock(NOW)
    records = await cluster.read(cluster.topics.alerts, at_least=expected_count)
    got = rows_by_patient(_alerts(records))
    assert got == expected
    assert all(r.key == json.loads(r.value)["patient_id"].encode() for r in records)

    dead = [DeadLetter.model_validate_json(r.value)
            for r in await cluster.read(cluster.topics.deadletter, at_least=1)]
    assert [(d.reason_code, json.loads(d.payload)["event_id"]) for d in dead] == [
        ("implausible_value", "bad-1")
    ]

    metrics = worker.metrics()
    assert metrics['imnm_tracker_events_rejected_total{reason="implausible_value"}'] == 1
    assert metrics["imnm_tracker_duplicates_total"] == 1
    assert worker.metric("imnm_tracker_alert_transitions_total") == expected_count
    assert metrics["imnm_tracker_tracked_patients"] == len({
        json.loads(line)["patient_id"] for line in lines
    }) - 1  # MRN-3003 only ever sent a rejected event
    assert metrics["imnm_tracker_event_processing_seconds_count"] == len(lines)
    assert metrics["imnm_tracker_timer_runs_total"] > 0
    # the worker reports its collector's pauses (full passes included)
    assert 'imnm_tracker_gc_pause_seconds_count{generation="2"}' in metrics

    tail = subprocess.run(
        [*imnm_executable(), "tail", "--from-beginning", "--max-messages", str(expected_count)],
        env=cluster.env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert tail.returncode == 0, tail.stderr
    assert rows_by_patient(
        AlertTransition.model_validate_json(line) for line in tail.stdout.splitlines()
    ) == expected

    assert worker.stop() == 0


def _alerts(records: Iterable[Any]) -> list[AlertTransition]:
    return [AlertTransition.model_validate_json(r.value) for r in records]
