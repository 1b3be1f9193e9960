"""A site switches a rule off and restarts its tracker: the open alerts of that rule resolve,
on the real broker, without a new event for the patient (the worker finds the patients judged
under other rules from the table's headers and judges them again at its first tick)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imnm_common.contracts.alerts import AlertTransition
from imnm_tracker.testing import TrackerCluster, eventually

pytestmark = pytest.mark.integration

PATIENT = "MRN-RULES-1"
NOW = "2025-12-01T00:00:00Z"
EVENTS = [
    json.dumps({
        "event_id": "rc-dx", "patient_id": PATIENT, "event_type": "diagnosis",
        "occurred_at": "2025-11-20T08:00:00Z", "condition": "IMNM",
    }).encode(),
    json.dumps({
        "event_id": "rc-statin", "patient_id": PATIENT, "event_type": "medication_order",
        "occurred_at": "2025-11-21T08:00:00Z", "order_id": "rc-o1", "status": "active",
        "medication": {"name": "atorvastatin 40 mg", "rxnorm": "83367"},
    }).encode(),
]


async def statin_rows(cluster: TrackerCluster) -> list[tuple[str, str]]:
    alerts = [AlertTransition.model_validate_json(r.value)
              for r in await cluster.read(cluster.topics.alerts, idle=0.5)]
    return [(a.rule, a.status) for a in alerts if a.patient_id == PATIENT]


async def test_switching_a_rule_off_resolves_its_alerts_after_a_restart(
    tracker_cluster: TrackerCluster, tmp_path: Path
) -> None:
    cluster = tracker_cluster
    cluster.set_clock(NOW)
    first = cluster.start_worker("w1")
    await first.wait_ready()
    await cluster.publish_lines(EVENTS)
    await cluster.wait_caught_up()

    async def opened() -> bool:
        return await statin_rows(cluster) == [("statin_active", "open")]

    await eventually(opened, "the statin alert opened")
    assert first.stop() == 0

    rules = tmp_path / "rules.yaml"
    rules.write_text("statin_active:\n  enabled: false\n")
    cluster.rules_config = str(rules)
    second = cluster.start_worker("w2")
    await second.wait_ready()

    async def resolved() -> bool:
        return await statin_rows(cluster) == [
            ("statin_active", "open"), ("statin_active", "resolved")]

    await eventually(resolved, "the statin alert resolved by the new rules")
    assert "judged under another rules configuration" in second.log_tail(200)
    assert second.stop() == 0
