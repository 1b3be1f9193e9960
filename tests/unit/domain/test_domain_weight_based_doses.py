"""Weight-based glucocorticoid doses ("prednisone 1 mg/kg/day", the source document's induction
dose) count as the mg/day they are at the patient's body weight.

The weight a version is converted with is the latest body weight at or before the version's
time, else the first one after it; a weight that arrives, is corrected or is entered in error
converts the versions again. Without a weight the dose is of unknown size (exposure without a
dose, as a dose in tablets).
"""

from __future__ import annotations

import random

import pytest
from domain_chart import (
    BODY_WEIGHT_LOINC,
    Chart,
    drive,
    judge_everything,
    opened,
    replay,
    rows,
    ts,
)

from imnm_common.contracts.events import EventRejected, parse_event, parse_event_object
from imnm_common.domain import engine, knowledge
from imnm_common.domain.config import RulesConfig
from imnm_demo.generator import (
    StreamSpec,
    delivered_out_of_order,
    generate_lines,
    with_weight_based_doses,
)

PJP = "pjp_prophylaxis_missing"
MISSING = "body_weight_missing"


def _weighed_course(weight_kg: float | None, mg_per_kg: float = 1.0) -> Chart:
    chart = Chart()
    chart.dx(0)
    if weight_kg is not None:
        chart.weight(0, weight_kg)
    chart.rx("pred", 0, "prednisone", dose=mg_per_kg, unit="mg/kg")
    return chart


def test_a_weight_based_dose_is_the_mg_per_day_at_the_patients_weight() -> None:
    chart = _weighed_course(70)
    state, transitions = drive(chart.events, 40)
    assert state.orders["pred"].versions[0].prednisone_equivalent_mg_per_day == 70.0
    [alert] = opened(transitions, PJP)
    assert rows([alert]) == [(PJP, "open", 28.0, None)]
    assert alert.detail.startswith("Glucocorticoid 70 mg/day prednisone-equivalent now")
    assert "converted with the body weight of 70 kg on 2025-01-01" in alert.detail
    weight_event = chart.events[1]["event_id"]
    assert weight_event in alert.evidence


def test_without_a_weight_the_dose_is_unknown_and_no_dose_rule_fires() -> None:
    state, transitions = drive(_weighed_course(None).events, 60)
    assert state.orders["pred"].versions[0].prednisone_equivalent_mg_per_day is None
    assert opened(transitions, PJP) == []
    # still treated: the monitoring rules judge the patient as in induction
    assert opened(transitions, "ck_monitoring_overdue")
    # and the missing weight is said, a day after the order
    assert rows(transitions, MISSING) == [(MISSING, "open", 1.0, None)]


# ---------------------------------------------------------------------------------------------
# rule 13: body_weight_missing
def test_a_missing_weight_is_raised_after_a_day_and_resolved_by_a_weight() -> None:
    chart = _weighed_course(None)
    assert drive(chart.events, 0.99)[1] == []
    chart.weight(5, 70)
    _, transitions = drive(chart.events, 40)
    assert rows(transitions, MISSING) == [(MISSING, "open", 1.0, None),
                                          (MISSING, "resolved", 1.0, 5.0)]
    alert = opened(transitions, MISSING)[0]
    assert alert.severity == "warning"
    assert alert.summary == "Weight-based glucocorticoid dose without a body weight"
    assert alert.detail.startswith(
        "Glucocorticoid ordered per kg of body weight (order pred, 1 mg/kg/day "
        "prednisone-equivalent since 2025-01-01) and no body weight result is on record")
    assert alert.evidence == [chart.events[1]["event_id"]]
    assert rows(transitions, PJP) == [(PJP, "open", 28.0, None)]  # converted from day 0


def test_no_missing_weight_for_mass_doses_short_orders_or_a_weight_on_record() -> None:
    mass = Chart()
    mass.dx(0)
    mass.pred("pred", 0, 60)
    short = _weighed_course(None)
    short.stop("pred", 0.5)
    weighed_later = _weighed_course(None)
    weighed_later.weight(0.5, 70)
    for chart in (mass, short, weighed_later):
        assert rows(drive(chart.events, 40)[1], MISSING) == []


def test_a_withdrawn_weight_is_missing_from_the_day_after_the_order() -> None:
    chart = _weighed_course(None)
    chart.weight(0, 70, result_id="w1")
    chart.lab(BODY_WEIGHT_LOINC, 10, status="entered-in-error", result_id="w1")
    chart.weight(12, 72)
    _, transitions = drive(chart.events, 40)
    # nothing is missing while the weight stands
    assert rows(drive(chart.events[:-2], 9.9)[1], MISSING) == []
    # it was never weighed after all: missing since the day after the order (dated then, as
    # every rule dates a condition learnt late), first said on day 10 when the weight went
    assert rows(transitions, MISSING) == [(MISSING, "open", 1.0, None),
                                          (MISSING, "resolved", 1.0, 12.0)]


