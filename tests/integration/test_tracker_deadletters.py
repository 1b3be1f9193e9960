"""Bad messages go to the dead-letter topic with their reason; the good ones around them count."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.deadletter import DeadLetter
from imnm_tracker.testing import TrackerCluster

pytestmark = pytest.mark.integration

PID = "MRN-DL-1"
KEY = PID.encode()


def msg(**fields: Any) -> bytes:
    return json.dumps({"patient_id": PID, "source": "test", **fields}).encode()


STATIN = msg(event_id="ok-1", event_type="medication_order", occurred_at="2025-01-02T08:00:00Z",
             order_id="o-1", status="active",
             medication={"name": "simvastatin 20 mg", "rxnorm": "36567"})
DIAGNOSIS = msg(event_id="ok-2", event_type="diagnosis", occurred_at="2025-01-09T08:00:00Z",
                condition="IMNM", antibody="anti-HMGCR")

BAD: list[tuple[str, bytes | None, bytes, str]] = [
    ("bad JSON", KEY, b'{"event_id": "b-1", "patient_id": "MRN-DL-1", ', "bad_json"),
    ("not UTF-8", KEY, b"\x89PNG\r\n\x1a\n\x00\x00", "bad_json"),
    ("not an object", KEY, b'["MRN-DL-1", "diagnosis"]', "not_an_object"),
    ("missing field", KEY,
     msg(event_id="b-3", event_type="diagnosis", condition="IMNM"), "missing_field"),
    ("unknown event type", KEY,
     msg(event_id="b-4", event_type="vital_sign", occurred_at="2025-01-03T08:00:00Z"),
     "unknown_event_type"),
    ("timestamp without offset", KEY,
     msg(event_id="b-5", event_type="diagnosis", occurred_at="2025-01-03T08:00:00",
         condition="IMNM"), "bad_timestamp"),
    ("implausible CK", KEY,
     msg(event_id="b-6", event_type="lab_result", occurred_at="2025-01-03T08:00:00Z",
         loinc="2157-6", value=3_000_000, unit="U/L"), "implausible_value"),
    ("keyed by someone else", b"MRN-DL-2",
     msg(event_id="b-7", event_type="diagnosis", occurred_at="2025-01-03T08:00:00Z",
         condition="IMNM"), "key_mismatch"),
    ("no key", None,
     msg(event_id="b-8", event_type="diagnosis", occurred_at="2025-01-03T08:00:00Z",
         condition="IMNM"), "key_mismatch"),
]


async def test_each_kind_of_bad_message_is_dead_lettered(tracker_cluster: TrackerCluster) -> None:
    cluster = tracker_cluster
    worker = cluster.start_worker()
    await worker.wait_ready()

    # good, every kind of bad, good: the statin must still meet the diagnosis.
    messages = [(KEY, STATIN), *[(key, value) for _, key, value, _ in BAD], (KEY, DIAGNOSIS)]
    landed = await cluster.publish(messages)

    letters = [DeadLetter.model_validate_json(r.value)
               for r in await cluster.read(cluster.topics.deadletter, at_least=len(BAD))]
    assert len(letters) == len(BAD)
    by_place = {(d.topic, d.partition, d.offset): d for d in letters}
    for (what, key, value, code), meta in zip(BAD, landed[1:-1], strict=True):
        letter = by_place.get((cluster.topics.events, meta.partition, meta.offset))
        assert letter is not None, what
        assert letter.reason_code == code, what
        assert letter.reason, what
        assert letter.key == (None if key is None else key.decode()), what
        assert letter.service == "imnm-tracker"
        if letter.payload_encoding == "base64":
            assert base64.b64decode(letter.payload) == value, what
        else:
            assert letter.payload == value.decode(), what
    assert {d.reason for d in letters if d.reason_code == "implausible_value"} == {
        "value: creatine kinase 3e+06 U/L is implausible (above 1,000,000 U/L)"
    }

    alerts = [AlertTransition.model_validate_json(r.value)
              for r in await cluster.read(cluster.topics.alerts, at_least=1)]
    assert [(a.patient_id, a.rule, a.status) for a in alerts] == [
        (PID, "statin_active", "open")
    ]

    metrics = worker.metrics()
    for code in {code for *_, code in BAD}:
        expected = sum(1 for *_, c in BAD if c == code)
        assert metrics[f'imnm_tracker_events_rejected_total{{reason="{code}"}}'] == expected
    assert worker.metric("imnm_tracker_events_consumed_total") == 2
