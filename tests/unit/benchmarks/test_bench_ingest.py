"""The ingest benchmark's code on a tiny stream: it runs, and its figures are consistent; and its
raw-message writers are the inverse of the converters. Nothing here asserts a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.ingest_step import round_trip_differences
from bench.raw_messages import fhir_for, hl7v2_for, repeat_pattern
from bench.run import main as bench_main
from imnm_common.contracts.events import parse_event_object
from imnm_ingest.domain.fhir import events_from_fhir
from imnm_ingest.domain.hl7v2 import events_from_hl7v2

REPO = Path(__file__).resolve().parents[3]


def test_make_bench_ingest_section_on_a_tiny_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)  # the step runs as a ``python -m bench.ingest_step`` child
    assert bench_main(["--patients", "8", "--runs", "1", "--only", "ingest",
                       "--results-dir", str(tmp_path)]) == 0
    ingest = json.loads((tmp_path / "bench-latest.json").read_text())["ingest"]
    for kind in ("hl7v2", "fhir"):
        figures = ingest[kind]
        assert 0 < figures["messages"] <= ingest["source_events"], kind
        assert figures["rejected"] == 0, figures["first_rejection"]
        assert figures["events"] == figures["messages"], kind  # one event per message
        assert figures["round_trip_mismatches"] == 0, figures["mismatch_examples"]
        assert figures["messages_per_second"] > 0
        assert figures["events_per_second"] > 0
    # FHIR also carries the diagnoses; neither format carries the muscle assessments
    assert ingest["hl7v2"]["messages"] < ingest["fhir"]["messages"] < ingest["source_events"]
    assert "ingest:" in capsys.readouterr().out


# Text with every HL7 delimiter, ids no FHIR id may hold, a non-UTC offset with a fraction.
_AWKWARD = {"patient_id": "MRN|7^a&b~c\\d é", "occurred_at": "2025-03-04T05:06:07.1234-05:00",
            "source": "hand-built"}
_LABS = [
    {"event_id": "lab-1", "loinc": "2157-6", "value": 12345.5, "unit": "U/L",
     "reference_high": 195.5, "status": "corrected", "result_id": "R|1"},
    {"event_id": "lab-2", "loinc": "93493-5", "value_text": "pos | ^ & ~ \\ itive\nline two",
     "status": "preliminary"},
    {"event_id": "lab-3", "loinc": "2157-6", "status": "entered-in-error"},
    {"event_id": "lab-4", "loinc": "2157-6", "value": 0.00001, "status": "cancelled"},
    {"event_id": "lab-5", "loinc": "2157-6", "value": 20000, "comparator": ">", "unit": "U/L"},
    {"event_id": "lab-6", "loinc": "35151-2", "value": 1.5, "comparator": "<="},
]
_ORDERS = [
    {"event_id": "ord-1", "order_id": "O 1/2", "status": "on-hold",
     "medication": {"rxnorm": "8640", "atc": "H02AB07", "name": "prednisone 5 mg | tab"},
     "dose": {"value": 7.5, "unit": "mg"}, "frequency": {"times": 1, "period": 8, "unit": "h"},
     "route": "oral"},
    {"event_id": "ord-2", "order_id": "O2", "status": "completed",
     "medication": {"atc": "L04AX03"}, "dose": {"value": 1, "unit": "tablet"},
     "frequency": {"times": 1, "period": 2, "unit": "wk"}, "route": "TP"},
    {"event_id": "ord-3", "order_id": "O3", "status": "cancelled", "medication": {"name": "IVIG"},
     "frequency": {"times": 1, "period": 3, "unit": "mo"}},
    {"event_id": "ord-4", "order_id": "O4", "status": "stopped",
     "medication": {"rxnorm": "83367"}, "frequency": {"times": 3, "period": 1, "unit": "d"}},
    {"event_id": "ord-5", "order_id": "O4", "status": "active",
     "medication": {"rxnorm": "83367", "name": "atorvastatin"},
     "frequency": {"times": 1, "period": 24, "unit": "h"}},  # Q24H: back as once a day
]
_DIAGNOSES = [
    {"event_id": "dx-1", "condition": "IMNM", "antibody": "anti-SRP", "status": "resolved"},
    {"event_id": "dx-2", "condition": "IMNM", "antibody": "seronegative",
     "status": "entered-in-error"},
    {"event_id": "dx-3", "condition": "IMNM", "antibody": "anti-HMGCR",
     "statin_associated": True},
]


def _event(event_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {**_AWKWARD, "event_type": event_type, **fields}


@pytest.mark.parametrize(
    "event",
    [_event("lab_result", f) for f in _LABS] + [_event("medication_order", f) for f in _ORDERS],
    ids=lambda event: event["event_id"],
)
def test_hl7v2_written_then_converted_gives_the_clinical_fields_back(
    event: dict[str, Any],
) -> None:
    raw = hl7v2_for(event, "CTRL|1")
    assert raw is not None
    [converted] = events_from_hl7v2(raw)
    assert round_trip_differences(parse_event_object(event), converted) == []


@pytest.mark.parametrize(
    "event",
    [_event("lab_result", f) for f in _LABS] + [_event("medication_order", f) for f in _ORDERS]
    + [_event("diagnosis", f) for f in _DIAGNOSES],
    ids=lambda event: event["event_id"],
)
def test_fhir_written_then_converted_gives_the_clinical_fields_back(
    event: dict[str, Any],
) -> None:
    raw = fhir_for(event)
    assert raw is not None
    [converted] = events_from_fhir(raw)
    assert round_trip_differences(parse_event_object(event), converted) == []


def test_what_the_writers_cannot_say() -> None:
    order = _event("medication_order", {"event_id": "o", "order_id": "O", "status": "active",
                                        "medication": {"name": "x"}})
    assert hl7v2_for({**order, "status": "draft"}, "C") is None
    assert hl7v2_for(_event("diagnosis", _DIAGNOSES[0]), "C") is None
    mmt8 = _event("muscle_assessment", {"event_id": "m", "instrument": "MMT8", "score": 120})
    assert hl7v2_for(mmt8, "C") is None
    assert fhir_for(mmt8) is None
    assert repeat_pattern({"times": 2, "period": 1, "unit": "wk"}) is None
    assert repeat_pattern({"times": 1, "period": 1.5, "unit": "d"}) is None
    # HL7 has no order control for entered-in-error: CA, which reads back as cancelled; counted
    voided = {**order, "status": "entered-in-error"}
    raw = hl7v2_for(voided, "C")
    assert raw is not None
    [converted] = events_from_hl7v2(raw)
    assert round_trip_differences(parse_event_object(voided), converted) == [
        "status 'entered-in-error' -> 'cancelled'"]