def test_the_grace_is_configurable_and_the_rule_can_be_off() -> None:
    chart = _weighed_course(None)
    hours = RulesConfig().model_copy(update={
        "body_weight_missing": RulesConfig().body_weight_missing.model_copy(
            update={"grace_hours": 6.0})})
    assert rows(drive(chart.events, 3, hours)[1], MISSING) == [(MISSING, "open", 0.25, None)]
    off = RulesConfig().model_copy(update={
        "body_weight_missing": RulesConfig().body_weight_missing.model_copy(
            update={"enabled": False})})
    assert rows(drive(chart.events, 3, off)[1], MISSING) == []


@pytest.mark.parametrize(("weight_kg", "fires"), [(60, False), (70, True)])
def test_the_twenty_mg_threshold_follows_the_weight(weight_kg: float, fires: bool) -> None:
    # 0.3 mg/kg: 18 mg/day at 60 kg, 21 mg/day at 70 kg
    _, transitions = drive(_weighed_course(weight_kg, mg_per_kg=0.3).events, 60)
    assert bool(opened(transitions, PJP)) is fires


def test_a_weight_measured_after_the_order_converts_it_from_the_order_on() -> None:
    chart = _weighed_course(None)
    chart.weight(10, 70)  # weighed on day 10: the best estimate of the weight on day 0
    _, transitions = drive(chart.events, 40)
    assert rows(transitions, PJP) == [(PJP, "open", 28.0, None)]


def test_a_new_weight_converts_later_versions_and_leaves_earlier_ones() -> None:
    chart = Chart()
    chart.dx(0)
    chart.weight(0, 80)
    chart.rx("pred", 0, "prednisone", dose=1, unit="mg/kg")
    chart.weight(20, 50)
    chart.rx("pred", 30, "prednisone", dose=0.5, unit="mg/kg")
    state, transitions = drive(chart.events, 40)
    doses = [v.prednisone_equivalent_mg_per_day for v in state.orders["pred"].versions]
    assert doses == [80.0, 25.0]
    [taper] = opened(transitions, "taper_too_fast")
    assert taper.summary == "Glucocorticoid taper too fast: 80 to 25 mg/day"
    assert "body weight of 50 kg on 2025-01-21" in taper.detail


def test_a_weight_entered_in_error_takes_its_conversion_back() -> None:
    chart = Chart()
    chart.dx(0)
    chart.weight(0, 70, result_id="w1")
    chart.rx("pred", 0, "prednisone", dose=1, unit="mg/kg")
    chart.lab(BODY_WEIGHT_LOINC, 30, status="entered-in-error", result_id="w1")
    state, transitions = drive(chart.events, 60)
    assert state.body_weights == []
    assert state.orders["pred"].versions[0].prednisone_equivalent_mg_per_day is None
    # open from day 28, resolved when the weight it was computed with was withdrawn
    assert rows(transitions, PJP) == [(PJP, "open", 28.0, None), (PJP, "resolved", 28.0, 30.0)]


def test_a_corrected_weight_replaces_the_first() -> None:
    chart = _weighed_course(None)
    chart.weight(0, 700 / 10, result_id="w1", unit="kg")
    chart.weight(0.5, 154.3, result_id="w1", status="corrected", unit="[lb_av]")
    state, _ = drive(chart.events, 1)
    [weight] = state.body_weights
    assert weight.value == pytest.approx(69.99, abs=0.01)
    assert state.orders["pred"].versions[0].prednisone_equivalent_mg_per_day == weight.value


def test_old_weights_leave_but_the_weight_before_the_recent_ones_stays() -> None:
    chart = Chart()
    for day in range(0, 400):  # an inpatient weighed every day
        chart.weight(day, 60 + day / 100)
    state, _ = drive(chart.events, 400)
    kept = [w.at for w in state.body_weights]
    horizon = ts(399) - engine.RECENT_WEIGHT_DAYS * 86_400
    assert kept[0] <= horizon < kept[1]  # the weight at the horizon is still known
    assert len(kept) == 31


def test_the_weight_an_order_in_force_was_converted_with_stays_however_old() -> None:
    chart = Chart()
    chart.dx(0)
    chart.weight(0, 80)
    chart.rx("pred", 0, "prednisone", dose=0.25, unit="mg/kg")  # 20 mg/day, for good
    for day in range(30, 400, 30):
        chart.weight(day, 60)
    state, transitions = drive(chart.events, 400)
    assert state.body_weights[0].value == 80.0  # beyond the history, still the order's weight
    assert state.orders["pred"].versions[0].prednisone_equivalent_mg_per_day == 20.0
    assert rows(transitions, PJP) == [(PJP, "open", 28.0, None)]  # never resolved at 15 mg


