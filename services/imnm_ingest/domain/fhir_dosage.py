"""``MedicationRequest.dosageInstruction`` (or ``MedicationStatement.dosage``) -> the events.v1
dose, frequency, route, dose schedule and end of an order.

A taper is commonly one MedicationRequest with one dosage instruction per step ("60 mg daily
for 14 days, then 40 mg daily for 14 days, ..."): ``sequence`` orders the steps and each step's
``timing.repeat.bounds[x]`` places it in time. The instruction in effect at the order version's
time gives the event's dose; the steps after it become ``dose_schedule``, and the end of the last
bounded step ``ends_at``. Reading only the first step (as before) took a two-week induction dose
to last for ever, so the protective rules judged a dose the patient no longer took.

Placing the steps:

* instructions are taken in ``sequence`` order (list order where it is absent); those sharing a
  ``sequence`` are one step, given concurrently (FHIR: "If the sequence number is the same, then
  the dosages are to be administered concurrently"): a split dose, "40 mg in the morning and
  20 mg at night";
* the first step starts at its ``boundsPeriod.start``, else at ``authoredOn``, else at the
  version's time; every later one at its own ``boundsPeriod.start``, else where the step before
  it ends (``boundsPeriod.end``, its start plus ``boundsDuration``, or after ``count``
  administrations at its frequency). A later step that cannot
  be placed, or that starts no later than the step before it, is refused naming the instruction:
  a wrong date is worse than none. A concurrent instruction with bounds of its own must be bounded
  as the step's first (events.v1 has one dose per step).

A step of concurrent instructions is their total per day, ``"60 mg/d"`` given 2 times a day: the
rules judge a glucocorticoid by its daily total and methotrexate given daily as daily, and reading
the morning dose alone took 40 mg for the patient's 60 (a missed Pneumocystis alert; a false
"taper too fast" when 60 mg once daily became 30 mg in the morning and 30 mg at night). The
total is only said when it is exact: every instruction a mass (or mass per kg) in one unit, given
daily or more often. Instructions given less often at one frequency (a weekly methotrexate dose
split into two halves 12 hours apart) are their summed dose at that frequency: a daily amount
would make them daily. Otherwise (weekly beside daily, mL beside mg) the first instruction is
read, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fhir.resources.R4B.dosage import Dosage
from fhir.resources.R4B.timing import TimingRepeat

from imnm_common.domain import knowledge
from imnm_common.domain.state import IN_FORCE_STATUSES
from imnm_ingest.domain.conversion import (
    INVALID_FIELD,
    MISSING_FIELD,
    ConversionRejected,
    administrations_a_day,
    daily_frequency,
    days_between_administrations,
)
from imnm_ingest.domain.fhir_values import aware_datetime, concept_text, quantity_unit

# Timing.repeat.periodUnit -> events.v1 unit and the factor on the period.
_PERIOD_UNITS: dict[str, tuple[str, float]] = {
    "s": ("h", 1.0 / 3600.0),
    "min": ("h", 1.0 / 60.0),
    "h": ("h", 1.0),
    "d": ("d", 1.0),
    "wk": ("wk", 1.0),
    "mo": ("mo", 1.0),
    "a": ("mo", 12.0),
}
# Timing.code (HL7 GTSAbbreviation) when there is no usable repeat: (times, period, unit).
_TIMING_CODES: dict[str, tuple[int, float, str]] = {
    "QD": (1, 1.0, "d"), "AM": (1, 1.0, "d"), "PM": (1, 1.0, "d"), "BED": (1, 1.0, "d"),
    "BID": (2, 1.0, "d"), "TID": (3, 1.0, "d"), "QID": (4, 1.0, "d"), "QOD": (1, 2.0, "d"),
    "Q1H": (1, 1.0, "h"), "Q2H": (1, 2.0, "h"), "Q3H": (1, 3.0, "h"), "Q4H": (1, 4.0, "h"),
    "Q6H": (1, 6.0, "h"), "Q8H": (1, 8.0, "h"), "WK": (1, 1.0, "wk"), "MO": (1, 1.0, "mo"),
}
# Timing.repeat.when codes (EventTiming) naming one time of the day; the meal codes without a
# meal (C, AC, PC: "with / before / after meals") say neither how many meals nor which.
_ONE_TIME_OF_DAY = frozenset({
    "MORN", "MORN.early", "MORN.late", "NOON", "AFT", "AFT.early", "AFT.late", "EVE",
    "EVE.early", "EVE.late", "NIGHT", "PHS", "HS", "WAKE", "CM", "CD", "CV", "ACM", "ACD", "ACV",
    "PCM", "PCD", "PCV",
})
# Timing.repeat.boundsDuration (UCUM) -> the length of one unit; a month and a year as UCUM
# defines them (mean Julian).
_DURATION_UNITS: dict[str, timedelta] = {
    "s": timedelta(seconds=1), "min": timedelta(minutes=1), "h": timedelta(hours=1),
    "d": timedelta(days=1), "wk": timedelta(weeks=1), "mo": timedelta(days=30.4375),
    "a": timedelta(days=365.25),
}
# Turns a dose in tablets or mL into mg where the ordered product's strength allows.
DoseInMass = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Step:
    starts_at: datetime
    index: int  # in dosageInstruction, for the reasons
    dosage: Dosage
    # the instructions given at the same time (the same ``sequence``), with their indexes
    concurrent: tuple[tuple[int, Dosage], ...] = ()


@dataclass(frozen=True, slots=True)
class Dosages:
    """A resource's dosage instructions and what placing them needs."""

    instructions: list[Dosage]
    element: str  # "MedicationRequest.dosageInstruction": the reasons name the instruction
    status: str  # events.v1's: only an order in force has later steps and an end
    starts_at: object  # where the first step starts without bounds: an instant, else unused


