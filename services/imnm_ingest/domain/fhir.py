"""FHIR R4 JSON -> events.v1: Observation, MedicationRequest, MedicationStatement and Condition,
alone or in a Bundle.

Pure: no I/O, no clock. Every resource is validated with its fhir.resources model (R4B, which is
wire-compatible with R4 for these resources) before anything is read from it, and every converted
event with the events.v1 rules (:func:`~imnm_ingest.domain.conversion.canonical`). A message, a
single resource or a Bundle of any type (transaction, collection, message, searchset, ...), is
converted entirely or rejected entirely with :class:`ConversionRejected`, whose reason names the
FHIR element (``Bundle.entry[2]: Observation.effectiveDateTime: ...``).

What is converted:

* ``Observation`` with a LOINC code -> ``lab_result``; without one -> nothing. A panel (no value,
  but ``hasMember`` or ``component``) -> nothing: its members arrive as Observations of their own.
* ``MedicationRequest`` -> ``medication_order``, except ``doNotPerform: true`` (an order *not* to
  give the drug) and the intents ``proposal``, ``option`` and ``instance-order`` -> nothing. A
  ``filler-order`` belongs to the order its ``basedOn`` names.
* ``MedicationStatement`` (the patient's medication list) -> ``medication_order`` with
  ``reported: true`` and ``order_id`` ``MedicationStatement/<key>``: a statin there is a hazard,
  prophylaxis there is cover, a glucocorticoid there is not summed (docs/rules.md). A
  MedicationRequest with ``reportedBoolean: true`` or a ``reportedReference`` (US Core's medication
  list) is ``reported`` too.
* ``Condition`` coding immune-mediated necrotizing myopathy -> ``diagnosis`` (``"IMNM"``); any
  other condition -> nothing.
* Any other resource type alone is ``unsupported_message``; inside a Bundle it is skipped
  (Patient, Encounter, Practitioner, Medication, MessageHeader, nested Bundles, ...), but a Patient
  or Medication entry is read when a converted resource refers to it. An entry without a resource
  (a transaction DELETE) is skipped.

Conventions an integration has to know:

* **patient_id is the MRN**: ``subject.identifier.value`` when the sender gives a logical
  reference; else the id of a ``Patient/<id>`` reference (relative, absolute or ``_history``),
  i.e. the sending system's Patient.id *is* the MRN; else, inside a Bundle, the Patient entry the
  reference (``urn:uuid:...``) points at: its identifier typed ``MR`` (v2-0203), else its id.
* **Times** must be instants with a UTC offset: a FHIR ``dateTime`` that is only a date
  (``2025-01-05``) is rejected naming the element, except where a later candidate below is a full
  instant. Observation: ``effectiveDateTime`` | ``effectivePeriod.start`` | ``effectiveInstant`` |
  ``issued`` (the first present one must be an instant: ``issued`` is the report time, not a
  stand-in for a date-only collection time). MedicationRequest: ``meta.lastUpdated`` (when this
  version was made: a status change is a new version) then ``authoredOn``; for ``versionId`` "1"
  (the order as created) ``authoredOn`` first. MedicationStatement: the same with
  ``dateAsserted`` for ``authoredOn``, then ``effectiveDateTime`` | ``effectivePeriod.start``;
  ``effectivePeriod.end`` of a statement in force is its ``ends_at``. Condition:
  ``recordedDate``, ``onsetDateTime``, ``meta.lastUpdated``; for a later version (``versionId``
  other than "1") ``meta.lastUpdated`` first.
* **Ids**: the resource key is ``id``, else ``identifier[0].value``. ``event_id`` is
  ``fhir:<Type>/<key>/<meta.versionId>``; without a versionId it is
  ``fhir:<Type>/<key>/<digest>``, a digest of the converted event, so a redelivery is a duplicate
  but any change (an amended value, a stop, a new dose) is a new event even from a server that
  does not version. ``result_id`` is ``fhir:Observation/<key>`` (stable across versions: a
  corrected version replaces the value); ``order_id`` is the key.
* Codings are recognised by system: LOINC ``http://loinc.org``, UCUM
  ``http://unitsofmeasure.org``, RxNorm ``http://www.nlm.nih.gov/research/umls/rxnorm``, ATC
  ``http://www.whocc.no/atc``, SNOMED CT ``http://snomed.info/sct``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, get_args

import orjson
from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.ratio import Ratio
from fhir.resources.R4B.reference import Reference
from pydantic import BaseModel, ValidationError

from imnm_common.contracts.events import COMPARATORS, CanonicalEvent, MedicationOrderEvent
from imnm_common.domain.state import IN_FORCE_STATUSES
from imnm_ingest.domain.conversion import (
    INVALID_FIELD,
    MISSING_FIELD,
    NOT_PARSEABLE,
    UNSUPPORTED,
    ConversionRejected,
    canonical,
    put_present,
)
from imnm_ingest.domain.fhir_dosage import Dosages, dosage_fields
from imnm_ingest.domain.fhir_values import (
    concept_text,
    instant,
    nonblank,
    quantity_unit,
)
from imnm_ingest.domain.strength import (
    Strength,
    dose_as_written_or_mg,
    dose_form_unit,
    strength_from_ratio,
    strength_in_names,
)

__all__ = ["events_from_fhir"]

SOURCE = "fhir"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
SNOMED = "http://snomed.info/sct"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"

_OBSERVATION_STATUS = {
    "final": "final",
    "amended": "corrected",
    "corrected": "corrected",
    "preliminary": "preliminary",
    "registered": "preliminary",
    "unknown": "preliminary",
    "cancelled": "cancelled",
    "entered-in-error": "entered-in-error",
}
_ORDER_STATUSES = frozenset(get_args(MedicationOrderEvent.model_fields["status"].annotation))
# IMNM in remission is still IMNM: the statin ban and the steroid monitoring go on, so only
# "inactive" and "resolved" end the tracked episode.
_CLINICAL_STATUS = {
    "active": "active",
    "recurrence": "active",
    "relapse": "active",
    "remission": "active",
    "inactive": "resolved",
    "resolved": "resolved",
}
# Refuted: the patient does not have IMNM, as if it had never been recorded.
_VOIDING_VERIFICATION = frozenset({"entered-in-error", "refuted"})

_IMNM_SNOMED = frozenset({"715863001"})  # Autoimmune necrotizing myopathy (disorder)
_NECROTIZING = r"necroti[sz]ing\s+(?:myopathy|myositis)"
_IMNM_TEXT = re.compile(
    r"\bimnm\b"
    rf"|\b(?:immune[\s-]*mediated|auto[\s-]*immune|immune)\s+{_NECROTIZING}"
    r"|\bnecroti[sz]ing\s+auto[\s-]*immune\s+(?:myopathy|myositis)"
    r"|\b(?:anti[\s-]*)?(?:hmgcr|srp)[\s-]+(?:associated\s+|positive\s+)?(?:myopathy|myositis)",
    re.IGNORECASE,
)
_HMGCR = re.compile(r"\bhmgcr\b|\bhmg[\s-]*co[\s-]*a\s+reductase\b", re.IGNORECASE)
_SRP = re.compile(r"\bsrp\b|\bsignal\s+recognition\s+particle\b", re.IGNORECASE)
_SERONEGATIVE = re.compile(
    r"\bsero[\s-]*negative\b|\b(?:auto)?anti[\s-]*body[\s-]+negative\b", re.IGNORECASE
)
_NEGATIVE = re.compile(r"\bneg(?:ative)?\b|\bnot\s+detected\b", re.IGNORECASE)
_STATIN_ASSOCIATED = re.compile(
    r"(?<![\w-])statin[\s-]+(?:associated|induced|related|triggered|exposed)\b", re.IGNORECASE
)
_NOT_STATIN = re.compile(r"\b(?:non|not|no)[\s-]+statin", re.IGNORECASE)


def _reference_to(resource_type: str) -> re.Pattern[str]:
    """``<resource_type>/<id>``, relative or absolute, optionally with /_history/<version>."""
    return re.compile(
        rf"(?:^|/){resource_type}/([A-Za-z0-9\-.]{{1,64}})(?:/_history/[A-Za-z0-9\-.]{{1,64}})?$"
    )


_PATIENT_REFERENCE = _reference_to("Patient")

Model = TypeVar("Model", bound=BaseModel)
EventObject = dict[str, Any]


def events_from_fhir(payload: bytes | str) -> list[CanonicalEvent]:
    """Convert one FHIR JSON resource or Bundle; ``[]`` when it holds nothing we track."""
    document = _load(payload)
    resource_type = document["resourceType"]
    if resource_type == "Bundle":
        return _from_bundle(document)
    if resource_type not in _CONVERTERS:
        raise ConversionRejected(
            f"{resource_type}: resource type not converted (Observation, MedicationRequest, "
            "MedicationStatement, Condition, or a Bundle holding them)", UNSUPPORTED,
        )
    return _convert(document, _Context())


# ---------------------------------------------------------------------------------------------
# documents, bundles, validation
def _load(payload: bytes | str) -> dict[str, Any]:
    if isinstance(payload, bytes | bytearray) and payload.startswith(b"\xef\xbb\xbf"):
        payload = payload[3:]
    elif isinstance(payload, str):
        payload = payload.removeprefix("\ufeff")
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise ConversionRejected(f"not FHIR JSON: {error}", NOT_PARSEABLE) from None
    if not isinstance(document, dict):
        raise ConversionRejected("not a FHIR resource: the JSON is not an object", NOT_PARSEABLE)
    resource_type = document.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise ConversionRejected("not a FHIR resource: no resourceType", NOT_PARSEABLE)
    return document


@dataclass(frozen=True)
class _Context:
    """The Bundle around a resource: its entries by fullUrl and by ``Type/id``."""

    entries: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    def resolve(self, reference: str) -> dict[str, Any] | None:
        found = self.entries.get(reference)
        if found is None and "/_history/" in reference:
            found = self.entries.get(reference.split("/_history/", 1)[0])
        return found


def _from_bundle(document: dict[str, Any]) -> list[CanonicalEvent]:
    entries = document.get("entry")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ConversionRejected("Bundle.entry: not an array", INVALID_FIELD)
    # The Bundle itself is validated without its resources: those we convert are validated by
    # their own models below, and those we skip cannot reject the message.
    shell = {
        **document,
        "entry": [
            {k: v for k, v in entry.items() if k != "resource"} if isinstance(entry, dict)
            else entry
            for entry in entries
        ],
    }
    if not entries:
        shell.pop("entry")
    _validate(Bundle, shell)
    index: dict[str, dict[str, Any]] = {}
    for entry in entries:
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url:
            index.setdefault(full_url, resource)
        resource_type, resource_id = resource.get("resourceType"), resource.get("id")
        if isinstance(resource_type, str) and isinstance(resource_id, str):
            index.setdefault(f"{resource_type}/{resource_id}", resource)
    context = _Context(index)
    events: list[CanonicalEvent] = []
    for number, entry in enumerate(entries):
        resource = entry.get("resource")
        if resource is None:
            continue
        where = f"Bundle.entry[{number}]"
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise ConversionRejected(
                f"{where}.resource: not a FHIR resource (no resourceType)", INVALID_FIELD
            )
        if resource["resourceType"] not in _CONVERTERS:
            continue
        try:
            events.extend(_convert(resource, context))
        except ConversionRejected as rejected:
            raise ConversionRejected(f"{where}: {rejected.reason}", rejected.code) from None
    return events


def _convert(resource: dict[str, Any], context: _Context) -> list[CanonicalEvent]:
    resource_type = resource["resourceType"]
    converter = _CONVERTERS[resource_type]
    return canonical(converter(resource, context), where=resource_type)


def _validate(model: type[Model], raw: dict[str, Any]) -> Model:
    name = model.__name__
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        path = _path(name, first["loc"])
        message = " ".join(str(first["msg"]).removeprefix("Value error, ").split())
        raise ConversionRejected(f"{path}: {message}", INVALID_FIELD) from None
    except Exception as error:  # fhir.resources raises KeyError etc. on some malformed input
        raise ConversionRejected(
            f"{name}: not a valid {name} resource ({type(error).__name__}: {error})",
            INVALID_FIELD,
        ) from None


def _path(name: str, loc: Iterable[int | str]) -> str:
    path = name
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "root":  # pydantic's name for a model's own validator, not a FHIR element
            path += f".{'resourceType' if part == 'resource_type' else part}"
    return path


# ---------------------------------------------------------------------------------------------
# Observation -> lab_result
def _observation(raw: dict[str, Any], context: _Context) -> list[EventObject]:
    obs = _validate(Observation, raw)
    loinc = _code_in(obs.code, LOINC)
    if loinc is None:
        return []  # not a LOINC-coded result: nothing the tracker reads
    value, value_text, unit, comparator = _observation_value(obs)
    no_value = value is None and value_text is None and obs.dataAbsentReason is None
    if no_value and (obs.hasMember or obs.component):
        return []  # a panel: its members are Observations of their own
    status = _mapped(obs.status, _OBSERVATION_STATUS, "Observation.status")
    if value is None and value_text is None:
        if obs.dataAbsentReason is not None:
            value_text = concept_text(obs.dataAbsentReason)
        elif status == "cancelled":
            value_text = "cancelled"
        elif status != "entered-in-error":
            raise ConversionRejected(
                "Observation.value[x]: no valueQuantity, valueInteger, valueString or "
                "valueCodeableConcept, and no dataAbsentReason", MISSING_FIELD,
            )
    key = _key(obs.id, obs.identifier, "Observation")
    event: EventObject = {
        "event_type": "lab_result",
        "patient_id": _patient_id(obs.subject, "Observation", context),
        "occurred_at": _observation_time(obs),
        "source": SOURCE,
        "loinc": loinc,
        "result_id": f"fhir:Observation/{key}",
        "status": status,
    }
    put_present(event, value=value, comparator=comparator, value_text=value_text, unit=unit,
                reference_high=_reference_high(obs))
    event["event_id"] = _event_id("Observation", key, obs.meta, event)
    return [event]


def _observation_value(
    obs: Observation,
) -> tuple[float | None, str | None, str | None, str | None]:
    """(value, value_text, unit, comparator) of an Observation."""
    if obs.valueQuantity is not None:
        quantity = obs.valueQuantity
        if quantity.value is None:
            raise ConversionRejected("Observation.valueQuantity.value: no number", MISSING_FIELD)
        comparator = quantity.comparator
        if comparator is not None and comparator not in COMPARATORS:
            raise ConversionRejected(
                f"Observation.valueQuantity.comparator: {comparator!r} is not one of "
                f"{', '.join(sorted(COMPARATORS))}", INVALID_FIELD,
            )
        return float(quantity.value), None, quantity_unit(quantity), comparator
    if obs.valueInteger is not None:
        return float(obs.valueInteger), None, None, None
    if obs.valueString is not None:
        return None, nonblank(obs.valueString), None, None
    if obs.valueCodeableConcept is not None:
        return None, concept_text(obs.valueCodeableConcept), None, None
    return None, None, None, None



def _reference_high(obs: Observation) -> float | None:
    for reference_range in obs.referenceRange or []:
        if reference_range.high is not None and reference_range.high.value is not None:
            return float(reference_range.high.value)
    return None


def _observation_time(obs: Observation) -> str:
    if obs.effectiveDateTime is not None:
        return instant(obs.effectiveDateTime, "Observation.effectiveDateTime")
    if obs.effectivePeriod is not None and obs.effectivePeriod.start is not None:
        return instant(obs.effectivePeriod.start, "Observation.effectivePeriod.start")
    if obs.effectiveInstant is not None:
        return instant(obs.effectiveInstant, "Observation.effectiveInstant")
    if obs.issued is not None:
        return instant(obs.issued, "Observation.issued")
    raise ConversionRejected(
        "Observation.effective[x]: no effectiveDateTime, effectivePeriod.start, "
        "effectiveInstant or issued", MISSING_FIELD,
    )


# ---------------------------------------------------------------------------------------------
# MedicationRequest -> medication_order
def _medication_request(raw: dict[str, Any], context: _Context) -> list[EventObject]:
    request = _validate(MedicationRequest, raw)
    if request.doNotPerform:
        return []  # an order NOT to give the drug is no exposure to it
    if request.intent in _NOT_AN_ORDER:
        return []
    status = request.status
    if status not in _ORDER_STATUSES:
        raise ConversionRejected(
            f"MedicationRequest.status: {status!r} is not a MedicationRequest status",
            INVALID_FIELD,
        )
    key = _key(request.id, request.identifier, "MedicationRequest")
    meta = request.meta
    last_updated = meta.lastUpdated if meta is not None else None
    candidates = [("MedicationRequest.meta.lastUpdated", last_updated),
                  ("MedicationRequest.authoredOn", request.authoredOn)]
    if meta is not None and meta.versionId == "1":
        candidates.reverse()  # the order as created: signed at authoredOn
    event: EventObject = {
        "event_type": "medication_order",
        "patient_id": _patient_id(request.subject, "MedicationRequest", context),
        "occurred_at": _first_instant(candidates),
        "source": SOURCE,
        "order_id": _order_key(request, key, context),
        "status": status,
    }
    if request.reportedBoolean or request.reportedReference is not None:
        # US Core writes the medication list this way, not as MedicationStatements
        event["reported"] = True
    event["medication"], product = _ordered_medication(request, context)
    dosages = Dosages(request.dosageInstruction or [], "MedicationRequest.dosageInstruction",
                      event["status"], request.authoredOn)
    event.update(dosage_fields(dosages, event["occurred_at"], _in_mass(request, product)))
    event["event_id"] = _event_id("MedicationRequest", key, meta, event)
    return [event]


# ---------------------------------------------------------------------------------------------
# MedicationStatement -> medication_order, reported
# What the patient is said to take, in events.v1's order statuses: "intended" (not taken yet) is
# not in force, as a draft order is not; "not-taken" is a stop.
_STATEMENT_STATUS = {
    "active": "active",
    "on-hold": "on-hold",
    "completed": "completed",
    "stopped": "stopped",
    "not-taken": "stopped",
    "intended": "draft",
    "entered-in-error": "entered-in-error",
    "unknown": "unknown",
}


def _medication_statement(raw: dict[str, Any], context: _Context) -> list[EventObject]:
    statement = _validate(MedicationStatement, raw)
    status = _mapped(statement.status, _STATEMENT_STATUS, "MedicationStatement.status")
    key = _key(statement.id, statement.identifier, "MedicationStatement")
    meta = statement.meta
    period = statement.effectivePeriod
    asserted = [("MedicationStatement.meta.lastUpdated", meta.lastUpdated if meta else None),
                ("MedicationStatement.dateAsserted", statement.dateAsserted)]
    if meta is not None and meta.versionId == "1":
        asserted.reverse()  # the statement as first made: asserted at dateAsserted
    # Then when it is taken: the list's entry counts from when it was said, not from a start
    # years back, unless nothing else says when.
    effective_start = statement.effectiveDateTime or (period.start if period else None)
    occurred_at = _first_instant([
        *asserted,
        ("MedicationStatement.effectiveDateTime", statement.effectiveDateTime),
        ("MedicationStatement.effectivePeriod.start", period.start if period else None),
    ])
    event: EventObject = {
        "event_type": "medication_order",
        "patient_id": _patient_id(statement.subject, "MedicationStatement", context),
        "occurred_at": occurred_at,
        "source": SOURCE,
        # apart from any MedicationRequest of the same id
        "order_id": f"MedicationStatement/{key}",
        "status": status,
        "reported": True,
    }
    event["medication"], product = _ordered_medication(statement, context)
    dosages = Dosages(statement.dosage or [], "MedicationStatement.dosage", status,
                      effective_start)
    event.update(dosage_fields(dosages, occurred_at, _in_mass(statement, product)))
    if period is not None and period.end is not None and status in IN_FORCE_STATUSES:
        _put_statement_end(event, period.end)
    event["event_id"] = _event_id("MedicationStatement", key, meta, event)
    return [event]


def _put_statement_end(event: EventObject, end: object) -> None:
    """``effectivePeriod.end``: taken until then. The dosage's own end, when earlier, stands."""
    element = "MedicationStatement.effectivePeriod.end"
    ends_at = datetime.fromisoformat(instant(end, element))
    if ends_at <= datetime.fromisoformat(event["occurred_at"]):
        raise ConversionRejected(
            f"{element}: {ends_at.isoformat()} is not after this version of a statement still "
            f"{event['status']} ({event['occurred_at']}); send it completed or stopped",
            INVALID_FIELD,
        )
    steps = event.get("dose_schedule") or []
    if steps and ends_at <= datetime.fromisoformat(steps[-1]["starts_at"]):
        raise ConversionRejected(
            f"{element}: {ends_at.isoformat()} is not after the last dosage step "
            f"({steps[-1]['starts_at']})",
            INVALID_FIELD,
        )
    current = event.get("ends_at")
    if current is None or ends_at < datetime.fromisoformat(current):
        event["ends_at"] = ends_at.isoformat()