def test_units_and_implausible_weights_are_refused_with_a_reason() -> None:
    chart = Chart()
    cases = {
        "unit: a body weight needs a mass unit (kg, g or [lb_av]), not None": dict(unit=None),
        "unit: a body weight needs a mass unit (kg, g or [lb_av]), not 'cm'": dict(unit="cm"),
        "value: a body weight of 800 kg is implausible (0 to 700 kg)": dict(value=800),
        "value: a body weight of 0 kg is implausible (0 to 700 kg)": dict(value=0),
        "comparator: a body weight is a measurement, not a bound": dict(comparator=">"),
    }
    for reason, change in cases.items():
        event = chart.weight(1, 70)
        event.update(change)
        if event["unit"] is None:
            del event["unit"]
        with pytest.raises(EventRejected) as rejected:
            parse_event_object(event)
        assert rejected.value.reason == reason
    assert parse_event_object(chart.weight(1, 70_000, unit="g")).value == 70_000
    # withdrawing a weight needs no unit: its value never was
    withdrawn = chart.lab(BODY_WEIGHT_LOINC, 2, 70, status="entered-in-error", result_id="w")
    assert parse_event_object(withdrawn).status == "entered-in-error"


def test_weight_based_units() -> None:
    assert knowledge.mass_per_kg_in_mg(1, "mg/kg") == 1.0
    assert knowledge.mass_per_kg_in_mg(2, "g/kg") == 2000.0
    assert knowledge.mass_per_kg_in_mg(500, " MCG/KG ") == 0.5
    for unit in ("mg", "mg/kg/d", "mg/m2", "tablet/kg", "/kg"):
        assert knowledge.mass_per_kg_in_mg(1, unit) is None


@pytest.mark.parametrize(
    ("unit", "amount_unit"),
    [("mg/kg/d", "mg/kg"), ("MG/KG/DAY", "mg/kg"), ("mg/d", "mg"), ("g/(24.h)", "g"),
     ("mg/kg", None), ("mg", None), ("mg/h", None), ("/d", None), ("mg/wk", None)],
)
def test_daily_amount_units(unit: str, amount_unit: str | None) -> None:
    assert knowledge.per_day_unit(unit) == amount_unit


@pytest.mark.parametrize(
    ("dose", "unit", "times", "mg_per_day"),
    [
        # "1 mg/kg/day" divided twice a day is 70 mg a day at 70 kg, not 140
        (1, "mg/kg/d", 2, 70.0),
        (1, "mg/kg/day", 1, 70.0),
        (60, "mg/d", 3, 60.0),
        (1, "mg/kg", 2, 140.0),  # per administration: twice a day is twice the dose
    ],
)
def test_a_daily_amount_is_not_multiplied_by_the_frequency(
    dose: float, unit: str, times: int, mg_per_day: float
) -> None:
    chart = Chart()
    chart.dx(0)
    chart.weight(0, 70)
    chart.rx("pred", 0, "prednisone", dose=dose, unit=unit, times=times)
    state, _ = drive(chart.events, 2)
    assert state.orders["pred"].versions[0].prednisone_equivalent_mg_per_day == mg_per_day


def test_an_unweighed_daily_amount_per_kg_is_a_missing_weight() -> None:
    chart = Chart()
    chart.dx(0)
    chart.rx("pred", 0, "prednisone", dose=1, unit="mg/kg/d", times=2)
    state, transitions = drive(chart.events, 40)
    assert state.orders["pred"].versions[0].mg_per_kg_per_day == 1.0
    assert opened(transitions, PJP) == []
    assert rows(transitions, MISSING) == [(MISSING, "open", 1.0, None)]


# ---------------------------------------------------------------------------------------------
# generated years with weights and weight-based doses
def _transitions(lines: list[str], roundtrip: bool = False) -> list[str]:
    events = [parse_event(line) for line in lines]
    # day 744 after T0 is 1_800_000_000 (2027-01-15), after every generated year
    return [t.model_dump_json() for t in replay(events, 744, roundtrip_state=roundtrip)]


@pytest.mark.parametrize("seed", [31, 32])
@pytest.mark.parametrize("shuffle", [False, True])
def test_years_with_weights_judge_selectively_and_restored_as_judged_in_memory(
    seed: int, shuffle: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = with_weight_based_doses(list(generate_lines(StreamSpec(patients=40, seed=seed))),
                                    random.Random(seed), unweighed_fraction=0.2)
    if shuffle:
        lines = delivered_out_of_order(lines, random.Random(seed))
    selective = _transitions(lines)
    assert sum("converted with the body weight" in t for t in selective) > 5
    assert sum('"rule":"body_weight_missing"' in t for t in selective) > 1
    assert _transitions(lines, roundtrip=True) == selective
    monkeypatch.setattr(engine, "_evaluate", judge_everything)
    assert _transitions(lines) == selective


def test_the_replay_helper_agrees_with_the_engine_verbs() -> None:
    chart = _weighed_course(None)
    chart.weight(10, 70)
    assert rows(replay(chart.events, 40), PJP) == rows(drive(chart.events, 40)[1], PJP)
