"""The RocksDB store (``rocksdb://``, the ``rocksdb`` extra, part of the dev install): state
survives a restart from the worker's local files, and the changelog is not replayed."""

from __future__ import annotations

import json
import re

import pytest

from imnm_common.contracts.alerts import AlertTransition
from imnm_tracker.testing import TrackerCluster, synthetic_history

pytestmark = pytest.mark.integration

PATIENT = "MRN-ROCKS-1"
STATIN = json.dumps({
    "event_id": "rocks-statin", "patient_id": PATIENT, "event_type": "medication_order",
    "occurred_at": "2024-03-01T08:00:00Z", "order_id": "rocks-o1", "status": "active",
    "medication": {"name": "simvastatin 20 mg", "rxnorm": "36567"},
}).encode()
DIAGNOSIS = json.dumps({
    "event_id": "rocks-dx", "patient_id": PATIENT, "event_type": "diagnosis",
    "occurred_at": "2025-11-20T08:00:00Z", "condition": "IMNM",
}).encode()


async def test_rocksdb_state_survives_a_restart_from_local_files(
    tracker_cluster: TrackerCluster,
) -> None:
    cluster = tracker_cluster
    cohort = synthetic_history(patients=40, seed=71, with_examples=False)
    first = cluster.start_worker("rocks", "--store", "rocksdb://")
    await first.wait_ready()
    await cluster.publish_lines([STATIN, *cohort])
    await cluster.wait_caught_up()
    tracked = first.metric("imnm_tracker_tracked_patients")
    assert tracked == 41
    assert first.stop() == 0
    data_dir = cluster.workdir / "rocks" / "data"
    assert any(p.suffix == ".sst" or p.name == "CURRENT" for p in data_dir.rglob("*"))

    log_before = first.log_path.read_text(errors="replace")
    again = cluster.start_worker("rocks", "--store", "rocksdb://")  # same name: same data dir
    await again.wait_ready()
    assert again.metric("imnm_tracker_tracked_patients") == tracked
    await cluster.publish_lines([DIAGNOSIS])
    await cluster.wait_caught_up()

    alerts = [AlertTransition.model_validate_json(r.value)
              for r in await cluster.read(cluster.topics.alerts)]
    assert [(a.rule, a.status) for a in alerts if a.patient_id == PATIENT] == [
        ("statin_active", "open")
    ]
    # faust logs, per changelog partition, the highwater and where the recovery starts
    # reading. From local RocksDB offsets it starts at the highwater: nothing to replay.
    restart_log = again.log_path.read_text(errors="replace")[len(log_before):]
    highwater, _, starts = restart_log.partition("active offsets at start of reading")
    assert _table_rows(highwater) and _table_rows(starts)[:3] == _table_rows(highwater)[-3:]


def _table_rows(text: str) -> list[tuple[int, int]]:
    """(partition, offset) rows of faust's recovery tables, in order."""
    return [(int(p), int(o)) for p, o in _ROW.findall(text)]


_ROW = re.compile(r"^\|\s*(?:\S+changelog|\u3003)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", re.M)
