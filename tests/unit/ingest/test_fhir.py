"""FHIR R4 JSON -> events.v1 (imnm_ingest.domain.fhir): exact fields, rejections, Bundles."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from fhir_samples import (
    LOINC,
    MRN,
    RXNORM,
    SNOMED,
    UCUM,
    Resource,
    atorvastatin_order,
    atorvastatin_statement,
    changed,
    ck_observation,
    hmgcr_observation,
    imnm_condition,
    methotrexate_order,
    patient,
    prednisone_order,
    without,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imnm_common.contracts.events import CanonicalEvent
from imnm_common.service_layer.replay import Replay
from imnm_ingest.domain.conversion import (
    INVALID_EVENT,
    INVALID_FIELD,
    MISSING_FIELD,
    NOT_PARSEABLE,
    UNSUPPORTED,
    ConversionRejected,
)
from imnm_ingest.domain.fhir import events_from_fhir


def convert(document: Resource | list[Any] | str) -> list[CanonicalEvent]:
    return events_from_fhir(orjson.dumps(document))


def fields(event: CanonicalEvent) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude_none=True)


def rejected(document: Resource, code: str) -> str:
    with pytest.raises(ConversionRejected) as caught:
        convert(document)
    assert caught.value.code == code, caught.value.reason
    return caught.value.reason


def bundle(kind: str, *resources: Resource, with_urls: bool = False) -> Resource:
    entries = []
    for number, resource in enumerate(resources):
        entry: dict[str, Any] = {"resource": resource}
        if with_urls:
            entry["fullUrl"] = f"urn:uuid:00000000-0000-4000-8000-{number:012d}"
        if kind == "transaction":
            entry["request"] = {"method": "PUT" if "id" in resource else "POST",
                                "url": resource["resourceType"]}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


# ---------------------------------------------------------------------------------------------
# Observation -> lab_result
def test_creatine_kinase_with_ucum_quantity_and_reference_range() -> None:
    [event] = convert(ck_observation())
    assert fields(event) == {
        "event_id": "fhir:Observation/ck-3001/1",
        "patient_id": MRN,
        "occurred_at": "2025-01-05T08:15:00+01:00",
        "source": "fhir",
        "event_type": "lab_result",
        "loinc": "2157-6",
        "value": 9400.0,
        "unit": "U/L",
        "reference_high": 308.0,
        "result_id": "fhir:Observation/ck-3001",
        "status": "final",
    }


def test_non_ucum_quantity_keeps_the_human_unit() -> None:
    obs = changed(ck_observation(), valueQuantity={"value": 812.5, "unit": "IU/L",
                                                   "system": "urn:local", "code": "IUL"})
    [event] = convert(obs)
    assert (event.event_type, event.value, event.unit) == ("lab_result", 812.5, "IU/L")


@pytest.mark.parametrize("comparator", ["<", "<=", ">=", ">"])
def test_quantity_comparator_makes_the_value_a_bound(comparator: str) -> None:
    obs = changed(ck_observation(), valueQuantity={"value": 20000, "comparator": comparator,
                                                   "unit": "U/L", "system": UCUM, "code": "U/L"})
    [event] = convert(obs)
    assert (event.event_type, event.value, event.comparator) == (
        "lab_result", 20000.0, comparator)


def test_a_comparator_r4_does_not_define_is_refused_with_its_element() -> None:
    obs = changed(ck_observation(), valueQuantity={"value": 5, "comparator": "ad",
                                                   "unit": "U/L", "system": UCUM, "code": "U/L"})
    reason = rejected(obs, INVALID_FIELD)
    assert reason.startswith("Observation.valueQuantity.comparator: 'ad' is not one of ")


def test_anti_hmgcr_positive_as_codeable_concept_and_as_string() -> None:
    [coded] = convert(hmgcr_observation())
    assert fields(coded) == {
        "event_id": "fhir:Observation/hmgcr-3001/1",
        "patient_id": MRN,
        "occurred_at": "2025-01-05T08:15:00+01:00",
        "source": "fhir",
        "event_type": "lab_result",
        "loinc": "93493-5",
        "value_text": "Positive",
        "result_id": "fhir:Observation/hmgcr-3001",
        "status": "final",
    }
    [text] = convert(changed(hmgcr_observation(), valueCodeableConcept=None,
                             valueString=" positive "))
    assert text.event_type == "lab_result" and text.value_text == "positive"
    assert text.value is None


def test_amended_version_changes_event_id_and_keeps_result_id() -> None:
    first = ck_observation()
    amended = changed(first, status="amended",
                      meta={"versionId": "2", "lastUpdated": "2025-01-05T14:00:00+01:00"},
                      valueQuantity={"value": 4200, "unit": "U/L", "system": UCUM,
                                     "code": "U/L"})
    [original] = convert(first)
    [correction] = convert(amended)
    assert correction.event_type == "lab_result" and original.event_type == "lab_result"
    assert correction.event_id == "fhir:Observation/ck-3001/2" != original.event_id
    assert correction.result_id == original.result_id == "fhir:Observation/ck-3001"
    assert (correction.status, correction.value) == ("corrected", 4200.0)


def test_without_version_the_event_id_follows_the_content() -> None:
    plain = without(ck_observation(), "meta")
    [first] = convert(plain)
    [again] = convert(plain)
    [amended] = convert(changed(plain, status="amended"))
    [withdrawn] = convert(changed(plain, status="entered-in-error"))
    assert first.event_id == again.event_id  # a redelivery is a duplicate
    assert first.event_id.startswith("fhir:Observation/ck-3001/")
    assert len({first.event_id, amended.event_id, withdrawn.event_id}) == 3
    assert withdrawn.event_type == "lab_result" and withdrawn.status == "entered-in-error"


@pytest.mark.parametrize(("fhir_status", "status"), [
    ("final", "final"), ("amended", "corrected"), ("corrected", "corrected"),
    ("preliminary", "preliminary"), ("registered", "preliminary"), ("unknown", "preliminary"),
    ("cancelled", "cancelled"), ("entered-in-error", "entered-in-error"),
])
def test_observation_status_mapping(fhir_status: str, status: str) -> None:
    [event] = convert(changed(ck_observation(), status=fhir_status))
    assert event.event_type == "lab_result" and event.status == status


def test_unknown_observation_status_is_rejected() -> None:
    reason = rejected(changed(ck_observation(), status="done"), INVALID_FIELD)
    assert reason.startswith("Observation.status: ")


def test_observation_without_loinc_is_nothing_for_us() -> None:
    local_only = changed(ck_observation(), code={
        "coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.6", "code": "1557"}],
        "text": "CK, TOTAL"})
    assert convert(local_only) == []
    assert convert(without(local_only, "subject")) == []  # not even read further


def test_a_panel_without_value_is_nothing_its_members_are_converted() -> None:
    panel = changed(ck_observation(), valueQuantity=None, referenceRange=None,
                    code={"coding": [{"system": LOINC, "code": "24326-1"}]},
                    hasMember=[{"reference": "Observation/ck-3001"}])
    assert convert(panel) == []


def test_date_only_effective_date_time_is_rejected_naming_the_element() -> None:
    reason = rejected(changed(ck_observation(), effectiveDateTime="2025-01-05"), INVALID_FIELD)
    assert reason.startswith("Observation.effectiveDateTime: '2025-01-05'")


def test_effective_period_start_then_issued() -> None:
    period = changed(ck_observation(), effectiveDateTime=None,
                     effectivePeriod={"start": "2025-01-05T07:00:00Z",
                                      "end": "2025-01-05T08:00:00Z"})
    [event] = convert(period)
    assert event.occurred_at.isoformat() == "2025-01-05T07:00:00+00:00"
    [issued] = convert(without(ck_observation(), "effectiveDateTime"))
    assert issued.occurred_at.isoformat() == "2025-01-05T10:31:07.114000+01:00"
    reason = rejected(without(ck_observation(), "effectiveDateTime", "issued"), MISSING_FIELD)
    assert reason.startswith("Observation.effective[x]: ")


def test_subject_identifier_wins_and_a_missing_subject_is_rejected() -> None:
    logical = changed(ck_observation(), subject={
        "identifier": {"system": "urn:oid:1.2.3.4.5", "value": "MRN-4711"},
        "reference": "Patient/pat-internal-9"})
    [event] = convert(logical)
    assert event.patient_id == "MRN-4711"
    absolute = changed(ck_observation(), subject={
        "reference": "https://ehr.example.org/fhir/Patient/MRN-3002/_history/4"})
    assert convert(absolute)[0].patient_id == "MRN-3002"
    assert rejected(without(ck_observation(), "subject"), MISSING_FIELD).startswith(
        "Observation.subject: ")
    group = changed(ck_observation(), subject={"reference": "Group/ward-7"})
    assert rejected(group, INVALID_FIELD).startswith("Observation.subject: 'Group/ward-7'")


def test_missing_id_uses_the_identifier() -> None:
    [event] = convert(without(ck_observation(), "id"))
    assert event.event_type == "lab_result"
    assert event.event_id == "fhir:Observation/LAB-778812-1/1"
    assert event.result_id == "fhir:Observation/LAB-778812-1"
    reason = rejected(without(ck_observation(), "id", "identifier"), MISSING_FIELD)
    assert reason.startswith("Observation.id: ")


def test_model_validation_errors_name_the_fhir_path() -> None:
    assert rejected(without(ck_observation(), "status"), INVALID_FIELD).startswith(
        "Observation.status: ")
    bad_range = changed(ck_observation(), referenceRange=[{"high": {"value": "high"}}])
    assert rejected(bad_range, INVALID_FIELD).startswith(
        "Observation.referenceRange[0].high.value: ")
    no_offset = changed(ck_observation(), effectiveDateTime="2025-01-05T08:15:00")
    assert rejected(no_offset, INVALID_FIELD).startswith("Observation.effectiveDateTime: ")


def test_implausible_creatine_kinase_is_an_invalid_event() -> None:
    huge = changed(ck_observation(), valueQuantity={"value": 9_400_000, "unit": "U/L",
                                                    "system": UCUM, "code": "U/L"})
    reason = rejected(huge, INVALID_EVENT)
    assert "fhir:Observation/ck-3001/1" in reason and "implausible" in reason


def test_data_absent_reason_withdraws_the_value() -> None:
    absent = changed(ck_observation(), valueQuantity=None, dataAbsentReason={
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "error", "display": "Error"}], "text": "Specimen hemolyzed"})
    [event] = convert(absent)
    assert event.event_type == "lab_result"
    assert (event.value, event.value_text) == (None, "Specimen hemolyzed")
    reason = rejected(changed(ck_observation(), valueQuantity=None), MISSING_FIELD)
    assert reason.startswith("Observation.value[x]: ")


# ---------------------------------------------------------------------------------------------
# MedicationRequest -> medication_order
def test_prednisone_60_mg_daily_oral() -> None:
    [event] = convert(prednisone_order())
    assert fields(event) == {
        "event_id": "fhir:MedicationRequest/medrx-pred-3001/1",
        "patient_id": MRN,
        "occurred_at": "2025-01-06T09:00:00Z",  # version 1: signed at authoredOn
        "source": "fhir",
        "event_type": "medication_order",
        "order_id": "medrx-pred-3001",
        "status": "active",
        "medication": {"rxnorm": "8640", "name": "predniSONE 20 mg tablet"},
        "dose": {"value": 60.0, "unit": "mg"},
        "frequency": {"times": 1, "period": 1.0, "unit": "d"},
        "route": "oral",
    }


def test_stop_is_a_new_version_at_its_last_updated() -> None:
    stopped = changed(prednisone_order(), status="stopped",
                      meta={"versionId": "2", "lastUpdated": "2025-02-03T14:00:00+00:00"})
    [event] = convert(stopped)
    assert event.event_type == "medication_order"
    assert (event.event_id, event.order_id, event.status) == (
        "fhir:MedicationRequest/medrx-pred-3001/2", "medrx-pred-3001", "stopped")
    assert event.occurred_at.isoformat() == "2025-02-03T14:00:00+00:00"


def test_methotrexate_15_mg_weekly() -> None:
    [event] = convert(methotrexate_order())
    event_id = event.event_id
    assert event_id.startswith("fhir:MedicationRequest/medrx-mtx-3001/")
    assert fields(event) == {
        "event_id": event_id,
        "patient_id": MRN,
        "occurred_at": "2025-01-07T11:30:00-05:00",
        "source": "fhir",
        "event_type": "medication_order",
        "order_id": "medrx-mtx-3001",
        "status": "active",
        "medication": {"rxnorm": "6851", "name": "methotrexate 2.5 mg tablet"},
        "dose": {"value": 15.0, "unit": "mg"},
        "frequency": {"times": 1, "period": 1.0, "unit": "wk"},
        "route": "Oral route",
    }
    [stopped] = convert(changed(methotrexate_order(), status="stopped"))
    assert stopped.event_id != event_id  # no versionId: the change still makes a new event


def test_daily_methotrexate_by_timing_code() -> None:
    order = methotrexate_order()
    order["dosageInstruction"][0]["timing"] = {"code": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation", "code": "QD"}],
        "text": "daily"}}
    [event] = convert(order)
    assert event.event_type == "medication_order" and event.frequency is not None
    assert (event.frequency.times, event.frequency.period, event.frequency.unit) == (1, 1, "d")


@pytest.mark.parametrize(("repeat", "expected"), [
    ({"frequency": 2, "period": 1, "periodUnit": "d"}, (2, 1.0, "d")),
    ({"period": 12, "periodUnit": "h"}, (1, 12.0, "h")),
    ({"frequency": 1, "period": 6, "periodUnit": "mo"}, (1, 6.0, "mo")),
    ({"frequency": 1, "period": 1, "periodUnit": "a"}, (1, 12.0, "mo")),
    ({"frequency": 1, "period": 90, "periodUnit": "min"}, (1, 1.5, "h")),
])
def test_timing_repeat_units(repeat: dict[str, Any], expected: tuple[int, float, str]) -> None:
    order = prednisone_order()
    order["dosageInstruction"][0]["timing"] = {"repeat": repeat}
    [event] = convert(order)
    assert event.event_type == "medication_order" and event.frequency is not None
    assert (event.frequency.times, event.frequency.period, event.frequency.unit) == expected


def test_contained_medication_is_read() -> None:
    order = changed(atorvastatin_order(), medicationCodeableConcept=None,
                    medicationReference={"reference": "#med-1"},
                    contained=[{"resourceType": "Medication", "id": "med-1", "code": {
                        "coding": [{"system": RXNORM, "code": "83367",
                                    "display": "atorvastatin"},
                                   {"system": "http://www.whocc.no/atc", "code": "C10AA05"}],
                        "text": "Lipitor 40 mg tablet"}}])
    [event] = convert(order)
    assert event.event_type == "medication_order"
    assert fields(event)["medication"] == {"rxnorm": "83367", "atc": "C10AA05",
                                           "name": "Lipitor 40 mg tablet"}


def test_referenced_medication_is_not_fetched() -> None:
    order = changed(atorvastatin_order(), medicationCodeableConcept=None,
                    medicationReference={"reference": "Medication/med-77"})
    reason = rejected(order, MISSING_FIELD)
    assert reason.startswith("MedicationRequest.medicationReference: 'Medication/med-77'")
    assert "not fetched" in reason
    display = changed(order, medicationReference={"reference": "Medication/med-77",
                                                  "display": "atorvastatin 40 mg tablet"})
    [event] = convert(display)
    assert event.event_type == "medication_order"
    assert fields(event)["medication"] == {"name": "atorvastatin 40 mg tablet"}


def test_medication_in_the_same_bundle_is_read() -> None:
    order = changed(atorvastatin_order(), medicationCodeableConcept=None,
                    medicationReference={"reference": "Medication/med-77"})
    medication = {"resourceType": "Medication", "id": "med-77",
                  "code": {"coding": [{"system": RXNORM, "code": "83367",
                                       "display": "atorvastatin"}]}}
    [event] = convert(bundle("collection", medication, order))
    assert event.event_type == "medication_order"
    assert fields(event)["medication"] == {"rxnorm": "83367", "name": "atorvastatin"}


def test_do_not_perform_is_no_order() -> None:
    assert convert(changed(atorvastatin_order(), doNotPerform=True)) == []


def test_tablet_annotation_unit_and_unknown_status() -> None:
    order = prednisone_order()
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {
        "value": 3, "unit": "tablet", "system": UCUM, "code": "{tbl}"}
    [event] = convert(order)
    assert event.event_type == "medication_order" and event.dose is not None
    # the medication's text, "predniSONE 20 mg tablet", states the strength
    assert (event.dose.value, event.dose.unit) == (60.0, "mg")
    order["medicationCodeableConcept"]["text"] = "predniSONE tablet"
    [event] = convert(order)
    assert event.event_type == "medication_order" and event.dose is not None
    assert (event.dose.value, event.dose.unit) == (3.0, "tablet")
    reason = rejected(changed(prednisone_order(), status="suspended"), INVALID_FIELD)
    assert reason.startswith("MedicationRequest.status: 'suspended'")


# ---------------------------------------------------------------------------------------------
# Condition -> diagnosis
def test_imnm_condition_active_with_hmgcr() -> None:
    [event] = convert(imnm_condition())
    assert fields(event) == {
        "event_id": "fhir:Condition/cond-imnm-3001/1",
        "patient_id": MRN,
        "occurred_at": "2025-01-09T15:00:00Z",
        "source": "fhir",
        "event_type": "diagnosis",
        "condition": "IMNM",
        "antibody": "anti-HMGCR",
        "statin_associated": True,
        "status": "active",
    }


def test_imnm_recognised_by_text_alone_and_other_conditions_ignored() -> None:
    by_text = changed(imnm_condition(), note=None, code={
        "text": "Immune mediated necrotising myopathy, seronegative"})
    [event] = convert(by_text)
    assert event.event_type == "diagnosis"
    assert (event.condition, event.antibody, event.statin_associated) == (
        "IMNM", "seronegative", None)
    srp = changed(imnm_condition(), note=None, code={"text": "IMNM (anti-SRP)"})
    assert fields(convert(srp)[0])["antibody"] == "anti-SRP"
    unclear = changed(imnm_condition(), note=[{"text": "HMGCR negative"}])
    assert "antibody" not in fields(convert(unclear)[0])
    dermatomyositis = changed(imnm_condition(), note=None, code={"coding": [
        {"system": SNOMED, "code": "396230008", "display": "Dermatomyositis"}]})
    assert convert(dermatomyositis) == []


@pytest.mark.parametrize(("clinical", "verification", "status"), [
    ("active", "confirmed", "active"),
    ("relapse", "confirmed", "active"),
    ("remission", "confirmed", "active"),  # IMNM in remission: still no statins
    ("inactive", "confirmed", "resolved"),
    ("resolved", "confirmed", "resolved"),
    ("active", "entered-in-error", "entered-in-error"),
    ("active", "refuted", "entered-in-error"),
])
def test_condition_status_mapping(clinical: str, verification: str, status: str) -> None:
    condition = imnm_condition()
    condition["clinicalStatus"]["coding"][0]["code"] = clinical
    condition["verificationStatus"]["coding"][0]["code"] = verification
    [event] = convert(condition)
    assert event.event_type == "diagnosis" and event.status == status


def test_condition_time_falls_back_past_a_date_only_recorded_date() -> None:
    [event] = convert(changed(imnm_condition(), recordedDate="2025-01-09"))
    assert event.occurred_at.isoformat() == "2025-01-09T15:00:12+00:00"  # meta.lastUpdated
    reason = rejected(without(changed(imnm_condition(), recordedDate="2025-01-09"), "meta"),
                      INVALID_FIELD)
    assert reason.startswith("Condition.recordedDate: '2025-01-09'")
    resolved = changed(imnm_condition(), meta={"versionId": "2",
                                               "lastUpdated": "2025-06-01T10:00:00+00:00"})
    resolved["clinicalStatus"]["coding"][0]["code"] = "resolved"
    [later] = convert(resolved)
    assert later.event_id == "fhir:Condition/cond-imnm-3001/2"
    assert later.occurred_at.isoformat() == "2025-06-01T10:00:00+00:00"


# ---------------------------------------------------------------------------------------------
# Bundles and whole-message rejections
def test_transaction_bundle_converted_in_order() -> None:
    subject = {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}
    document = bundle(
        "transaction",
        without(patient(), "id"),
        changed(imnm_condition(), subject=subject),
        changed(prednisone_order(), subject=subject),
        changed(ck_observation(), subject=subject),
        with_urls=True,
    )
    events = convert(document)
    assert [(e.event_type, e.event_id) for e in events] == [
        ("diagnosis", "fhir:Condition/cond-imnm-3001/1"),
        ("medication_order", "fhir:MedicationRequest/medrx-pred-3001/1"),
        ("lab_result", "fhir:Observation/ck-3001/1"),
    ]
    assert {e.patient_id for e in events} == {MRN}  # the Patient entry's MR identifier


@pytest.mark.parametrize("kind", ["collection", "searchset", "message", "batch"])
def test_every_bundle_type_is_read(kind: str) -> None:
    header = {"resourceType": "MessageHeader", "eventCoding": {"code": "x"},
              "source": {"endpoint": "urn:ehr"}}
    encounter = {"resourceType": "Encounter", "status": "finished",
                 "class": {"code": "AMB"}}
    events = convert(bundle(kind, header, encounter, ck_observation(), hmgcr_observation()))
    assert [e.event_id for e in events] == ["fhir:Observation/ck-3001/1",
                                            "fhir:Observation/hmgcr-3001/1"]


def test_bundle_with_one_invalid_entry_is_rejected_entirely() -> None:
    document = bundle("transaction", patient(), imnm_condition(),
                      without(ck_observation(), "status"))
    reason = rejected(document, INVALID_FIELD)
    assert reason.startswith("Bundle.entry[2]: Observation.status: ")
    date_only = bundle("collection", imnm_condition(),
                       changed(ck_observation(), effectiveDateTime="2025-01-05"))
    assert rejected(date_only, INVALID_FIELD).startswith(
        "Bundle.entry[1]: Observation.effectiveDateTime: ")


def test_bundle_of_nothing_we_track_is_empty() -> None:
    assert convert(bundle("transaction", patient())) == []
    assert convert({"resourceType": "Bundle", "type": "searchset", "total": 0}) == []
    delete = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"request": {"method": "DELETE", "url": "Observation/ck-3001"}}]}
    assert convert(delete) == []


def test_malformed_bundles() -> None:
    assert rejected({"resourceType": "Bundle", "entry": []}, INVALID_FIELD).startswith(
        "Bundle.type: ")
    assert rejected({"resourceType": "Bundle", "type": "collection", "entry": {}},
                    INVALID_FIELD).startswith("Bundle.entry: ")
    no_type = {"resourceType": "Bundle", "type": "collection",
               "entry": [{"resource": {"id": "x"}}]}
    assert rejected(no_type, INVALID_FIELD).startswith("Bundle.entry[0].resource: ")


def test_patient_alone_is_unsupported() -> None:
    reason = rejected(patient(), UNSUPPORTED)
    assert reason.startswith("Patient: ")
    assert rejected({"resourceType": "Encounter", "id": "e"}, UNSUPPORTED).startswith(
        "Encounter: ")


@pytest.mark.parametrize("payload", [
    b"MSH|^~\\&|LAB|HOSP\r", b"", b"{\"resourceType\": \"Observation\"", b"\xff\xfe{}",
    b"[]", b"[{\"resourceType\": \"Observation\"}]", b"\"Observation\"", b"{}",
    b"{\"resourceType\": 5}", b"{\"resourceType\": \"\"}",
])
def test_not_fhir_json_is_not_parseable(payload: bytes) -> None:
    with pytest.raises(ConversionRejected) as caught:
        events_from_fhir(payload)
    assert caught.value.code == NOT_PARSEABLE


def test_str_payload_and_byte_order_mark() -> None:
    text = json.dumps(ck_observation())
    assert convert(ck_observation()) == events_from_fhir(text)
    assert events_from_fhir(b"\xef\xbb\xbf" + text.encode()) == events_from_fhir("\ufeff" + text)


# ---------------------------------------------------------------------------------------------
# end to end: converted events drive the real engine
def test_imnm_and_atorvastatin_bundle_opens_statin_active() -> None:
    events = convert(bundle("transaction", patient(), imnm_condition(), atorvastatin_order()))
    assert [e.event_type for e in events] == ["diagnosis", "medication_order"]
    replay = Replay()
    transitions = [t for e in events for t in replay.feed(e)]
    transitions += list(replay.finish())
    opened = [t for t in transitions if t.rule == "statin_active" and t.status == "open"]
    assert len(opened) == 1
    assert opened[0].patient_id == MRN
    assert "fhir:MedicationRequest/medrx-ator-3001/1" in opened[0].evidence


# ---------------------------------------------------------------------------------------------
# anything else is a rejection, never a crash
_SAMPLES = [ck_observation(), hmgcr_observation(), prednisone_order(), methotrexate_order(),
            atorvastatin_statement(), imnm_condition(),
            bundle("transaction", patient(), imnm_condition(), atorvastatin_order(),
                   ck_observation())]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["Patient/x", "2025-01-05", "active", "#m", "wk"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def _mangled_sample(draw: st.DrawFn) -> Any:
    document = json.loads(json.dumps(draw(st.sampled_from(_SAMPLES))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        if not path:
            return draw(_json)
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_json)
    return document


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json | _mangled_sample())
def test_arbitrary_json_never_raises_anything_but_a_rejection(document: Any) -> None:
    payload = json.dumps(document)
    try:
        events = events_from_fhir(payload)
    except ConversionRejected as rejection:
        assert rejection.reason
        assert rejection.code in {NOT_PARSEABLE, UNSUPPORTED, MISSING_FIELD, INVALID_FIELD,
                                  INVALID_EVENT}
    else:
        assert all(e.source == "fhir" and e.event_id.startswith("fhir:") for e in events)


def test_a_body_weight_and_a_weight_based_prednisone_order_count_as_mg_per_day() -> None:
    weighed = changed(
        ck_observation(), id="wt-1",
        code={"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
        valueQuantity={"value": 70, "unit": "kg", "system": UCUM, "code": "kg"},
        referenceRange=None, interpretation=None,
    )
    [weight] = convert(weighed)
    assert fields(weight)["unit"] == "kg" and fields(weight)["loinc"] == "29463-7"
    dosage = prednisone_order()["dosageInstruction"][0]
    dosage["doseAndRate"][0]["doseQuantity"] = {
        "value": 1, "unit": "mg/kg", "system": UCUM, "code": "mg/kg"}
    [order] = convert(changed(prednisone_order(), dosageInstruction=[dosage]))
    assert fields(order)["dose"] == {"value": 1.0, "unit": "mg/kg"}
    replay = Replay()
    for event in (weight, order):
        list(replay.feed(event))
    [state_order] = replay.states[MRN].orders.values()
    assert state_order.versions[0].prednisone_equivalent_mg_per_day == 70.0
    # a weight in a unit that is not a mass is refused with the reason
    no_mass = changed(weighed, valueQuantity={"value": 70, "unit": "cm", "system": UCUM,
                                              "code": "cm"})
    assert "a body weight needs a mass unit" in rejected(no_mass, INVALID_EVENT)


# --------------------------------------------------------------------------------------------
# a dose in tablets or mL with the Medication's ingredient strength is a mass
ORDERABLE_FORM = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"


def _product(*strengths: tuple[float, str, float, str]) -> Resource:
    """A prednisone Medication with one ingredient per (mass, mass unit, per, per unit)."""
    return {
        "resourceType": "Medication", "id": "pred-tab",
        "code": {"coding": [{"system": RXNORM, "code": "312617",
                             "display": "predniSONE 20 MG Oral Tablet"}]},
        "ingredient": [
            {"itemCodeableConcept": {"text": f"ingredient {n}"}, "isActive": True,
             "strength": {
                 "numerator": {"value": mass, "system": UCUM, "code": mass_unit},
                 "denominator": {"value": per, "system": ORDERABLE_FORM, "code": per_unit,
                                 "unit": per_unit}}}
            for n, (mass, mass_unit, per, per_unit) in enumerate(strengths)
        ],
    }


def _ordered_in(value: float, unit: str, code: str) -> Resource:
    order = changed(prednisone_order(), medicationCodeableConcept=None,
                    medicationReference={"reference": "#pred-tab"})
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {
        "value": value, "unit": unit, "system": ORDERABLE_FORM, "code": code}
    return order


@pytest.mark.parametrize(
    ("strengths", "dose", "expected"),
    [
        ([(20, "mg", 1, "TAB")], (3, "tablet", "TAB"), {"value": 60.0, "unit": "mg"}),
        ([(5, "mg", 1, "TAB")], (2.5, "{tbl}", "{tbl}"), {"value": 12.5, "unit": "mg"}),
        ([(15, "mg", 5, "mL")], (10, "mL", "mL"), {"value": 30.0, "unit": "mg"}),
        # kept as written: a combination product, a strength per mL for tablets, no mass
        ([(20, "mg", 1, "TAB"), (5, "mg", 1, "TAB")], (3, "tablet", "TAB"),
         {"value": 3.0, "unit": "tablet"}),
        ([(15, "mg", 5, "mL")], (2, "tablet", "TAB"), {"value": 2.0, "unit": "tablet"}),
        ([(40, "meq", 1, "TAB")], (2, "tablet", "TAB"), {"value": 2.0, "unit": "tablet"}),
        ([(20, "mg", 1, "TAB")], (60, "mg", "mg"), {"value": 60.0, "unit": "mg"}),
    ],
)
def test_a_dose_in_tablets_with_the_ingredient_strength_is_converted_to_mg(
    strengths: list[tuple[float, str, float, str]],
    dose: tuple[float, str, str],
    expected: dict[str, Any],
) -> None:
    order = changed(_ordered_in(*dose), contained=[_product(*strengths)])
    if dose[1] == "mg":
        order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {
            "value": 60, "unit": "mg", "system": UCUM, "code": "mg"}
    [event] = convert(order)
    assert fields(event)["dose"] == expected


def test_tablets_of_a_medication_in_the_same_bundle_count_in_the_dose_rules() -> None:
    order = changed(_ordered_in(3, "tablet", "TAB"),
                    medicationReference={"reference": "Medication/pred-tab"})
    [event] = convert(bundle("collection", _product((20, "mg", 1, "TAB")), order))
    assert fields(event)["dose"] == {"value": 60.0, "unit": "mg"}
    replay = Replay()
    list(replay.feed(event))
    [state_order] = replay.states[MRN].orders.values()
    assert state_order.versions[0].prednisone_equivalent_mg_per_day == 60.0


def test_an_inactive_ingredient_does_not_make_a_combination() -> None:
    product = _product((20, "mg", 1, "TAB"), (100, "mg", 1, "TAB"))
    product["ingredient"][1]["isActive"] = False  # an excipient
    [event] = convert(changed(_ordered_in(3, "tablet", "TAB"), contained=[product]))
    assert fields(event)["dose"] == {"value": 60.0, "unit": "mg"}


def test_a_medication_display_naming_its_strength_converts_a_dose_in_tablets() -> None:
    order = prednisone_order()
    order["medicationCodeableConcept"] = {
        "coding": [{"system": RXNORM, "code": "312617",
                    "display": "predniSONE 20 MG Oral Tablet"}]}
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {
        "value": 2.5, "unit": "TAB", "system": ORDERABLE_FORM, "code": "TAB"}
    [event] = convert(order)
    assert fields(event)["dose"] == {"value": 50.0, "unit": "mg"}
    # a text that states another strength than the display: neither is trusted
    order["medicationCodeableConcept"]["text"] = "predniSONE 5 mg tablet"
    [event] = convert(order)
    assert fields(event)["dose"] == {"value": 2.5, "unit": "TAB"}


def test_an_ingredient_listed_without_strength_leaves_the_strength_to_the_names() -> None:
    product = _product((20, "mg", 1, "TAB"))
    del product["ingredient"][0]["strength"]
    [event] = convert(changed(_ordered_in(3, "tablet", "TAB"), contained=[product]))
    # the Medication's code display, "predniSONE 20 MG Oral Tablet"
    assert fields(event)["dose"] == {"value": 60.0, "unit": "mg"}
    product["code"]["coding"][0]["display"] = "predniSONE"
    [event] = convert(changed(_ordered_in(3, "tablet", "TAB"), contained=[product]))
    assert fields(event)["dose"] == {"value": 3.0, "unit": "tablet"}
