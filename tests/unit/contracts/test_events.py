"""events.v1 validation: good events parse, every kind of bad input is rejected with a reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imnm_common.contracts.events import (
    EventRejected,
    LabResultEvent,
    MedicationOrderEvent,
    parse_event,
    parse_event_object,
)

BASE: dict[str, Any] = {
    "event_id": "evt-1",
    "patient_id": "MRN-1",
    "occurred_at": "2025-03-01T08:30:00+01:00",
}


def good(**fields: Any) -> dict[str, Any]:
    return {**BASE, **fields}


GOOD_EVENTS = {
    "diagnosis": good(event_type="diagnosis", condition="IMNM", antibody="anti-SRP"),
    "lab": good(
        event_type="lab_result", loinc="2157-6", value=4200, unit="U/L", reference_high=200
    ),
    "lab_bound": good(event_type="lab_result", loinc="2157-6", value=20000, comparator=">"),
    "lab_text": good(event_type="lab_result", loinc="93493-5", value_text="positive"),
    "order": good(
        event_type="medication_order",
        order_id="o-1",
        status="active",
        medication={"rxnorm": "8640", "name": "prednisone 20 mg tablet"},
        dose={"value": 60, "unit": "mg"},
        frequency={"times": 1, "period": 1, "unit": "d"},
        route="oral",
    ),
    "order_minimal": good(
        event_type="medication_order", order_id="o-2", status="stopped",
        medication={"atc": "C10AA05"},
    ),
    "mmt8": good(event_type="muscle_assessment", instrument="MMT8", score=150),
}


@pytest.mark.parametrize("name", sorted(GOOD_EVENTS))
def test_good_events_parse_from_bytes_and_objects(name: str) -> None:
    raw = GOOD_EVENTS[name]
    from_bytes = parse_event(json.dumps(raw).encode())
    assert from_bytes == parse_event_object(raw)
    assert from_bytes.event_type == raw["event_type"]
    assert from_bytes.occurred_at.utcoffset() is not None


def test_timestamps_keep_their_instant_across_offsets() -> None:
    event = parse_event(json.dumps(good(**GOOD_EVENTS["diagnosis"])))
    assert event.occurred_at.isoformat() == "2025-03-01T08:30:00+01:00"
    assert event.occurred_at.timestamp() == 1740814200.0


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    event = parse_event(json.dumps({**GOOD_EVENTS["diagnosis"], "encounter": "E-9"}))
    assert event.event_id == "evt-1"


def test_defaults() -> None:
    lab = parse_event(json.dumps(GOOD_EVENTS["lab"]))
    assert isinstance(lab, LabResultEvent) and lab.status == "final"
    order = parse_event(json.dumps(GOOD_EVENTS["order_minimal"]))
    assert isinstance(order, MedicationOrderEvent) and order.dose is None


def _drop(raw: dict[str, Any], *path: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(raw))
    target = copy
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return copy


def _set(raw: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(raw))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


ORDER = GOOD_EVENTS["order"]
LAB = GOOD_EVENTS["lab"]
BAD: list[tuple[str, bytes | str, str, str]] = [
    ("malformed json", b'{"event_id": "x", ', "bad_json", "malformed JSON"),
    ("not utf-8 json", b"\xff\xfe{", "bad_json", "malformed JSON"),
    ("array", b"[1, 2]", "not_an_object", "event must be a JSON object"),
    ("string", b'"hello"', "not_an_object", "event must be a JSON object"),
    ("no event_type", json.dumps(_drop(LAB, "event_type")), "missing_field", "event_type:"),
    ("unknown event_type", json.dumps(_set(LAB, "vital_sign", "event_type")),
     "unknown_event_type", "event_type: unknown event type 'vital_sign'"),
    ("missing event_id", json.dumps(_drop(LAB, "event_id")), "missing_field",
     "event_id: field required"),
    ("missing patient_id", json.dumps(_drop(LAB, "patient_id")), "missing_field",
     "patient_id: field required"),
    ("empty patient_id", json.dumps(_set(LAB, "", "patient_id")), "schema_violation",
     "patient_id:"),
    ("overlong event_id", json.dumps(_set(LAB, "x" * 129, "event_id")), "schema_violation",
     "event_id:"),
    ("missing occurred_at", json.dumps(_drop(LAB, "occurred_at")), "missing_field",
     "occurred_at: field required"),
    ("timestamp without offset", json.dumps(_set(LAB, "2025-03-01T08:30:00", "occurred_at")),
     "bad_timestamp", "occurred_at: timestamp must carry a UTC offset"),
    ("unparseable timestamp", json.dumps(_set(LAB, "yesterday", "occurred_at")),
     "bad_timestamp", "occurred_at: not an RFC 3339 timestamp"),
    ("epoch number timestamp", json.dumps(_set(LAB, 1740814200, "occurred_at")),
     "bad_timestamp", "occurred_at:"),
    ("wrong-typed value", json.dumps(_set(LAB, "4200", "value")), "schema_violation",
     "value:"),
    ("negative value", json.dumps(_set(LAB, -1, "value")), "out_of_range",
     "value: Input should be greater than or equal to 0"),
    ("implausible CK", json.dumps(_set(LAB, 1_000_001, "value")), "implausible_value",
     "creatine kinase 1e+06 U/L is implausible"),
    ("lab without any value", json.dumps(_drop(LAB, "value")), "invalid_value",
     "value: one of value or value_text is required"),
    ("comparator without a value",
     json.dumps(_set(_drop(_set(LAB, "hemolysed", "value_text"), "value"), ">", "comparator")),
     "invalid_value", "comparator: a comparator needs the value it bounds"),
    ("unknown comparator", json.dumps(_set(LAB, "~", "comparator")), "schema_violation",
     "comparator:"),
    ("bad LOINC", json.dumps(_set(LAB, "CK", "loinc")), "schema_violation", "loinc:"),
    ("unknown lab status", json.dumps(_set(LAB, "draft", "status")), "schema_violation",
     "status:"),
    ("MMT-8 above 150", json.dumps(_set(GOOD_EVENTS["mmt8"], 151, "score")),
     "out_of_range", "score: Input should be less than or equal to 150"),
    ("unknown instrument", json.dumps(_set(GOOD_EVENTS["mmt8"], "MRC", "instrument")),
     "schema_violation", "instrument:"),
    ("order without medication identity", json.dumps(_set(ORDER, {}, "medication")),
     "invalid_value", "medication: at least one of rxnorm, atc or name is required"),
    ("zero dose", json.dumps(_set(ORDER, 0, "dose", "value")), "out_of_range",
     "dose.value: Input should be greater than 0"),
    ("dose as text", json.dumps(_set(ORDER, "60", "dose", "value")), "schema_violation",
     "dose.value:"),
    ("zero frequency times", json.dumps(_set(ORDER, 0, "frequency", "times")), "out_of_range",
     "frequency.times:"),
    ("bad period unit", json.dumps(_set(ORDER, "fortnight", "frequency", "unit")),
     "schema_violation", "frequency.unit:"),
    ("unknown order status", json.dumps(_set(ORDER, "paused", "status")), "schema_violation",
     "status:"),
    ("missing order_id", json.dumps(_drop(ORDER, "order_id")), "missing_field",
     "order_id: field required"),
    ("bad antibody", json.dumps(_set(GOOD_EVENTS["diagnosis"], "anti-Jo1", "antibody")),
     "schema_violation", "antibody:"),
    ("statin_associated as string",
     json.dumps(_set(GOOD_EVENTS["diagnosis"], "yes", "statin_associated")),
     "schema_violation", "statin_associated:"),
]


@pytest.mark.parametrize(("case", "raw", "code", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_rejected_with_a_reason_naming_the_field(
    case: str, raw: bytes | str, code: str, reason: str
) -> None:
    with pytest.raises(EventRejected) as caught:
        parse_event(raw)
    assert caught.value.code == code, caught.value.reason
    assert reason in caught.value.reason
    assert caught.value.reason == str(caught.value)


def test_reason_codes_are_label_safe() -> None:
    codes = {code for _, _, code, _ in BAD}
    assert all(code.replace("_", "").isalpha() and code.islower() for code in codes)


def test_parse_event_object_rejects_non_objects() -> None:
    with pytest.raises(EventRejected, match="JSON object"):
        parse_event_object(["not", "an", "object"])


def test_parse_event_object_is_as_strict_as_parse_event() -> None:
    with pytest.raises(EventRejected, match=r"dose\.value"):
        parse_event_object(_set(ORDER, "60", "dose", "value"))
