"""Two workers share the partitions; when one stops the other takes over its patients, and the
time-based alerts pending for them fire there (the clock moves only after the takeover)."""

from __future__ import annotations

import json
import re

import pytest

from imnm_common.contracts.alerts import AlertTransition
from imnm_tracker.testing import (
    TrackerCluster,
    first_occurrences,
    replay_rows,
    rows_by_patient,
    synthetic_history,
)

pytestmark = pytest.mark.integration

NOW = "2025-12-01T00:00:00Z"
TIME_BASED = {"pjp_prophylaxis_missing", "calcium_vitamin_d_missing", "ck_monitoring_overdue",
              "muscle_assessment_overdue", "bone_protection_review",
              "steroid_sparing_agent_missing"}


def owned_partitions(log: str) -> set[int]:
    """The partitions of the last recovery a worker logged."""
    found = re.findall(r"recovered: tracking \d+ patients on partitions \[([\d, ]*)\]", log)
    assert found, "no recovery logged"
    return {int(p) for p in found[-1].split(",") if p.strip()}


async def test_the_remaining_worker_takes_over_and_fires_pending_alerts(
    tracker_cluster: TrackerCluster,
) -> None:
    cluster = tracker_cluster
    lines = synthetic_history(patients=60, seed=45, with_examples=False)
    patients = {json.loads(line)["patient_id"] for line in lines}

    one, two = cluster.start_worker("w1"), cluster.start_worker("w2")
    await one.wait_ready()
    await two.wait_ready()
    # Both in the group: the partitions are split (3 = 2 + 1).
    await one.wait_for(
        lambda: one.metric("imnm_tracker_assigned_partitions") > 0
        and two.metric("imnm_tracker_assigned_partitions") > 0
        and one.metric("imnm_tracker_assigned_partitions")
        + two.metric("imnm_tracker_assigned_partitions") == cluster.partitions,
        "the partitions split between two workers",
    )
    landed = await cluster.publish_lines(lines)
    await cluster.wait_caught_up()
    on_two = owned_partitions(two.log_path.read_text(errors="replace"))
    assert on_two and on_two != set(range(cluster.partitions))
    two_patients = {json.loads(line)["patient_id"] for line, meta in zip(lines, landed,
                                                                           strict=True)
                    if meta.partition in on_two}
    assert 0 < len(two_patients) < len(patients)
    await two.wait_for(lambda: two.metric("imnm_tracker_tracked_patients") == len(two_patients),
                       "w2 tracking its patients")
    # What fires while the clock stands still: judged at event times only. The rest of the
    # expected transitions are due after each patient's last event: pending, for the timer.
    before = rows_by_patient(
        AlertTransition.model_validate_json(r.value)
        for r in await cluster.read(cluster.topics.alerts)
    )

    assert two.stop() == 0  # graceful: leaves the group, the survivor rebalances at once
    await one.wait_for(
        lambda: one.metric("imnm_tracker_assigned_partitions") == cluster.partitions
        and one.metric("imnm_tracker_tracked_patients") == len(patients),
        "w1 owning every partition and patient",
        timeout=90.0,
    )

    cluster.set_clock(NOW)
    expected = replay_rows(lines, NOW)
    total = sum(len(rows) for rows in expected.values())
    got, repeats = first_occurrences(rows_by_patient(
        AlertTransition.model_validate_json(r.value)
        for r in await cluster.read(cluster.topics.alerts, at_least=total)
    ))
    assert got == expected
    assert repeats == 0
    pending_for_two = [row for patient in two_patients for row in got.get(patient, [])
                       if row not in before.get(patient, [])]
    assert pending_for_two, "the handed-over patients had nothing pending"
    assert any(row[2] in TIME_BASED for row in pending_for_two)
    assert one.metric("imnm_tracker_timer_runs_total") > 0
