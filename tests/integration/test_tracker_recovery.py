"""SIGKILL a worker mid-stream; a new one recovers the state from the changelog and loses nothing.

At-least-once: transitions published just before the kill, whose state write or offset commit
did not make it, are published again with the same ``alert_id``. So the comparison with
``Replay`` de-duplicates on ``(alert_id, status)``, keeping the first occurrence, and then
demands the identical per-patient sequence: nothing lost, nothing reordered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

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

WATCHED = "MRN-RECOVER-1"
STATIN = json.dumps({
    "event_id": "rec-statin", "patient_id": WATCHED, "event_type": "medication_order",
    "occurred_at": "2023-01-02T08:00:00Z", "order_id": "rec-o1", "status": "active",
    "medication": {"name": "rosuvastatin 10 mg", "rxnorm": "301542"},
}).encode()
DIAGNOSIS = json.dumps({
    "event_id": "rec-dx", "patient_id": WATCHED, "event_type": "diagnosis",
    "occurred_at": "2025-11-20T08:00:00Z", "condition": "IMNM", "antibody": "anti-HMGCR",
}).encode()


async def _publish_slowly(cluster: TrackerCluster, lines: Sequence[bytes], chunks: int) -> None:
    size = max(1, len(lines) // chunks)
    for start in range(0, len(lines), size):
        await cluster.publish_lines(lines[start:start + size])
        await asyncio.sleep(0.1)


async def test_hard_kill_then_restart_recovers_state_and_loses_nothing(
    tracker_cluster: TrackerCluster,
) -> None:
    cluster = tracker_cluster
    cohort = synthetic_history(patients=80, seed=33, with_examples=False)
    first = cluster.start_worker("w1")
    await first.wait_ready()

    # The statin is processed, in the changelog and committed before the kill: the next worker
    # can only know about it from the changelog.
    await cluster.publish_lines([STATIN])
    await cluster.wait_caught_up()

    stream = asyncio.create_task(_publish_slowly(cluster, cohort, chunks=30))
    await first.wait_for(lambda: first.metric("imnm_tracker_events_consumed_total") > 300,
                         "some of the stream consumed")
    consumed_before_kill = int(first.metric("imnm_tracker_events_consumed_total"))
    first.kill()
    await stream
    assert not stream.exception()

    started = time.monotonic()
    second = cluster.start_worker("w2")
    ready_after = await second.wait_ready()
    await cluster.publish_lines([DIAGNOSIS])
    await cluster.wait_caught_up()
    caught_up_after = time.monotonic() - started

    alerts = [AlertTransition.model_validate_json(r.value)
              for r in await cluster.read(cluster.topics.alerts)]
    watched = [(a.rule, a.status) for a in alerts if a.patient_id == WATCHED]
    assert watched == [("statin_active", "open")]  # the statin came back from the changelog

    # Replay's clock is global: give it the events in time order, as the per-patient tracker
    # effectively sees them.
    lines = sorted([STATIN, *cohort, DIAGNOSIS], key=lambda line: json.loads(line)["occurred_at"])
    expected = replay_rows(lines, NOW)
    cluster.set_clock(NOW)
    total = sum(len(rows) for rows in expected.values())
    records = await cluster.read(cluster.topics.alerts, at_least=total)
    got, repeats = first_occurrences(
        rows_by_patient(AlertTransition.model_validate_json(r.value) for r in records)
    )
    assert got == expected
    print(  # the numbers for the report (pytest -s)
        f"\nrecovery: killed after {consumed_before_kill} events; new worker ready "
        f"{ready_after:.1f} s after start, caught up after {caught_up_after:.1f} s; "
        f"{len(records)} transitions published for {total} distinct ({repeats} repeated)"
    )
    assert second.stop() == 0
