"""``imnm redrive`` on the real broker: dead letters whose cause is fixed go back to the topic
they were read from, the tracker takes them, a message still refused is dead-lettered again, and
the next run sends only what came after the last."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.deadletter import DeadLetter, rejected_message
from imnm_common.kafka.dead_letters import REDRIVEN_FROM_HEADER
from imnm_tracker.testing import TrackerCluster, imnm_executable

pytestmark = pytest.mark.integration

PID = "MRN-RD-1"
KEY = PID.encode()


def event(**fields: Any) -> bytes:
    return json.dumps({"patient_id": PID, "source": "test", **fields}).encode()


DIAGNOSIS = event(event_id="rd-dx", event_type="diagnosis", occurred_at="2025-01-09T08:00:00Z",
                  condition="IMNM", antibody="anti-HMGCR")
# Refused by an earlier version (say, before it knew this unit); valid today.
STATIN = event(event_id="rd-statin", event_type="medication_order",
               occurred_at="2025-01-10T08:00:00Z", order_id="o-rd-1", status="active",
               medication={"name": "atorvastatin 40 mg", "rxnorm": "83367"})
STILL_BAD = b'{"event_id": "rd-bad", "patient_id": "MRN-RD-1", '


def redrive(cluster: TrackerCluster, *args: str) -> str:
    done = subprocess.run(
        [*imnm_executable(), "redrive", *args], env=cluster.env() | {
            "IMNM_REDRIVE_GROUP_ID": f"{cluster.app_id}.redrive"},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.strip().splitlines()[-1]


async def test_fixed_letters_are_taken_and_a_refused_one_comes_back(
    tracker_cluster: TrackerCluster,
) -> None:
    cluster = tracker_cluster
    worker = cluster.start_worker()
    await worker.wait_ready()
    topics = cluster.topics
    older = rejected_message(
        value=STATIN, key=KEY, topic=topics.events, partition=0, offset=7,
        reason="unit: not known then", reason_code="invalid_value", service="imnm-tracker",
        rejected_at=datetime(2025, 1, 10, 8, 1, tzinfo=UTC),
    )
    console_refused = rejected_message(
        value=b"{}", key=KEY, topic=topics.alerts, partition=0, offset=3, reason="schema",
        reason_code="schema_violation", service="imnm-console",
        rejected_at=datetime(2025, 1, 10, 8, 2, tzinfo=UTC),
    )
    await cluster.publish([(KEY, older.model_dump_json().encode()),
                           (KEY, console_refused.model_dump_json().encode())],
                          topic=topics.deadletter)
    await cluster.publish([(KEY, DIAGNOSIS), (KEY, STILL_BAD)])
    await cluster.read(topics.deadletter, at_least=3)  # the tracker refused STILL_BAD

    assert redrive(cluster, "--dry-run") == (
        "would re-drive 2 dead letters (bad_json 1, invalid_value 1); left 1 "
        "(not an input topic 1)"
    )
    assert redrive(cluster, "--reason-code", "invalid_value", "--reason-code", "bad_json") == (
        "re-drove 2 dead letters (bad_json 1, invalid_value 1); left 1 (not an input topic 1)"
    )

    alerts = [AlertTransition.model_validate_json(r.value)
              for r in await cluster.read(topics.alerts, at_least=1)]
    assert [(a.patient_id, a.rule, a.status) for a in alerts] == [
        (PID, "statin_active", "open")]
    sent_again = [r for r in await cluster.read(topics.events, at_least=4)
                  if dict(r.headers).get(REDRIVEN_FROM_HEADER)]
    assert sorted(r.value for r in sent_again) == sorted([STATIN, STILL_BAD])
    assert all(r.key == KEY for r in sent_again)

    letters = [DeadLetter.model_validate_json(r.value)
               for r in await cluster.read(topics.deadletter, at_least=4)]
    assert [letter.payload for letter in letters].count(STILL_BAD.decode()) == 2  # refused again

    # The next run starts after the last: only the letter written since, which is refused again.
    assert redrive(cluster) == "re-drove 1 dead letter (bad_json 1); left 0"
    await cluster.read(topics.deadletter, at_least=5)
    assert redrive(cluster, "--reason-code", "invalid_value") == (
        "re-drove 0 dead letters; left 1 (not chosen 1)")
    assert worker.metric("imnm_tracker_events_consumed_total") == 2  # the diagnosis, the statin