def dosage_fields(dosages: Dosages, occurred_at: str, dose_in_mass: DoseInMass) -> dict[str, Any]:
    """The order's dose, frequency, route and, while it is in force, its ``dose_schedule`` and
    ``ends_at`` (only those present)."""
    if not dosages.instructions:
        return {}
    version_at = datetime.fromisoformat(occurred_at)
    first = dosages.starts_at if isinstance(dosages.starts_at, datetime) else version_at
    steps, ends_at = _placed_steps(dosages, first)
    current = steps[0]
    for step in steps:
        if step.starts_at <= version_at:
            current = step
    fields = _step_fields(current, dosages.element, dose_in_mass)
    route = current.dosage.route  # one route per order in events.v1: the current step's
    if route is not None and (route_text := concept_text(route)) is not None:
        fields["route"] = route_text
    if dosages.status not in IN_FORCE_STATUSES:
        return fields  # a stopped order's later steps and end say nothing any more
    if current.starts_at > version_at:  # written ahead: "start Monday"
        fields["starts_at"] = current.starts_at.isoformat()
    schedule = [
        {"starts_at": step.starts_at.isoformat(),
         **_step_fields(step, dosages.element, dose_in_mass)}
        for step in steps
        if step.starts_at > version_at and step is not current
    ]
    if schedule:
        fields["dose_schedule"] = schedule
    if ends_at is not None:
        if ends_at <= version_at:
            raise ConversionRejected(
                f"{dosages.element}: the dosage ended at {ends_at.isoformat()}, before this "
                f"version of an order still {dosages.status} ({occurred_at}); send the order "
                "completed or stopped",
                INVALID_FIELD,
            )
        fields["ends_at"] = ends_at.isoformat()
    return fields


def _placed_steps(
    dosages: Dosages, course_start: datetime
) -> tuple[list[_Step], datetime | None]:
    """The steps in time order and the end of the last one (None when it is open-ended)."""
    ordered = sorted(
        enumerate(dosages.instructions),
        key=lambda item: (item[1].sequence is None, item[1].sequence or 0, item[0]),
    )
    steps: list[_Step] = []
    ends_at: datetime | None = None
    for index, dosage in ordered:
        element = f"{dosages.element}[{index}].timing.repeat"
        if steps and dosage.sequence is not None and dosage.sequence == steps[-1].dosage.sequence:
            sibling = f"{dosages.element.rpartition('.')[2]}[{steps[-1].index}]"
            _check_concurrent_bounds(steps[-1], ends_at, sibling, dosage, element)
            last = steps[-1]
            steps[-1] = _Step(last.starts_at, last.index, last.dosage,
                              (*last.concurrent, (index, dosage)))
            continue
        starts_at = _bounds_start(dosage, element)
        if steps and starts_at is None:
            starts_at = ends_at
            if starts_at is None:
                raise ConversionRejected(
                    f"{element}: a later step of the dosage needs boundsPeriod.start, or the "
                    "step before it a boundsDuration or boundsPeriod.end",
                    MISSING_FIELD,
                )
        if starts_at is None:
            starts_at = course_start
        if steps and starts_at <= steps[-1].starts_at:
            raise ConversionRejected(
                f"{element}: the step starts at {starts_at.isoformat()}, not after the step "
                f"before it ({steps[-1].starts_at.isoformat()})",
                INVALID_FIELD,
            )
        steps.append(_Step(starts_at, index, dosage))
        ends_at = _bounds_end(dosage, starts_at, element)
    return steps, ends_at


