"""A taper written as one FHIR MedicationRequest: one dosageInstruction per step.

The steps become the event's ``dose_schedule`` and the end of the last bounded step its
``ends_at``; the instruction in effect at the version's time gives the event's own dose.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from fhir_samples import UCUM, Resource, changed, prednisone_order

from imnm_common.contracts.events import MedicationOrderEvent
from imnm_ingest.domain.conversion import INVALID_FIELD, MISSING_FIELD, ConversionRejected
from imnm_ingest.domain.fhir import events_from_fhir


def step(sequence: int | None, mg: float, *, days: float | None = None,
         start: str | None = None, end: str | None = None, unit: str = "mg") -> dict[str, Any]:
    repeat: dict[str, Any] = {"frequency": 1, "period": 1, "periodUnit": "d"}
    if days is not None:
        repeat["boundsDuration"] = {"value": days, "unit": "days", "system": UCUM, "code": "d"}
    if start is not None or end is not None:
        repeat["boundsPeriod"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    dosage: dict[str, Any] = {
        "timing": {"repeat": repeat},
        "doseAndRate": [{"doseQuantity": {"value": mg, "unit": unit, "system": UCUM,
                                          "code": unit}}],
    }
    if sequence is not None:
        dosage["sequence"] = sequence
    return dosage


def taper(*steps: dict[str, Any], **changes: Any) -> Resource:
    return changed(prednisone_order(), dosageInstruction=list(steps), **changes)


def order_of(resource: Resource) -> MedicationOrderEvent:
    [event] = events_from_fhir(orjson.dumps(resource))
    assert isinstance(event, MedicationOrderEvent)
    return event


def reason(resource: Resource, code: str) -> str:
    with pytest.raises(ConversionRejected) as caught:
        events_from_fhir(orjson.dumps(resource))
    assert caught.value.code == code, caught.value.reason
    return caught.value.reason


def schedule(event: MedicationOrderEvent) -> list[tuple[str, float | None]]:
    return [
        (s.starts_at.isoformat(), s.dose.value if s.dose else None)
        for s in event.dose_schedule or []
    ]


def test_steps_bounded_by_duration_become_the_schedule_and_the_end() -> None:
    # authoredOn 2025-01-06T09:00Z: 60 mg x 14 d, 40 mg x 14 d, 20 mg x 7 d, then stop
    event = order_of(taper(step(1, 60, days=14), step(2, 40, days=14), step(3, 20, days=7)))
    assert event.dose is not None and event.dose.value == 60
    assert event.frequency is not None and event.frequency.unit == "d"
    assert schedule(event) == [("2025-01-20T09:00:00+00:00", 40.0),
                               ("2025-02-03T09:00:00+00:00", 20.0)]
    assert event.ends_at is not None and event.ends_at.isoformat() == "2025-02-10T09:00:00+00:00"


def test_sequence_orders_the_steps_not_the_list() -> None:
    event = order_of(taper(step(2, 40, days=14), step(1, 60, days=14)))
    assert event.dose is not None and event.dose.value == 60
    assert schedule(event) == [("2025-01-20T09:00:00+00:00", 40.0)]


def test_bounds_periods_place_steps_and_an_open_last_step_has_no_end() -> None:
    event = order_of(taper(
        step(1, 60, start="2025-01-06T09:00:00+00:00", end="2025-01-13T09:00:00+00:00"),
        step(2, 30, start="2025-01-15T08:00:00+00:00"),
    ))
    assert schedule(event) == [("2025-01-15T08:00:00+00:00", 30.0)]
    assert event.ends_at is None


def test_a_later_version_starts_at_the_step_in_effect() -> None:
    """Version 2, made on day 16 (a status note, say): in the second step, the rest to come."""
    resource = taper(step(1, 60, days=14), step(2, 40, days=14), step(3, 20, days=7),
                     meta={"versionId": "2", "lastUpdated": "2025-01-22T10:00:00+00:00"})
    event = order_of(resource)
    assert event.dose is not None and event.dose.value == 40
    assert schedule(event) == [("2025-02-03T09:00:00+00:00", 20.0)]
    assert event.ends_at is not None


def test_one_bounded_instruction_is_a_course_that_ends() -> None:
    event = order_of(taper(step(1, 60, days=5)))
    assert event.dose_schedule is None
    assert event.ends_at is not None and event.ends_at.isoformat() == "2025-01-11T09:00:00+00:00"


def test_one_open_instruction_is_read_as_before() -> None:
    event = order_of(prednisone_order())
    assert event.dose_schedule is None and event.ends_at is None
    assert event.dose is not None and event.dose.value == 60


def test_instructions_sharing_a_sequence_are_concurrent_and_the_first_is_read() -> None:
    event = order_of(taper(step(1, 10), step(1, 5), step(2, 5, start="2025-02-01T08:00:00Z")))
    assert event.dose is not None and event.dose.value == 10
    assert schedule(event) == [("2025-02-01T08:00:00+00:00", 5.0)]


def test_a_stopped_order_has_no_schedule_or_end() -> None:
    event = order_of(taper(step(1, 60, days=14), step(2, 40, days=14), status="stopped"))
    assert event.dose_schedule is None and event.ends_at is None


def test_tablets_in_a_step_are_converted_with_the_strength() -> None:
    resource = taper(step(1, 3, days=14, unit="TAB"), step(2, 2, days=14, unit="TAB"))
    resource["medicationCodeableConcept"]["text"] = "predniSONE 20 MG Oral Tablet"
    event = order_of(resource)
    assert event.dose is not None and (event.dose.value, event.dose.unit) == (60.0, "mg")
    [later] = event.dose_schedule or []
    assert later.dose is not None and (later.dose.value, later.dose.unit) == (40.0, "mg")


def test_a_later_step_that_cannot_be_placed_is_refused() -> None:
    text = reason(taper(step(1, 60), step(2, 40)), MISSING_FIELD)
    assert text.startswith("MedicationRequest.dosageInstruction[1].timing.repeat: a later step")


def test_a_step_starting_before_the_one_before_it_is_refused() -> None:
    text = reason(taper(step(1, 60, days=14), step(2, 40, start="2025-01-05T09:00:00Z")),
                  INVALID_FIELD)
    assert "dosageInstruction[1]" in text and "not after the step before it" in text


def test_a_course_that_ended_before_the_version_of_an_active_order_is_refused() -> None:
    resource = taper(step(1, 60, days=5),
                     meta={"versionId": "3", "lastUpdated": "2025-02-01T10:00:00+00:00"})
    text = reason(resource, INVALID_FIELD)
    assert "ended at 2025-01-11T09:00:00+00:00" in text and "send the order completed" in text


@pytest.mark.parametrize("duration", [
    {"value": 2, "unit": "fortnights"},
    {"value": 0, "unit": "d", "system": UCUM, "code": "d"},
])
def test_a_duration_that_is_not_one_is_refused(duration: dict[str, Any]) -> None:
    dosage = step(1, 60)
    dosage["timing"]["repeat"]["boundsDuration"] = duration
    text = reason(taper(dosage), INVALID_FIELD)
    assert text.startswith("MedicationRequest.dosageInstruction[0].timing.repeat.boundsDuration")


def test_a_date_without_a_time_in_bounds_is_refused() -> None:
    text = reason(taper(step(1, 60, start="2025-01-06")), INVALID_FIELD)
    assert "boundsPeriod.start" in text and "date without a time" in text


def test_the_dose_error_names_the_step() -> None:
    bad = step(2, 40, days=14)
    del bad["doseAndRate"][0]["doseQuantity"]["value"]
    text = reason(taper(step(1, 60, days=14), copy.deepcopy(bad)), MISSING_FIELD)
    assert text.startswith("MedicationRequest.dosageInstruction[1].doseAndRate[0]")