_MedicationResource = MedicationRequest | MedicationStatement


def _in_mass(
    resource: _MedicationResource, product: Medication | None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A dose in tablets or mL as a mass, where the product's strength says it."""

    def in_mass(dose: dict[str, Any]) -> dict[str, Any]:
        if dose_form_unit(dose["unit"]) is None:
            return dose
        return dose_as_written_or_mg(dose["value"], dose["unit"], _strength(resource, product))

    return in_mass


# MedicationRequest.intent that is no order of its own: a proposal or an option is not
# authorised, and an instance-order is one administration of an order that already counts.
_NOT_AN_ORDER = frozenset({"proposal", "option", "instance-order"})
_ORDER_REFERENCE = _reference_to("MedicationRequest")


def _order_key(request: MedicationRequest, key: str, context: _Context) -> str:
    """The order a version belongs to. A pharmacy's filler-order based on a MedicationRequest is
    that prescription: counted apart, the prescriber's and the pharmacy's versions of one
    prednisone order would add up to twice its dose. Its event ids stay its own."""
    if request.intent != "filler-order":
        return key
    for based_on in request.basedOn or []:
        reference = based_on.reference or ""
        found = context.resolve(reference) if reference else None
        if found is not None and found.get("resourceType") == "MedicationRequest":
            placer = found.get("id")
            if isinstance(placer, str) and placer:
                return placer
        match = _ORDER_REFERENCE.search(reference)
        if match is not None:
            return match.group(1)
    return key


def _ordered_medication(
    resource: _MedicationResource, context: _Context
) -> tuple[dict[str, str], Medication | None]:
    """The events.v1 medication, and the Medication resource when the message carries one
    (its ingredient strength can turn a dose in tablets into a mass)."""
    name = resource.get_resource_type()
    if resource.medicationCodeableConcept is not None:
        return _medication_from(resource.medicationCodeableConcept,
                                f"{name}.medicationCodeableConcept"), None
    element = f"{name}.medicationReference"
    reference = resource.medicationReference
    if reference is None:  # the model requires medication[x]; kept for the type checker
        raise ConversionRejected(f"{element}: no medication", MISSING_FIELD)
    target = reference.reference or ""
    medication: Medication | None = None
    if target.startswith("#"):
        for contained in resource.contained or []:
            if isinstance(contained, Medication) and contained.id == target[1:]:
                medication = contained
                break
    elif target:
        found = context.resolve(target)
        if found is not None and found.get("resourceType") == "Medication":
            medication = _validate(Medication, found)
    if medication is not None and medication.code is not None:
        return _medication_from(medication.code, f"{element} ({target}).code"), medication
    if reference.display and reference.display.strip():
        return {"name": reference.display.strip()}, medication
    where = f"{target!r}" if target else "the reference"
    raise ConversionRejected(
        f"{element}: {where} is neither a contained Medication nor an entry of the same Bundle "
        "with a code, and has no display (referenced Medication resources are not fetched)",
        MISSING_FIELD,
    )


def _medication_from(concept: CodeableConcept, element: str) -> dict[str, str]:
    rxnorm = _code_in(concept, RXNORM)
    atc = _code_in(concept, ATC)
    name = nonblank(concept.text)
    if name is None:
        codings = concept.coding or []
        preferred = [c for c in codings if c.system == RXNORM] + codings
        name = next((nonblank(c.display) for c in preferred if nonblank(c.display)), None)
    medication = {k: v for k, v in (("rxnorm", rxnorm), ("atc", atc), ("name", name)) if v}
    if not medication:
        raise ConversionRejected(
            f"{element}: no RxNorm or ATC coding and no text or display", MISSING_FIELD
        )
    return medication


def _strength(resource: _MedicationResource, product: Medication | None) -> Strength | None:
    """The ordered product's strength, which turns a dose in tablets or mL into a mass: its
    Medication's ingredient strength, else the one its names state ("predniSONE 20 MG Oral
    Tablet", an RxNorm clinical drug's display)."""
    active = [i for i in product.ingredient or [] if i.isActive is not False] if product else []
    if len(active) > 1:
        return None  # a combination product's dose is not one ingredient's mass
    if active and active[0].strength is not None:
        return _ratio_strength(active[0].strength)
    concept = resource.medicationCodeableConcept or (product.code if product else None)
    if concept is None:
        return None
    names = [concept.text, *(coding.display for coding in concept.coding or [])]
    return strength_in_names(name for name in names if name)


def _ratio_strength(ratio: Ratio) -> Strength | None:
    """``Medication.ingredient[].strength``: a mass per an amount of a dose-form unit."""
    numerator, denominator = ratio.numerator, ratio.denominator
    if numerator is None or denominator is None:
        return None
    mass_unit = quantity_unit(numerator)
    if numerator.value is None or denominator.value is None or mass_unit is None:
        return None
    return strength_from_ratio(float(numerator.value), mass_unit, float(denominator.value),
                               quantity_unit(denominator))


# ---------------------------------------------------------------------------------------------
# Condition -> diagnosis
def _condition(raw: dict[str, Any], context: _Context) -> list[EventObject]:
    condition = _validate(Condition, raw)
    if condition.code is None or not _is_imnm(condition.code):
        return []
    verification = _codes(condition.verificationStatus)
    if _VOIDING_VERIFICATION.intersection(verification):
        status = "entered-in-error"
    elif condition.clinicalStatus is None:
        status = "active"
    else:
        clinical = [c for c in _codes(condition.clinicalStatus) if c in _CLINICAL_STATUS]
        if not clinical:
            raise ConversionRejected(
                f"Condition.clinicalStatus: {_codes(condition.clinicalStatus)} holds no "
                "condition-clinical code (active, recurrence, relapse, remission, inactive, "
                "resolved)", INVALID_FIELD,
            )
        status = _CLINICAL_STATUS[clinical[0]]
    key = _key(condition.id, condition.identifier, "Condition")
    meta = condition.meta
    last_updated = meta.lastUpdated if meta is not None else None
    candidates = [("Condition.recordedDate", condition.recordedDate),
                  ("Condition.onsetDateTime", condition.onsetDateTime),
                  ("Condition.meta.lastUpdated", last_updated)]
    if meta is not None and meta.versionId is not None and meta.versionId != "1":
        candidates.insert(0, candidates.pop())  # a later version: changed when it was stored
    texts = _condition_texts(condition.code, condition.note)
    event: EventObject = {
        "event_type": "diagnosis",
        "patient_id": _patient_id(condition.subject, "Condition", context),
        "occurred_at": _first_instant(candidates),
        "source": SOURCE,
        "condition": "IMNM",
        "status": status,
    }
    put_present(event, antibody=_antibody(texts), statin_associated=_statin_associated(texts))
    event["event_id"] = _event_id("Condition", key, meta, event)
    return [event]


def _is_imnm(code: CodeableConcept) -> bool:
    for coding in code.coding or []:
        if coding.system == SNOMED and (coding.code or "").strip() in _IMNM_SNOMED:
            return True
        if any(_IMNM_TEXT.search(t) for t in (coding.display, coding.code) if t):
            return True
    return bool(code.text and _IMNM_TEXT.search(code.text))


def _condition_texts(code: CodeableConcept, notes: list[Annotation] | None) -> list[str]:
    texts = [code.text] + [c.display for c in code.coding or []]
    texts += [n.text for n in notes or []]
    return [t for t in texts if t]


def _antibody(texts: list[str]) -> str | None:
    """A deliberately cautious reading of free text: one antibody named, none negated."""
    kinds = set()
    for text in texts:
        if _HMGCR.search(text):
            kinds.add("anti-HMGCR")
        if _SRP.search(text):
            kinds.add("anti-SRP")
        if _SERONEGATIVE.search(text):
            kinds.add("seronegative")
        elif kinds & {"anti-HMGCR", "anti-SRP"} and _NEGATIVE.search(text):
            return None  # "HMGCR negative": which antibody, if any, is unclear
    return kinds.pop() if len(kinds) == 1 else None


def _statin_associated(texts: list[str]) -> bool | None:
    for text in texts:
        if _STATIN_ASSOCIATED.search(text) and not _NOT_STATIN.search(text):
            return True
    return None


# ---------------------------------------------------------------------------------------------
# shared pieces
def _patient_id(subject: Reference | None, name: str, context: _Context) -> str:
    element = f"{name}.subject"
    if subject is None:
        raise ConversionRejected(f"{element}: no subject (the patient's MRN)", MISSING_FIELD)
    if subject.identifier is not None and nonblank(subject.identifier.value):
        return str(nonblank(subject.identifier.value))
    target = subject.reference
    if target:
        match = _PATIENT_REFERENCE.search(target)
        if match:
            return match.group(1)
        found = context.resolve(target)
        if found is not None and found.get("resourceType") == "Patient":
            patient = _validate(Patient, found)
            mrn = _medical_record_number(patient.identifier) or patient.id
            if mrn:
                return mrn
            raise ConversionRejected(
                f"{element}: the Patient {target!r} has no identifier typed MR and no id",
                MISSING_FIELD,
            )
        if found is not None or not target.startswith(("urn:", "#")):
            raise ConversionRejected(
                f"{element}: {target!r} is not a Patient reference", INVALID_FIELD
            )
    raise ConversionRejected(
        f"{element}: no identifier.value (MRN) and no Patient/<id> reference", MISSING_FIELD
    )


def _medical_record_number(identifiers: list[Identifier] | None) -> str | None:
    for identifier in identifiers or []:
        kind = identifier.type
        if kind is not None and any(
            c.code == "MR" and c.system in (None, IDENTIFIER_TYPE) for c in kind.coding or []
        ):
            value = nonblank(identifier.value)
            if value:
                return value
    return None


def _key(resource_id: str | None, identifiers: list[Identifier] | None, name: str) -> str:
    if resource_id:
        return resource_id
    first = nonblank(identifiers[0].value) if identifiers else None
    if first:
        return first
    raise ConversionRejected(
        f"{name}.id: no id and no identifier[0].value to identify the resource", MISSING_FIELD
    )


def _event_id(name: str, key: str, meta: Meta | None, event: EventObject) -> str:
    if meta is not None and meta.versionId:
        return f"fhir:{name}/{key}/{meta.versionId}"
    digest = hashlib.blake2b(orjson.dumps(event, option=orjson.OPT_SORT_KEYS), digest_size=8)
    return f"fhir:{name}/{key}/{digest.hexdigest()}"


def _first_instant(candidates: Sequence[tuple[str, object]]) -> str:
    """The first present candidate that is an instant; a date-only one yields to a later one."""
    present = [(element, value) for element, value in candidates if value is not None]
    if not present:
        names = ", ".join(element for element, _ in candidates)
        raise ConversionRejected(f"{candidates[0][0]}: none of {names} is present",
                                 MISSING_FIELD)
    for element, value in present:
        if isinstance(value, datetime):
            return instant(value, element)
    element, value = present[0]
    return instant(value, element)  # raises, naming the first element


def _mapped(value: str | None, table: Mapping[str, str], element: str) -> str:
    mapped = table.get(value or "")
    if mapped is None:
        raise ConversionRejected(f"{element}: unknown code {value!r}", INVALID_FIELD)
    return mapped


def _code_in(concept: CodeableConcept | None, system: str) -> str | None:
    for coding in (concept.coding or []) if concept is not None else []:
        if coding.system == system and nonblank(coding.code):
            return nonblank(coding.code)
    return None


def _codes(concept: CodeableConcept | None) -> list[str]:
    """The codes of a CodeableConcept in order, without blanks or repeats."""
    codes = [nonblank(c.code) for c in concept.coding or []] if concept is not None else []
    return list(dict.fromkeys(code for code in codes if code))


_CONVERTERS: dict[str, Callable[[dict[str, Any], _Context], list[EventObject]]] = {
    "Observation": _observation,
    "MedicationRequest": _medication_request,
    "MedicationStatement": _medication_statement,
    "Condition": _condition,
}
