"""FHIR MedicationStatement (the patient's medication list) -> a reported ``medication_order``."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fhir_samples import (
    MRN,
    RXNORM,
    UCUM,
    Resource,
    atorvastatin_order,
    atorvastatin_statement,
    changed,
    imnm_condition,
    patient,
    prednisone_order,
    without,
)

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.events import CanonicalEvent, MedicationOrderEvent
from imnm_common.service_layer.replay import Replay
from imnm_ingest.domain.conversion import INVALID_FIELD, MISSING_FIELD, ConversionRejected
from imnm_ingest.domain.fhir import events_from_fhir


def convert(document: Resource) -> list[CanonicalEvent]:
    return events_from_fhir(orjson.dumps(document))


def statement(**fields: Any) -> MedicationOrderEvent:
    [event] = convert(changed(atorvastatin_statement(), **fields))
    assert isinstance(event, MedicationOrderEvent)
    return event


def refusal(document: Resource, code: str) -> str:
    with pytest.raises(ConversionRejected) as caught:
        convert(document)
    assert caught.value.code == code, caught.value.reason
    return caught.value.reason


def test_a_statin_on_the_list_is_a_reported_order_apart_from_the_requests() -> None:
    [event] = convert(atorvastatin_statement())
    assert event.model_dump(mode="json", exclude_none=True) == {
        "event_id": "fhir:MedicationStatement/medst-ator-3001/1",
        "event_type": "medication_order",
        "patient_id": MRN,
        "occurred_at": "2025-01-10T09:00:00Z",  # dateAsserted: the list said so then
        "source": "fhir",
        "order_id": "MedicationStatement/medst-ator-3001",
        "status": "active",
        "reported": True,
        "medication": {"rxnorm": "83367", "name": "atorvastatin 20 mg tablet"},
        "dose": {"value": 20.0, "unit": "mg"},
        "frequency": {"times": 1, "period": 1.0, "unit": "d"},
    }
    [ordered] = convert(changed(atorvastatin_order(), id="medst-ator-3001"))
    assert isinstance(ordered, MedicationOrderEvent)
    assert ordered.order_id == "medst-ator-3001" and ordered.reported is None


@pytest.mark.parametrize(("fhir_status", "status"), [
    ("active", "active"), ("on-hold", "on-hold"), ("completed", "completed"),
    ("stopped", "stopped"), ("not-taken", "stopped"), ("intended", "draft"),
    ("entered-in-error", "entered-in-error"), ("unknown", "unknown"),
])
def test_statuses(fhir_status: str, status: str) -> None:
    assert statement(status=fhir_status).status == status


def test_a_status_r4_does_not_define_is_refused() -> None:
    reason = refusal(changed(atorvastatin_statement(), status="taking"), INVALID_FIELD)
    assert reason.startswith("MedicationStatement.status")


def test_a_later_version_counts_from_its_last_update() -> None:
    event = statement(meta={"versionId": "2", "lastUpdated": "2025-02-01T10:00:00+00:00"},
                      status="stopped")
    assert event.occurred_at.isoformat() == "2025-02-01T10:00:00+00:00"
    assert event.event_id == "fhir:MedicationStatement/medst-ator-3001/2"


def test_without_an_assertion_time_it_counts_from_when_it_is_taken() -> None:
    bare = without(atorvastatin_statement(), "meta", "dateAsserted")
    [event] = convert(bare)
    assert event.occurred_at.isoformat() == "2023-04-01T00:00:00+00:00"
    [event] = convert(changed(bare, effectivePeriod=None,
                              effectiveDateTime="2024-12-30T12:00:00+01:00"))
    assert event.occurred_at.isoformat() == "2024-12-30T12:00:00+01:00"
    reason = refusal(without(bare, "effectivePeriod"), MISSING_FIELD)
    assert reason.startswith("MedicationStatement.meta.lastUpdated: none of")
    assert "MedicationStatement.dateAsserted" in reason


def test_a_statement_without_a_dose_converts() -> None:
    event = statement(dosage=None)
    assert event.dose is None and event.frequency is None and event.reported is True


def test_the_end_of_its_effective_period_ends_a_statement_in_force() -> None:
    event = statement(effectivePeriod={"start": "2023-04-01T00:00:00+00:00",
                                       "end": "2025-03-01T00:00:00+00:00"})
    assert event.ends_at is not None and event.ends_at.isoformat() == "2025-03-01T00:00:00+00:00"
    stopped = statement(status="completed",
                        effectivePeriod={"start": "2023-04-01T00:00:00+00:00",
                                         "end": "2024-12-01T00:00:00+00:00"})
    assert stopped.ends_at is None  # over already, as its status says


def test_an_effective_period_over_before_a_statement_still_active_is_refused() -> None:
    reason = refusal(changed(atorvastatin_statement(),
                             effectivePeriod={"start": "2023-04-01T00:00:00+00:00",
                                              "end": "2024-12-01T00:00:00+00:00"}),
                     INVALID_FIELD)
    assert reason == (
        "MedicationStatement.effectivePeriod.end: 2024-12-01T00:00:00+00:00 is not after this "
        "version of a statement still active (2025-01-10T09:00:00+00:00); send it completed or "
        "stopped"
    )


def test_the_dosage_is_read_as_an_orders_and_its_reasons_name_the_statement() -> None:
    two_steps = [
        {"sequence": 1, "timing": {"repeat": {
            "frequency": 1, "period": 1, "periodUnit": "d",
            "boundsPeriod": {"start": "2025-01-01T00:00:00+00:00",
                             "end": "2025-02-01T00:00:00+00:00"}}},
         "doseAndRate": [{"doseQuantity": {"value": 20, "unit": "mg", "system": UCUM,
                                           "code": "mg"}}]},
        {"sequence": 2, "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d",
                                              "boundsDuration": {"value": 2, "unit": "wk",
                                                                 "system": UCUM, "code": "wk"}}},
         "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg", "system": UCUM,
                                           "code": "mg"}}]},
    ]
    event = statement(dosage=two_steps)
    assert event.dose is not None and event.dose.value == 20
    assert [(s.starts_at.isoformat(), s.dose and s.dose.value)
            for s in event.dose_schedule or []] == [("2025-02-01T00:00:00+00:00", 10)]
    assert event.ends_at is not None and event.ends_at.isoformat() == "2025-02-15T00:00:00+00:00"
    unplaced = [two_steps[0], {**two_steps[1], "timing": {"repeat": {"frequency": 1}}}]
    unplaced[0] = {**unplaced[0], "timing": {"repeat": {"frequency": 1, "period": 1,
                                                        "periodUnit": "d"}}}
    reason = refusal(changed(atorvastatin_statement(), dosage=unplaced), MISSING_FIELD)
    assert reason.startswith("MedicationStatement.dosage[1].timing.repeat: a later step")


def test_tablets_convert_with_the_strength_its_name_states() -> None:
    event = statement(dosage=[{
        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet"}}],
    }])
    assert event.dose is not None and (event.dose.value, event.dose.unit) == (40.0, "mg")


def test_a_medication_in_the_same_bundle_is_read() -> None:
    listed = without(atorvastatin_statement(), "medicationCodeableConcept")
    listed["medicationReference"] = {"reference": "urn:uuid:med-1"}
    medication = {"resourceType": "Medication", "code": {
        "coding": [{"system": RXNORM, "code": "83367", "display": "atorvastatin"}]}}
    document = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:med-1", "resource": medication},
        {"resource": listed},
    ]}
    [event] = convert(document)
    assert isinstance(event, MedicationOrderEvent)
    assert event.medication.rxnorm == "83367"
    del document["entry"][0]
    reason = refusal(document, MISSING_FIELD)
    assert reason.startswith("Bundle.entry[0]: MedicationStatement.medicationReference:")


def _replayed(*resources: Resource, until: str = "2025-03-01T00:00:00Z") -> list[AlertTransition]:
    from datetime import datetime

    document = {"resourceType": "Bundle", "type": "collection",
                "entry": [{"resource": r} for r in resources]}
    replay = Replay()
    transitions = [t for event in convert(document) for t in replay.feed(event)]
    transitions += list(replay.finish(datetime.fromisoformat(until).timestamp()))
    return transitions


def test_a_home_statin_raises_the_statin_alert_and_its_stop_resolves_it() -> None:
    stopped = changed(atorvastatin_statement(), status="stopped",
                      meta={"versionId": "2", "lastUpdated": "2025-01-12T16:00:00+00:00"})
    opened, resolved = _replayed(patient(), imnm_condition(), atorvastatin_statement(), stopped)
    assert (opened.rule, opened.status, resolved.status) == ("statin_active", "open", "resolved")
    assert opened.summary == (
        "Statin on the medication list (atorvastatin 20 mg tablet) in a patient with IMNM"
    )
    assert opened.evidence[0] == "fhir:MedicationStatement/medst-ator-3001/1"
    assert resolved.resolved_at is not None
    assert resolved.resolved_at.isoformat() == "2025-01-12T16:00:00+00:00"


def test_a_home_prednisone_and_the_inpatient_order_continuing_it_count_once() -> None:
    """30 mg on the list, then 60 mg ordered on admission: 60 mg/day, not 90."""
    home = changed(atorvastatin_statement(), id="medst-pred-3001", medicationCodeableConcept={
        "coding": [{"system": RXNORM, "code": "8640", "display": "prednisone"}]},
        dosage=[{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                 "doseAndRate": [{"doseQuantity": {"value": 30, "unit": "mg", "system": UCUM,
                                                   "code": "mg"}}]}])
    transitions = _replayed(patient(), imnm_condition(), home, prednisone_order())
    calcium = [t for t in transitions if t.rule == "calcium_vitamin_d_missing"]
    assert calcium and all("60 mg/day" in t.detail for t in calcium if t.status == "open")


@pytest.mark.parametrize(("reported", "said"), [
    ({"reportedBoolean": True}, True),
    ({"reportedReference": {"reference": f"Patient/{MRN}"}}, True),
    ({"reportedBoolean": False}, None),
    ({}, None),
])
def test_a_request_reported_as_us_core_writes_the_list_is_reported(
    reported: dict[str, Any], said: bool | None
) -> None:
    [event] = convert(atorvastatin_order() | reported)
    assert isinstance(event, MedicationOrderEvent)
    assert event.reported is said
    assert event.order_id == "medrx-ator-3001"
