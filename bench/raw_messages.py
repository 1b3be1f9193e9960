"""Raw messages for the ingest benchmark: events.v1 events written back as HL7 v2 and FHIR R4.

The inverse of the converters' mapping (``docs/ingest.md``): converting a message written here
should give back the event's clinical fields. Pure: no I/O, no clock.

* ``hl7v2_for``: a ``lab_result`` as ORU^R01 (one OBR, one OBX), a ``medication_order`` as
  RDE^O11 (ORC, RXE, TQ1, RXR); text HL7-escaped, timestamps in UTC with ``+0000``.
* ``fhir_for``: a ``lab_result`` as an Observation, a ``medication_order`` as a
  MedicationRequest (``meta.versionId`` / ``lastUpdated``), a ``diagnosis`` as a Condition.

Anything a format cannot carry gives ``None`` (an event type, an order status, a frequency) or is
left out (a second value). What is left out comes back different: the benchmark's round-trip
check counts those.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
MRN_SYSTEM = "urn:imnm:bench:mrn"
IMNM_TEXT = "Immune-mediated necrotizing myopathy"

# events.v1 lab status -> OBX-11 (HL7 table 0085)
_RESULT_STATUS = {"final": "F", "corrected": "C", "preliminary": "P", "cancelled": "X",
                  "entered-in-error": "W"}
# events.v1 order status -> (ORC-1 order control, ORC-5 order status). entered-in-error has no
# order control of its own: CA (it comes back as cancelled).
_ORDER_CONTROL = {"active": ("NW", ""), "stopped": ("DC", ""), "cancelled": ("CA", ""),
                  "on-hold": ("HD", ""), "completed": ("SC", "CM"),
                  "entered-in-error": ("CA", "")}
# events.v1 lab status -> Observation.status
_OBSERVATION_STATUS = {"final": "final", "corrected": "corrected", "preliminary": "preliminary",
                       "cancelled": "cancelled", "entered-in-error": "entered-in-error"}
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_HL7_ESCAPES = str.maketrans({"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\",
                              "~": "\\R\\"})

Event = Mapping[str, Any]


def _plain(event: Event | BaseModel) -> dict[str, Any]:
    if isinstance(event, BaseModel):
        return event.model_dump(mode="json", exclude_none=True)
    return dict(event)


def _instant(raw: str) -> datetime:
    at = datetime.fromisoformat(raw)
    if at.utcoffset() is None:
        raise ValueError(f"occurred_at {raw!r} has no UTC offset")
    return at.astimezone(UTC)


def _number(value: float) -> str:
    """A plain decimal (no exponent) that reads back as the same float."""
    text = format(Decimal(repr(float(value))), "f")
    return text.removesuffix(".0")


# --- HL7 v2 ----------------------------------------------------------------------------------
def _escape(text: str) -> str:
    return text.translate(_HL7_ESCAPES)


def _text(text: str) -> str:
    """Escaped text; lines become repetitions (the converter joins them with newlines)."""
    return "~".join(_escape(line) for line in text.splitlines())


def _dtm(raw: str) -> str:
    at = _instant(raw)
    stamp = at.strftime("%Y%m%d%H%M%S")
    if at.microsecond:  # DTM carries four fractional digits at most
        stamp += "." + f"{at.microsecond:06d}"[:4]
    return stamp + "+0000"


def repeat_pattern(frequency: Mapping[str, Any]) -> str | None:
    """TQ1-3 for ``times`` per ``period`` ``unit``; None when no pattern says it."""
    times, period, unit = frequency["times"], float(frequency["period"]), frequency["unit"]
    if period != int(period) or period < 1:
        return None
    every = int(period)
    if times == 1:
        if unit == "d":
            return "QD" if every == 1 else f"Q{every}D"
        if unit == "h":
            return f"Q{every}H"
        if unit == "wk":
            return "QW" if every == 1 else f"Q{every}W"
        if unit == "mo":
            return "QM" if every == 1 else f"Q{every}L"
        return None
    if unit == "d" and every == 1:
        return {2: "BID", 3: "TID", 4: "QID"}.get(times, f"{times}ID")
    return None


def _pid(patient_id: str) -> str:
    return f"PID|1||{_escape(patient_id)}^^^SITE^MR"


def _msh(message_type: str, control_id: str, at: str) -> str:
    return f"MSH|^~\\&|BENCH|SITE|IMNM|SITE|{at}||{message_type}|{_escape(control_id)}|P|2.5.1"


def hl7v2_for(event: Event | BaseModel, control_id: str) -> bytes | None:
    """One ER7 message (segments separated by ``\\r``) for the event, or None."""
    e = _plain(event)
    kind = e.get("event_type")
    segments: list[str] | None
    if kind == "lab_result":
        segments = _oru(e, control_id)
    elif kind == "medication_order":
        segments = _rde(e, control_id)
    else:
        return None
    return None if segments is None else "\r".join(segments).encode()


def _oru(e: dict[str, Any], control_id: str) -> list[str]:
    at = _dtm(e["occurred_at"])
    loinc = _escape(e["loinc"])
    value, value_text = e.get("value"), e.get("value_text")
    comparator = e.get("comparator")
    if value is not None and comparator is not None:
        value_type, observed = "SN", f"{_escape(comparator)}^{_number(value)}"
    elif value is not None:
        value_type, observed = "NM", _number(value)
    elif value_text is not None:
        value_type, observed = "ST", _text(value_text)
    else:
        value_type, observed = "", ""
    unit = _escape(e.get("unit") or "")
    high = e.get("reference_high")
    reference = f"<{_number(high)}" if high is not None else ""
    status = _RESULT_STATUS[e.get("status", "final")]
    filler = _escape(e.get("result_id") or "")
    return [
        _msh("ORU^R01^ORU_R01", control_id, at),
        _pid(e["patient_id"]),
        f"OBR|1||{filler}|{loinc}^^LN|||{at}",
        f"OBX|1|{value_type}|{loinc}^^LN||{observed}|{unit}|{reference}||||{status}|||{at}",
    ]


def _rde(e: dict[str, Any], control_id: str) -> list[str] | None:
    control = _ORDER_CONTROL.get(e["status"])
    if control is None:
        return None  # draft, unknown: no order control says it
    order_control, order_status = control
    at = _dtm(e["occurred_at"])
    medication = e["medication"]
    name = _escape(medication.get("name") or "")
    if medication.get("rxnorm"):
        give = f"{_escape(medication['rxnorm'])}^{name}^RXNORM"
        if medication.get("atc"):
            give += f"^{_escape(medication['atc'])}^^ATC"
    elif medication.get("atc"):
        give = f"{_escape(medication['atc'])}^{name}^ATC"
    else:
        give = f"^{name}"
    dose = e.get("dose")
    amount, units = (_number(dose["value"]), _escape(dose["unit"])) if dose else ("", "")
    segments = [
        _msh("RDE^O11^RDE_O11", control_id, at),
        _pid(e["patient_id"]),
        f"ORC|{order_control}|{_escape(e['order_id'])}|||{order_status}||||{at}",
        f"RXE||{give}|{amount}||{units}",
    ]
    frequency = e.get("frequency")
    pattern = repeat_pattern(frequency) if frequency else None
    if pattern is not None:
        segments.append(f"TQ1|1||{pattern}")
    if e.get("route"):
        segments.append(f"RXR|^{_escape(e['route'])}")  # the route as text, not a table code
    return segments


# --- FHIR R4 ---------------------------------------------------------------------------------
def _fhir_instant(raw: str) -> str:
    return _instant(raw).isoformat()


def _fhir_id(key: str) -> dict[str, Any]:
    """``id`` when the key is a valid FHIR id, else ``identifier[0].value`` (read as the key)."""
    if _FHIR_ID.match(key):
        return {"id": key}
    return {"identifier": [{"value": key}]}


def _version(event_id: str) -> str:
    if _FHIR_ID.match(event_id):
        return event_id
    return hashlib.blake2b(event_id.encode(), digest_size=16).hexdigest()


def _subject(patient_id: str) -> dict[str, Any]:
    return {"identifier": {"system": MRN_SYSTEM, "value": patient_id}}


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    if unit:
        quantity.update(unit=unit, system=UCUM, code=unit)
    return quantity


def fhir_for(event: Event | BaseModel) -> bytes | None:
    """One FHIR R4 JSON resource for the event, or None."""
    e = _plain(event)
    kind = e.get("event_type")
    if kind == "lab_result":
        resource = _observation(e)
    elif kind == "medication_order":
        resource = _medication_request(e)
    elif kind == "diagnosis":
        resource = _condition(e)
    else:
        return None
    return orjson.dumps(resource)


def _observation(e: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        **_fhir_id(e.get("result_id") or e["event_id"]),
        "status": _OBSERVATION_STATUS[e.get("status", "final")],
        "code": {"coding": [{"system": LOINC, "code": e["loinc"]}]},
        "subject": _subject(e["patient_id"]),
        "effectiveDateTime": _fhir_instant(e["occurred_at"]),
    }
    if e.get("value") is not None:
        resource["valueQuantity"] = _quantity(e["value"], e.get("unit"))
        if e.get("comparator") is not None:
            resource["valueQuantity"]["comparator"] = e["comparator"]
    elif e.get("value_text") is not None:
        resource["valueString"] = e["value_text"]
    if e.get("reference_high") is not None:
        resource["referenceRange"] = [{"high": _quantity(e["reference_high"], e.get("unit"))}]
    return resource


def _medication_request(e: dict[str, Any]) -> dict[str, Any]:
    at = _fhir_instant(e["occurred_at"])
    medication = e["medication"]
    codings = []
    if medication.get("rxnorm"):
        coding = {"system": RXNORM, "code": medication["rxnorm"]}
        if medication.get("name"):
            coding["display"] = medication["name"]
        codings.append(coding)
    if medication.get("atc"):
        codings.append({"system": ATC, "code": medication["atc"]})
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    if medication.get("name"):
        concept["text"] = medication["name"]
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        **_fhir_id(e["order_id"]),
        "meta": {"versionId": _version(e["event_id"]), "lastUpdated": at},
        "status": e["status"],
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": _subject(e["patient_id"]),
        "authoredOn": at,
    }
    dosage: dict[str, Any] = {}
    frequency = e.get("frequency")
    if frequency:
        dosage["timing"] = {"repeat": {"frequency": frequency["times"],
                                       "period": frequency["period"],
                                       "periodUnit": frequency["unit"]}}
    if e.get("route"):
        dosage["route"] = {"text": e["route"]}
    dose = e.get("dose")
    if dose:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose["value"],
                                                   "unit": dose["unit"]}}]
    if dosage:
        resource["dosageInstruction"] = [dosage]
    return resource


def _condition(e: dict[str, Any]) -> dict[str, Any]:
    text = IMNM_TEXT
    antibody = e.get("antibody")
    if antibody and antibody != "unknown":
        text += f" ({antibody})"
    if e.get("statin_associated"):
        text += ", statin-associated"
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        **_fhir_id(e["event_id"]),
        "code": {"text": text},
        "subject": _subject(e["patient_id"]),
        "recordedDate": _fhir_instant(e["occurred_at"]),
    }
    status = e.get("status", "active")
    if status == "entered-in-error":
        resource["verificationStatus"] = {"coding": [{"system": CONDITION_VERIFICATION,
                                                      "code": "entered-in-error"}]}
    else:
        resource["clinicalStatus"] = {"coding": [{"system": CONDITION_CLINICAL,
                                                  "code": status}]}
    return resource