def _check_concurrent_bounds(
    step: _Step, step_ends_at: datetime | None, sibling: str, dosage: Dosage, element: str
) -> None:
    """A concurrent instruction without bounds shares its step's; one with bounds of its own must
    start and end with it, since events.v1 gives a step one dose."""
    repeat = dosage.timing.repeat if dosage.timing is not None else None
    if repeat is None or (repeat.boundsPeriod is None and repeat.boundsDuration is None
                          and not repeat.count and not repeat.countMax):
        return
    starts_at = _bounds_start(dosage, element) or step.starts_at
    ends_at = _bounds_end(dosage, starts_at, element)
    if (starts_at, ends_at) != (step.starts_at, step_ends_at):
        raise ConversionRejected(
            f"{element}: given with {sibling} (the same sequence) but "
            "bounded differently; concurrent doses that start or end apart cannot be said in "
            "events.v1 (give them different sequence numbers, one step after the other)",
            INVALID_FIELD,
        )


def _bounds_start(dosage: Dosage, element: str) -> datetime | None:
    repeat = dosage.timing.repeat if dosage.timing is not None else None
    period = repeat.boundsPeriod if repeat is not None else None
    if period is None or period.start is None:
        return None
    return aware_datetime(period.start, f"{element}.boundsPeriod.start")


def _bounds_end(dosage: Dosage, starts_at: datetime, element: str) -> datetime | None:
    repeat = dosage.timing.repeat if dosage.timing is not None else None
    if repeat is None:
        return None
    if repeat.boundsPeriod is not None and repeat.boundsPeriod.end is not None:
        ends_at = aware_datetime(repeat.boundsPeriod.end, f"{element}.boundsPeriod.end")
        if ends_at <= starts_at:
            raise ConversionRejected(
                f"{element}.boundsPeriod.end: {ends_at.isoformat()} is not after the step's "
                f"start ({starts_at.isoformat()})",
                INVALID_FIELD,
            )
        return ends_at
    duration = repeat.boundsDuration
    if duration is None:
        return _end_of_count(dosage, repeat, starts_at, element)
    unit = quantity_unit(duration)
    length = _DURATION_UNITS.get(unit or "")
    if duration.value is None or length is None or duration.value <= 0:
        raise ConversionRejected(
            f"{element}.boundsDuration: {duration.value} {unit!r} is not a positive duration "
            "in s, min, h, d, wk, mo or a",
            INVALID_FIELD,
        )
    return starts_at + length * float(duration.value)


def _end_of_count(
    dosage: Dosage, repeat: TimingRepeat, starts_at: datetime, element: str
) -> datetime | None:
    """A course of so many administrations ("methylprednisolone 1000 mg daily, 3 doses": the
    seed's pulse of 3-5 days) ends after that many intervals; ``countMax``, the most it may be
    given, when there is one. Without a frequency the length is unknown and the course open."""
    count = repeat.countMax or repeat.count
    if not count:
        return None
    frequency = _frequency(dosage, element.removesuffix(".timing.repeat"))
    if frequency is None:
        return None
    return starts_at + timedelta(days=count * days_between_administrations(frequency))


def _step_fields(step: _Step, element: str, dose_in_mass: DoseInMass) -> dict[str, Any]:
    fields = _instruction_fields(f"{element}[{step.index}]", step.dosage, dose_in_mass)
    if step.concurrent:
        given = [fields] + [
            _instruction_fields(f"{element}[{i}]", d, dose_in_mass) for i, d in step.concurrent
        ]
        total = _daily_total(given) or _total_at_one_frequency(given)
        if total is not None:
            return total
    return fields


def _instruction_fields(element: str, dosage: Dosage, dose_in_mass: DoseInMass) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    dose = _dose(dosage, element)
    if dose is not None:
        fields["dose"] = dose_in_mass(dose)
    frequency = _frequency(dosage, element)
    if frequency is not None:
        fields["frequency"] = frequency
    return fields


