"""Realistic FHIR R4 resources for the converter tests, as an EHR's FHIR server would send them.

Each builder returns a fresh dict; ``changed`` and ``without`` derive variants from it.
"""

from __future__ import annotations

import copy
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
MRN = "MRN-3001"

Resource = dict[str, Any]


def changed(resource: Resource, **fields: Any) -> Resource:
    """A deep copy with top-level fields replaced (``None`` removes the field)."""
    result = copy.deepcopy(resource)
    for name, value in fields.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def without(resource: Resource, *names: str) -> Resource:
    return changed(resource, **dict.fromkeys(names))


def ck_observation() -> Resource:
    return {
        "resourceType": "Observation",
        "id": "ck-3001",
        "meta": {"versionId": "1", "lastUpdated": "2025-01-05T10:31:07.114+01:00"},
        "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.798268",
                        "value": "LAB-778812-1"}],
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory", "display": "Laboratory"}]}],
        "code": {
            "coding": [
                {"system": LOINC, "code": "2157-6",
                 "display": "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma"},
                {"system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.6", "code": "1557"},
            ],
            "text": "CK, TOTAL",
        },
        "subject": {"reference": f"Patient/{MRN}", "display": "Doe, Jane"},
        "encounter": {"reference": "Encounter/enc-991"},
        "effectiveDateTime": "2025-01-05T08:15:00+01:00",
        "issued": "2025-01-05T10:31:07.114+01:00",
        "performer": [{"reference": "Organization/lab-1", "display": "Central Lab"}],
        "valueQuantity": {"value": 9400, "unit": "U/L", "system": UCUM, "code": "U/L"},
        "interpretation": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            "code": "HH", "display": "Critical high"}]}],
        "referenceRange": [{
            "low": {"value": 39, "unit": "U/L", "system": UCUM, "code": "U/L"},
            "high": {"value": 308, "unit": "U/L", "system": UCUM, "code": "U/L"},
            "text": "39 - 308 U/L",
        }],
    }


def hmgcr_observation() -> Resource:
    """Anti-HMGCR antibody, positive, coded (SNOMED CT 10828004 |Positive|)."""
    return {
        "resourceType": "Observation",
        "id": "hmgcr-3001",
        "meta": {"versionId": "1", "lastUpdated": "2025-01-08T16:02:00+00:00"},
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": "93493-5",
                             "display": "HMGCR Ab [Presence] in Serum by Immunoassay"}],
                 "text": "Anti-HMGCR antibody"},
        "subject": {"reference": f"Patient/{MRN}"},
        "effectiveDateTime": "2025-01-05T08:15:00+01:00",
        "issued": "2025-01-08T16:02:00+00:00",
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "10828004",
                                             "display": "Positive"}]},
    }


def prednisone_order() -> Resource:
    return {
        "resourceType": "MedicationRequest",
        "id": "medrx-pred-3001",
        "meta": {"versionId": "1", "lastUpdated": "2025-01-06T09:02:41+00:00"},
        "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.798268",
                        "value": "ORD-55120"}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
            "code": "inpatient"}]}],
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "8640", "display": "prednisone"}],
            "text": "predniSONE 20 mg tablet",
        },
        "subject": {"reference": f"Patient/{MRN}", "display": "Doe, Jane"},
        "authoredOn": "2025-01-06T09:00:00+00:00",
        "requester": {"reference": "Practitioner/pr-17", "display": "Dr. A. Neuro"},
        "dosageInstruction": [{
            "sequence": 1,
            "text": "60 mg by mouth once daily",
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "route": {"coding": [{"system": SNOMED, "code": "26643006",
                                  "display": "Oral route"}], "text": "oral"},
            "doseAndRate": [{
                "type": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/dose-rate-type",
                    "code": "ordered"}]},
                "doseQuantity": {"value": 60, "unit": "mg", "system": UCUM, "code": "mg"},
            }],
        }],
    }


def methotrexate_order() -> Resource:
    """15 mg weekly, no meta (a server that does not version)."""
    return {
        "resourceType": "MedicationRequest",
        "id": "medrx-mtx-3001",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "6851", "display": "methotrexate"}],
            "text": "methotrexate 2.5 mg tablet",
        },
        "subject": {"reference": f"Patient/{MRN}"},
        "authoredOn": "2025-01-07T11:30:00-05:00",
        "dosageInstruction": [{
            "text": "15 mg by mouth once weekly on Mondays",
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk",
                                  "dayOfWeek": ["mon"]}},
            "route": {"coding": [{"system": SNOMED, "code": "26643006",
                                  "display": "Oral route"}]},
            "doseAndRate": [{"doseQuantity": {"value": 15, "unit": "mg", "system": UCUM,
                                              "code": "mg"}}],
        }],
    }


def atorvastatin_order() -> Resource:
    return {
        "resourceType": "MedicationRequest",
        "id": "medrx-ator-3001",
        "meta": {"versionId": "1", "lastUpdated": "2025-01-10T08:00:00+00:00"},
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "83367", "display": "atorvastatin"}],
            "text": "atorvastatin 40 mg tablet",
        },
        "subject": {"reference": f"Patient/{MRN}"},
        "authoredOn": "2025-01-10T08:00:00+00:00",
        "dosageInstruction": [{
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 40, "unit": "mg", "system": UCUM,
                                              "code": "mg"}}],
        }],
    }


def atorvastatin_statement() -> Resource:
    """The medication list: the patient says they take atorvastatin at home."""
    return {
        "resourceType": "MedicationStatement",
        "id": "medst-ator-3001",
        "meta": {"versionId": "1", "lastUpdated": "2025-01-10T09:15:00+00:00"},
        "status": "active",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "83367", "display": "atorvastatin"}],
            "text": "atorvastatin 20 mg tablet",
        },
        "subject": {"reference": f"Patient/{MRN}"},
        "effectivePeriod": {"start": "2023-04-01T00:00:00+00:00"},
        "dateAsserted": "2025-01-10T09:00:00+00:00",
        "informationSource": {"reference": f"Patient/{MRN}"},
        "dosage": [{
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 20, "unit": "mg", "system": UCUM,
                                              "code": "mg"}}],
        }],
    }


def imnm_condition() -> Resource:
    return {
        "resourceType": "Condition",
        "id": "cond-imnm-3001",
        "meta": {"versionId": "1", "lastUpdated": "2025-01-09T15:00:12+00:00"},
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": "active", "display": "Active"}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": "confirmed", "display": "Confirmed"}]},
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
            "code": "problem-list-item"}]}],
        "code": {
            "coding": [
                {"system": SNOMED, "code": "715863001",
                 "display": "Autoimmune necrotizing myopathy"},
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G72.49",
                 "display": "Other inflammatory and immune myopathies, NEC"},
            ],
            "text": "Immune-mediated necrotizing myopathy",
        },
        "subject": {"reference": f"Patient/{MRN}"},
        "onsetDateTime": "2024-11",
        "recordedDate": "2025-01-09T15:00:00+00:00",
        "note": [{"text": "Anti-HMGCR antibodies strongly positive. Statin-associated: "
                          "atorvastatin since 2019."}],
    }


def patient() -> Resource:
    return {
        "resourceType": "Patient",
        "id": "pat-internal-9",
        "identifier": [
            {"system": "urn:oid:2.16.840.1.113883.4.1", "value": "123-45-6789"},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                  "code": "MR"}]},
             "system": "urn:oid:1.2.3.4.5", "value": MRN},
        ],
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "birthDate": "1968-04-02",
        "gender": "female",
    }
