"""A taper written as one FHIR MedicationRequest: one dosageInstruction per step.

The steps become the event's ``dose_schedule`` and the end of the last bounded step its
``ends_at``; the instruction in effect at the version's time gives the event's own dose.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from fhir_samples import (
    UCUM,
    Resource,
    changed,
    imnm_condition,
    methotrexate_order,
    prednisone_order,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imnm_common.contracts.events import MedicationOrderEvent
from imnm_common.service_layer.replay import Replay
from imnm_ingest.domain.conversion import (
    INVALID_EVENT,
    INVALID_FIELD,
    MISSING_FIELD,
    ConversionRejected,
)
from imnm_ingest.domain.fhir import events_from_fhir


def step(sequence: int | None, mg: float, *, days: float | None = None,
         start: str | None = None, end: str | None = None, unit: str = "mg",
         every: tuple[int, float, str] = (1, 1, "d")) -> dict[str, Any]:
    times, period, period_unit = every
    repeat: dict[str, Any] = {"frequency": times, "period": period, "periodUnit": period_unit}
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


def rules_judged(order: Resource, *, days_after: float = 0.0) -> set[str]:
    """The rules that alerted when the IMNM diagnosis and ``order`` are replayed and the clock
    runs on ``days_after`` days past the order."""
    events = sorted([*events_from_fhir(orjson.dumps(imnm_condition())),
                     *events_from_fhir(orjson.dumps(order))], key=lambda e: e.occurred_at)
    replay = Replay()
    rules = {t.rule for e in events for t in replay.feed(e)}
    until = events[-1].occurred_at.timestamp() + days_after * 86400.0
    return rules | {t.rule for t in replay.finish(until)}


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


def test_a_split_dose_is_its_daily_total() -> None:
    """"10 mg in the morning and 5 mg at night" (the same sequence: concurrent) is 15 mg a day,
    given twice; the step after it stays a step."""
    event = order_of(taper(step(1, 10), step(1, 5), step(2, 5, start="2025-02-01T08:00:00Z")))
    assert event.dose is not None and (event.dose.value, event.dose.unit) == (15.0, "mg/d")
    assert event.frequency is not None
    assert (event.frequency.times, event.frequency.period, event.frequency.unit) == (2, 1.0, "d")
    assert schedule(event) == [("2025-02-01T08:00:00+00:00", 5.0)]


def test_concurrent_steps_of_a_taper_are_totalled_step_by_step() -> None:
    # 60 mg once daily for 14 days, then 30 mg twice daily with 10 mg at noon, then 20 + 10 mg
    event = order_of(taper(step(1, 60, days=14),
                           step(2, 30, days=14, every=(2, 1, "d")), step(2, 10, days=14),
                           step(3, 20, days=7), step(3, 10)))
    assert event.dose is not None and (event.dose.value, event.dose.unit) == (60.0, "mg")
    assert [(s.dose.value, s.dose.unit, s.frequency.times) for s in event.dose_schedule or []
            if s.dose and s.frequency] == [(70.0, "mg/d", 3), (30.0, "mg/d", 2)]
    assert event.ends_at is not None and event.ends_at.isoformat() == "2025-02-10T09:00:00+00:00"


@pytest.mark.parametrize(("second", "total", "times"), [
    (step(1, 5, every=(1, 12, "h")), 30.0, 3),  # every 12 hours: twice a day
    (step(1, 5, unit="mg/d"), 25.0, 2),  # already a daily amount, given once a day
    (step(1, 0.005, unit="g"), None, None),  # another unit: not added up
    (step(1, 2, unit="mL"), None, None),  # mL of a tablet's strength: not a mass
    (step(1, 5, every=(1, 1, "wk")), None, None),  # weekly: a daily total would make it daily
    (step(1, 5, every=(1, 36, "h")), None, None),  # every 36 hours: less often than daily
])
def test_a_daily_total_is_said_only_when_it_is_exact(
    second: dict[str, Any], total: float | None, times: int | None
) -> None:
    event = order_of(taper(step(1, 20), second))
    assert event.dose is not None and event.frequency is not None
    if total is None:  # the first instruction, as read before concurrent doses were added up
        assert (event.dose.value, event.dose.unit, event.frequency.times) == (20.0, "mg", 1)
    else:
        assert (event.dose.value, event.dose.unit, event.frequency.times) == (
            total, "mg/d", times)


def test_a_daily_amount_without_a_frequency_leaves_the_administrations_unsaid() -> None:
    per_day = step(1, 5, unit="mg/d")
    del per_day["timing"]
    event = order_of(taper(step(1, 20), per_day))
    assert event.dose is not None and (event.dose.value, event.dose.unit) == (25.0, "mg/d")
    assert event.frequency is None


def test_a_split_weekly_dose_is_its_sum_at_that_frequency() -> None:
    event = order_of(taper(step(1, 7.5, every=(1, 1, "wk")), step(1, 7.5, every=(1, 1, "wk"))))
    assert event.dose is not None and event.frequency is not None
    assert (event.dose.value, event.dose.unit) == (15.0, "mg")
    assert (event.frequency.times, event.frequency.period, event.frequency.unit) == (1, 1.0, "wk")


@pytest.mark.parametrize(("half_mg", "alerts"), [
    (7.5, set()),  # 15 mg a week, split: neither daily nor above the range
    (15.0, {"methotrexate_dose_above_range"}),  # 30 mg a week
])
def test_methotrexate_split_weekly_is_judged_by_the_weeks_amount(
    half_mg: float, alerts: set[str]
) -> None:
    order = methotrexate_order()
    half = order["dosageInstruction"][0]
    half["sequence"] = 1
    half["doseAndRate"][0]["doseQuantity"]["value"] = half_mg
    order["dosageInstruction"] = [half, copy.deepcopy(half)]
    assert {r for r in rules_judged(order) if r.startswith("methotrexate")} == alerts


def test_split_tablets_are_totalled_in_mg_with_the_strength() -> None:
    resource = taper(step(1, 2, unit="TAB"), step(1, 1, unit="TAB"))
    resource["medicationCodeableConcept"]["text"] = "predniSONE 20 MG Oral Tablet"
    event = order_of(resource)
    assert event.dose is not None and (event.dose.value, event.dose.unit) == (60.0, "mg/d")


def test_a_split_weight_based_dose_stays_per_kg() -> None:
    event = order_of(taper(step(1, 0.5, unit="mg/kg"), step(1, 0.5, unit="mg/kg")))
    assert event.dose is not None and (event.dose.value, event.dose.unit) == (1.0, "mg/kg/d")


def test_concurrent_doses_bounded_apart_are_refused() -> None:
    text = reason(taper(step(1, 40, days=14), step(1, 20, days=7)), INVALID_FIELD)
    assert text.startswith("MedicationRequest.dosageInstruction[1].timing.repeat: given with "
                           "dosageInstruction[0] (the same sequence) but bounded differently")


def test_a_concurrent_dose_bounded_as_its_step_is_accepted() -> None:
    event = order_of(taper(step(1, 40, days=14), step(1, 20, days=14), step(2, 30)))
    assert event.dose is not None and event.dose.value == 60
    assert schedule(event) == [("2025-01-20T09:00:00+00:00", 30.0)]


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


def test_the_same_daily_dose_split_in_two_is_no_taper() -> None:
    """60 mg once daily, then 30 mg in the morning and 30 mg at night: the dose did not fall.
    Read by its morning instruction it fell by half in a day, a false "taper too fast"."""
    order = taper(step(1, 60, days=14), step(2, 30, days=14), step(2, 30, days=14),
                  step(3, 50, days=14), step(3, 5, days=14))
    rules = rules_judged(order, days_after=60)
    assert "pjp_prophylaxis_missing" in rules  # judged all along
    assert "taper_too_fast" not in rules


@pytest.mark.parametrize(("repeat", "said"), [
    ({"dayOfWeek": ["mon"]}, (1, 1.0, "wk")),  # "every Monday": weekly
    ({"dayOfWeek": ["mon", "thu"]}, (2, 1.0, "wk")),
    ({"dayOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}, (7, 1.0, "wk")),
    ({"timeOfDay": ["08:00:00", "20:00:00"]}, (2, 1.0, "d")),
    ({"when": ["MORN", "NIGHT"]}, (2, 1.0, "d")),
    ({"dayOfWeek": ["sat"], "timeOfDay": ["08:00:00", "20:00:00"]}, (2, 1.0, "wk")),
    ({"frequency": 1, "period": 1, "periodUnit": "d", "when": ["MORN", "NIGHT"]}, (1, 1.0, "d")),
    ({"when": ["AC"]}, None),  # "before meals": how many is not said
])
def test_a_frequency_said_by_the_calendar(
    repeat: dict[str, Any], said: tuple[int, float, str] | None
) -> None:
    dosage = step(None, 15)
    dosage["timing"]["repeat"] = repeat
    event = order_of(taper(dosage))
    if said is None:
        assert event.frequency is None
    else:
        assert event.frequency is not None
        assert (event.frequency.times, event.frequency.period, event.frequency.unit) == said


@pytest.mark.parametrize(("days", "daily_alert"), [
    (["mon"], False), (["mon", "tue", "wed", "thu", "fri", "sat", "sun"], True)])
def test_methotrexate_every_day_of_the_week_is_daily(days: list[str], daily_alert: bool) -> None:
    order = methotrexate_order()
    order["dosageInstruction"][0]["timing"]["repeat"] = {"dayOfWeek": days}
    assert ("methotrexate_daily_dosing" in rules_judged(order)) is daily_alert


@pytest.mark.parametrize(("repeat", "ends"), [
    ({"frequency": 1, "period": 1, "periodUnit": "d", "count": 3}, "2025-01-09T09:00:00+00:00"),
    ({"frequency": 1, "period": 12, "periodUnit": "h", "count": 6}, "2025-01-09T09:00:00+00:00"),
    ({"frequency": 1, "period": 1, "periodUnit": "d", "count": 3, "countMax": 5},
     "2025-01-11T09:00:00+00:00"),
    ({"dayOfWeek": ["mon"], "count": 4}, "2025-02-03T09:00:00+00:00"),
    ({"count": 3}, None),  # how often is not said: the course stays open
])
def test_a_count_of_administrations_is_a_course_that_ends(
    repeat: dict[str, Any], ends: str | None
) -> None:
    dosage = step(1, 1000)
    dosage["timing"]["repeat"] = repeat
    event = order_of(taper(dosage))
    assert (event.ends_at.isoformat() if event.ends_at else None) == ends


def test_a_counted_step_places_the_next() -> None:
    first = step(1, 60)
    first["timing"]["repeat"]["count"] = 14
    event = order_of(taper(first, step(2, 40)))
    assert schedule(event) == [("2025-01-20T09:00:00+00:00", 40.0)]
    assert event.ends_at is None


def test_a_counted_pulse_ends_and_leaves_no_dose_behind() -> None:
    """Methylprednisolone 1000 mg IV daily, 3 doses (the seed's pulse). Read as open, the
    1,250 mg/day went on for ever and Pneumocystis prophylaxis fell due on day 28."""
    pulse = step(None, 1000)
    pulse["timing"]["repeat"]["count"] = 3
    order = taper(pulse, medicationCodeableConcept={
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6902",
                    "display": "methylprednisolone"}], "text": "methylPREDNISolone"})
    assert "pjp_prophylaxis_missing" not in rules_judged(order, days_after=60)


_EVERY = st.sampled_from([(1, 1, "d"), (2, 1, "d"), (3, 1, "d"), (4, 1, "d"), (1, 12, "h"),
                          (1, 8, "h"), (1, 6, "h"), (1, 24, "h"), (3, 2, "d")])


@given(st.lists(st.tuples(st.integers(1, 400).map(lambda q: q / 4), _EVERY),
                min_size=2, max_size=4))
def test_a_split_dose_given_daily_or_more_often_is_exactly_its_daily_total(
    split: list[tuple[float, tuple[int, float, str]]]
) -> None:
    event = order_of(taper(*(step(1, mg, every=every) for mg, every in split)))
    a_day = [times / (period / 24 if unit == "h" else period) for _, (times, period, unit) in split]
    assert event.dose is not None and event.dose.unit == "mg/d"
    assert event.dose.value == pytest.approx(sum(mg * n for (mg, _), n in zip(split, a_day,
                                                                              strict=True)))
    if abs(sum(a_day) - round(sum(a_day))) < 1e-9:
        assert event.frequency is not None and event.frequency.times == round(sum(a_day))
    else:  # 2.5 administrations a day cannot be a frequency: the daily amount alone is said
        assert event.frequency is None


# mostly valid, so that most draws reach the placing and totalling of the steps
_TIMES = st.sampled_from(["2025-01-01T09:00:00Z", "2025-01-08T09:00:00+00:00",
                          "2025-01-20T09:00:00Z", "2025-03-01T00:00:00Z", "2025-01-06"])
_REPEAT = st.fixed_dictionaries({}, optional={
    "frequency": st.integers(1, 8),
    "period": st.sampled_from([0, 0.5, 1, 1, 12, 36]),
    "periodUnit": st.sampled_from(["h", "d", "d", "d", "wk", "mo", "a", "min", "fortnight"]),
    "dayOfWeek": st.lists(st.sampled_from(["mon", "tue", "sun"]), min_size=1, max_size=4),
    "timeOfDay": st.lists(st.sampled_from(["08:00:00", "20:00:00"]), min_size=1, max_size=3),
    "when": st.lists(st.sampled_from(["MORN", "NIGHT", "AC", "HS"]), min_size=1, max_size=3),
    "count": st.integers(1, 60),
    "countMax": st.integers(1, 60),
    "boundsDuration": st.fixed_dictionaries({
        "value": st.sampled_from([0, 3, 14, 14]),
        "unit": st.just("d"), "system": st.just(UCUM),
        "code": st.sampled_from(["d", "d", "wk", "fortnight"])}),
    "boundsPeriod": st.fixed_dictionaries({}, optional={"start": _TIMES, "end": _TIMES}),
}).map(lambda repeat: {k: v for k, v in repeat.items()  # bounds[x]: one of the two
                       if k != "boundsPeriod" or "boundsDuration" not in repeat})
_INSTRUCTION = st.fixed_dictionaries({
    "timing": st.fixed_dictionaries({"repeat": _REPEAT}),
}, optional={
    "sequence": st.integers(1, 3),
    "doseAndRate": st.sampled_from(["mg", "mg/d", "mg/kg", "mL", "g"]).map(
        lambda unit: [{"doseQuantity": {"value": 5, "unit": unit, "system": UCUM,
                                        "code": unit}}]),
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_INSTRUCTION, min_size=1, max_size=5), st.sampled_from(["active", "stopped"]))
def test_any_dosage_converts_or_is_refused_with_a_reason(
    instructions: list[dict[str, Any]], status: str
) -> None:
    """Steps, splits, calendars and counts in any mix: an order event or a refusal that says
    why, never another error."""
    try:
        event = order_of(taper(*instructions, status=status))
    except ConversionRejected as rejection:
        assert rejection.code in {MISSING_FIELD, INVALID_FIELD, INVALID_EVENT}, rejection
        assert rejection.reason.startswith(("MedicationRequest", "fhir:")), rejection.reason
    else:
        assert event.order_id == "medrx-pred-3001"
        begins = event.starts_at or event.occurred_at
        assert begins >= event.occurred_at
        if event.ends_at is not None:
            assert event.ends_at > begins


# ---------------------------------------------------------------------------------------------
# an order written ahead of its first dose
def test_a_first_step_not_begun_is_the_orders_start() -> None:
    """Authored 2025-01-06T09:00Z to start on the 13th: the dose counts from then."""
    event = order_of(taper(step(1, 40, start="2025-01-13T08:00:00+00:00",
                                end="2025-01-27T08:00:00+00:00"), step(2, 30, days=14)))
    assert event.starts_at is not None
    assert event.starts_at.isoformat() == "2025-01-13T08:00:00+00:00"
    assert event.dose is not None and event.dose.value == 40
    assert schedule(event) == [("2025-01-27T08:00:00+00:00", 30.0)]
    begun = order_of(taper(step(1, 40, start="2025-01-06T09:00:00+00:00")))
    assert begun.starts_at is None
    stopped = order_of(taper(step(1, 40, start="2025-01-13T08:00:00+00:00"), status="stopped"))
    assert stopped.starts_at is None


def test_written_ahead_the_prophylaxis_falls_due_28_days_after_the_start() -> None:
    ahead = taper(step(1, 40, start="2025-01-13T08:00:00+00:00"))
    assert "pjp_prophylaxis_missing" not in rules_judged(ahead, days_after=30)
    assert "pjp_prophylaxis_missing" in rules_judged(ahead, days_after=36)


def test_a_step_ending_before_it_starts_is_refused() -> None:
    assert reason(taper(step(1, 40, start="2025-01-13T08:00:00+00:00",
                             end="2025-01-10T08:00:00+00:00")), INVALID_FIELD) == (
        "MedicationRequest.dosageInstruction[0].timing.repeat.boundsPeriod.end: "
        "2025-01-10T08:00:00+00:00 is not after the step's start (2025-01-13T08:00:00+00:00)"
    )