def _daily_total(given: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Concurrent instructions as one daily amount and the administrations a day, or None when
    that would not be exact (see the module's note)."""
    amount_unit: str | None = None
    per_day_total = 0.0
    administrations: float | None = 0.0  # a day; None: a daily amount did not say how many
    for fields in given:
        dose, frequency = fields.get("dose"), fields.get("frequency")
        if dose is None:
            return None
        times_a_day = None if frequency is None else administrations_a_day(frequency)
        unit = knowledge.per_day_unit(dose["unit"])
        if unit is not None:  # already a daily amount ("mg/d"): the frequency only divides it
            per_day = 1.0
        elif times_a_day is not None:
            unit, per_day = dose["unit"].strip().lower(), times_a_day
        else:
            return None  # how often is unknown
        if times_a_day is not None and times_a_day < 1.0 - 1e-9:
            return None  # less often than daily: a daily amount would make it daily
        if (amount_unit is not None and unit != amount_unit) or not _is_mass(unit):
            return None
        amount_unit = unit
        per_day_total += float(dose["value"]) * per_day
        administrations = (None if administrations is None or times_a_day is None
                           else administrations + times_a_day)
    fields = {"dose": {"value": round(per_day_total, 9), "unit": f"{amount_unit}/d"}}
    frequency = None if administrations is None else daily_frequency(administrations)
    if frequency is not None:
        fields["frequency"] = frequency
    return fields


def _total_at_one_frequency(given: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Concurrent instructions given less often than daily at one frequency (a weekly
    methotrexate dose split into a morning and an evening half) as their summed dose at that
    frequency: the week's amount is what rule 12 judges, and the split is no daily dosing."""
    first = given[0]
    if any("dose" not in fields or "frequency" not in fields for fields in given):
        return None
    unit = first["dose"]["unit"].strip().lower()
    if not _is_mass(unit) or any(
        fields["dose"]["unit"].strip().lower() != unit or fields["frequency"] != first["frequency"]
        for fields in given
    ):
        return None
    total = sum(float(fields["dose"]["value"]) for fields in given)
    return {"dose": {"value": round(total, 9), "unit": first["dose"]["unit"]},
            "frequency": first["frequency"]}


def _is_mass(unit: str) -> bool:
    return (knowledge.mass_in_mg(1.0, unit) is not None
            or knowledge.mass_per_kg_in_mg(1.0, unit) is not None)


def _dose(dosage: Dosage, element: str) -> dict[str, Any] | None:
    dose_and_rate = dosage.doseAndRate[0] if dosage.doseAndRate else None
    quantity = dose_and_rate.doseQuantity if dose_and_rate is not None else None
    if quantity is None:
        return None
    element = f"{element}.doseAndRate[0].doseQuantity"
    if quantity.value is None:
        raise ConversionRejected(f"{element}.value: no number", MISSING_FIELD)
    unit = quantity_unit(quantity)
    if unit is None:
        raise ConversionRejected(f"{element}: no unit (code or unit)", MISSING_FIELD)
    return {"value": float(quantity.value), "unit": unit}


def _frequency(dosage: Dosage, element: str) -> dict[str, Any] | None:
    timing = dosage.timing
    if timing is None:
        return None
    repeat = timing.repeat
    if repeat is not None and repeat.period is not None and repeat.periodUnit:
        mapped = _PERIOD_UNITS.get(repeat.periodUnit)
        if mapped is None:
            raise ConversionRejected(
                f"{element}.timing.repeat.periodUnit: "
                f"{repeat.periodUnit!r} is not a UCUM time unit (s, min, h, d, wk, mo, a)",
                INVALID_FIELD,
            )
        unit, factor = mapped
        times = repeat.frequency if repeat.frequency is not None else 1
        return {"times": times, "period": float(repeat.period) * factor, "unit": unit}
    if repeat is not None and (by_calendar := _calendar_frequency(repeat)) is not None:
        return by_calendar
    for coding in (timing.code.coding or []) if timing.code is not None else []:
        known = _TIMING_CODES.get((coding.code or "").strip().upper())
        if known is not None:
            times, period, unit = known
            return {"times": times, "period": period, "unit": unit}
    return None


def _calendar_frequency(repeat: TimingRepeat) -> dict[str, Any] | None:
    """A frequency said by the calendar instead of a period: days of the week ("methotrexate
    every Monday" is weekly; all seven days is daily) and times of the day (``timeOfDay``
    08:00 and 20:00, or ``when`` MORN and NIGHT, is twice a day)."""
    a_day = len(set(repeat.timeOfDay)) if repeat.timeOfDay else None
    if a_day is None and repeat.when and all(code in _ONE_TIME_OF_DAY for code in repeat.when):
        a_day = len(set(repeat.when))
    if repeat.dayOfWeek:
        days = len(set(repeat.dayOfWeek))
        return {"times": days * (a_day or repeat.frequency or 1), "period": 1.0, "unit": "wk"}
    if a_day is not None:
        return {"times": a_day, "period": 1.0, "unit": "d"}
    return None
