"""Prednisone-equivalent dose math, pulses, course peak and treatment phase (picture.py)."""

from __future__ import annotations

import pytest
from domain_chart import Chart, Event, drive, ts

from imnm_common.domain.config import DEFAULT_RULES_CONFIG
from imnm_common.domain.picture import ClinicalPicture
from imnm_common.domain.state import PatientState, TaperPhase


def picture_at(events: list[Event], day: float) -> ClinicalPicture:
    state, _ = drive(events, day)
    return ClinicalPicture(state, ts(day), DEFAULT_RULES_CONFIG.pulse_threshold_mg_per_day)


def dose_of(events: list[Event], day: float) -> float:
    return picture_at(events, day).prednisone_equivalent_mg_per_day


def one_order(name: str | None, dose: float | None, unit: str = "mg", times: int = 1,
              period: float = 1, per: str | None = "d", route: str | None = None,
              rxnorm: str | None = None) -> list[Event]:
    c = Chart()
    c.rx("o1", 0, name, dose=dose, unit=unit, times=times, period=period, per=per, route=route,
         rxnorm=rxnorm)
    return c.events


# --------------------------------------------------------------------------------------------
# conversion
@pytest.mark.parametrize(
    ("name", "dose", "expected"),
    [
        ("prednisone", 60, 60.0),
        ("prednisolone", 40, 40.0),
        ("methylprednisolone", 16, 20.0),
        ("methylprednisolone", 48, 60.0),
        ("dexamethasone", 3, 20.0),
        ("dexamethasone", 6, 40.0),
        ("hydrocortisone", 80, 20.0),
        ("hydrocortisone", 20, 5.0),
        ("deflazacort", 24, 20.0),
        ("deflazacort", 6, 5.0),
    ],
)
def test_prednisone_equivalent_per_glucocorticoid(name: str, dose: float, expected: float
                                                  ) -> None:
    assert dose_of(one_order(name, dose), 1) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("dose", "unit", "times", "period", "per", "expected"),
    [
        (20, "mg", 1, 1, "d", 20.0),
        (10, "mg", 2, 1, "d", 20.0),          # twice daily
        (10, "mg", 1, 12, "h", 20.0),         # every 12 hours
        (5, "mg", 1, 6, "h", 20.0),           # every 6 hours
        (5, "mg", 1, 8, "h", 15.0),           # every 8 hours
        (40, "mg", 1, 2, "d", 20.0),          # alternate days
        (140, "mg", 1, 1, "wk", 20.0),        # weekly
        (70, "mg", 2, 1, "wk", 20.0),         # twice weekly
        (600, "mg", 1, 1, "mo", 20.0),        # monthly = 30 days
        (1, "g", 1, 1, "d", 1000.0),          # grams
        (20000, "mcg", 1, 1, "d", 20.0),      # micrograms
        (20, "mg", 1, 1, None, 20.0),         # no frequency: once daily
    ],
)
def test_daily_dose_from_frequency(dose: float, unit: str, times: int, period: float,
                                   per: str | None, expected: float) -> None:
    events = one_order("prednisone", dose, unit, times, period, per)
    assert dose_of(events, 1) == pytest.approx(expected, rel=1e-9)


def test_frequency_and_factor_combine() -> None:
    # methylprednisolone 8 mg twice daily = 16 mg/day = 20 mg prednisone
    events = one_order("methylprednisolone", 8, times=2)
    assert dose_of(events, 1) == pytest.approx(20.0)
    # hydrocortisone 20 mg every 8 hours = 60 mg/day = 15 mg prednisone
    assert dose_of(one_order("hydrocortisone", 20, period=8, per="h"), 1) == pytest.approx(15.0)


def test_identified_by_rxcui_only() -> None:
    assert dose_of(one_order(None, 8, rxnorm="3264"), 1) == pytest.approx(8 * 5 / 0.75)


@pytest.mark.parametrize(("dose", "unit"), [(2, "tablet"), (5, "mL"), (None, "mg")])
def test_dose_that_is_not_a_mass_contributes_no_mg(dose: float | None, unit: str) -> None:
    assert dose_of(one_order("prednisone", dose, unit), 1) == 0.0


def test_several_glucocorticoid_orders_add_up() -> None:
    c = Chart()
    c.pred("a", 0, 10)
    c.rx("b", 0, "hydrocortisone", dose=20, times=2)  # 40 mg = 10 prednisone
    c.rx("c", 2, "dexamethasone", dose=0.75)  # 5 prednisone
    assert dose_of(c.events, 1) == pytest.approx(20.0)
    assert dose_of(c.events, 3) == pytest.approx(25.0)
    c.stop("a", 4)
    assert dose_of(c.events, 5) == pytest.approx(15.0)


@pytest.mark.parametrize(
    ("status", "counts"),
    [("active", True), ("on-hold", True), ("stopped", False), ("completed", False),
     ("cancelled", False), ("entered-in-error", False), ("draft", False), ("unknown", False)],
)
def test_order_in_force_only_while_active_or_on_hold(status: str, counts: bool) -> None:
    c = Chart()
    c.pred("a", 0, 30)
    c.pred("a", 1, 30, status=status)
    assert dose_of(c.events, 2) == (30.0 if counts else 0.0)


def test_topical_glucocorticoid_has_no_systemic_dose() -> None:
    assert dose_of(one_order("hydrocortisone", 100, route="topical"), 1) == 0.0
    assert dose_of(one_order("hydrocortisone 1% cream", 100), 1) == 0.0


def test_dose_before_order_and_after_stop() -> None:
    c = Chart()
    c.pred("a", 5, 40)
    c.stop("a", 10)
    assert dose_of(c.events, 4.99) == 0.0
    assert dose_of(c.events, 5) == 40.0
    assert dose_of(c.events, 9.99) == 40.0
    assert dose_of(c.events, 10) == 0.0


# --------------------------------------------------------------------------------------------
# phases, course peak, pulses
def phase_of(events: list[Event], day: float) -> TaperPhase:
    return picture_at(events, day).phase


def test_untreated_without_any_therapy() -> None:
    c = Chart()
    c.dx(0)
    c.rx("x", 0, "omeprazole", dose=20)
    p = picture_at(c.events, 10)
    assert p.phase is TaperPhase.UNTREATED
    assert p.treatment_started_at is None


def test_induction_taper_and_peak() -> None:
    c = Chart()
    c.pred("a", 0, 40)
    c.pred("a", 10, 60)  # escalation: new peak
    c.pred("a", 40, 50)  # taper
    c.pred("a", 70, 40)
    assert phase_of(c.events, 5) is TaperPhase.INDUCTION
    p = picture_at(c.events, 20)
    assert (p.phase, p.course_peak_mg_per_day, p.taper_started_at) == (
        TaperPhase.INDUCTION, 60.0, None)
    p = picture_at(c.events, 80)
    assert (p.phase, p.course_peak_mg_per_day) == (TaperPhase.TAPER, 60.0)
    assert p.taper_started_at == ts(40)
    assert p.treatment_started_at == ts(0)


def test_raise_back_to_peak_is_induction_again() -> None:
    c = Chart()
    c.pred("a", 0, 60)
    c.pred("a", 30, 40)
    c.pred("a", 40, 60)
    assert phase_of(c.events, 35) is TaperPhase.TAPER
    p = picture_at(c.events, 45)
    assert p.phase is TaperPhase.INDUCTION
    assert p.taper_started_at is None


def test_pulse_counts_as_exposure_but_never_sets_the_peak() -> None:
    c = Chart()
    c.rx("pulse", 0, "methylprednisolone", dose=1000, route="intravenous")  # 1250 pred-eq
    c.stop("pulse", 3, "methylprednisolone")
    c.pred("a", 3, 60)
    c.pred("a", 40, 50)
    p = picture_at(c.events, 1)
    assert p.prednisone_equivalent_mg_per_day == pytest.approx(1250.0)
    assert p.phase is TaperPhase.INDUCTION
    assert p.course_peak_mg_per_day is None
    assert p.treatment_started_at == ts(0)
    p = picture_at(c.events, 10)
    assert (p.phase, p.course_peak_mg_per_day) == (TaperPhase.INDUCTION, 60.0)
    p = picture_at(c.events, 41)
    assert (p.phase, p.course_peak_mg_per_day, p.taper_started_at) == (
        TaperPhase.TAPER, 60.0, ts(40))


def test_pulse_threshold_boundary() -> None:
    # exactly 250 mg/day is a pulse (does not set the peak); 249 is not
    for mg, peak in ((250, None), (249, 249.0)):
        c = Chart()
        c.pred("a", 0, mg)
        assert picture_at(c.events, 1).course_peak_mg_per_day == peak


def test_pulse_in_the_middle_of_a_taper_keeps_the_peak() -> None:
    c = Chart()
    c.pred("a", 0, 40)
    c.pred("a", 30, 30)
    c.rx("pulse", 35, "methylprednisolone", dose=500)  # 625 + 30
    c.stop("pulse", 38, "methylprednisolone")
    p = picture_at(c.events, 36)
    assert p.phase is TaperPhase.INDUCTION
    assert p.course_peak_mg_per_day == 40.0
    p = picture_at(c.events, 39)
    assert (p.phase, p.course_peak_mg_per_day) == (TaperPhase.TAPER, 40.0)


def test_same_instant_replacement_is_one_step() -> None:
    c = Chart()
    c.pred("a", 0, 60)
    c.stop("a", 30)
    c.pred("b", 30, 50)
    p = picture_at(c.events, 31)
    assert p.steps == [(ts(0), 60.0), (ts(30), 50.0)]
    assert (p.phase, p.taper_started_at) == (TaperPhase.TAPER, ts(30))


def test_maintenance_on_steroid_sparing_agent_only() -> None:
    c = Chart()
    c.rx("mtx", 0, "methotrexate", dose=20, period=1, per="wk")
    p = picture_at(c.events, 10)
    assert p.phase is TaperPhase.MAINTENANCE
    assert p.treatment_started_at == ts(0)


def test_stopping_glucocorticoid_keeps_the_phase_for_24_hours_then_maintenance() -> None:
    c = Chart()
    c.rx("mtx", 0, "methotrexate", dose=20, period=1, per="wk")
    c.pred("a", 0, 40)
    c.pred("a", 30, 10)
    c.stop("a", 60)
    assert phase_of(c.events, 59) is TaperPhase.TAPER
    assert phase_of(c.events, 60.5) is TaperPhase.TAPER  # a missed dose is not a new phase
    assert phase_of(c.events, 61) is TaperPhase.MAINTENANCE
    assert picture_at(c.events, 61).treatment_started_at == ts(0)


def test_stopping_everything_is_untreated_after_24_hours() -> None:
    c = Chart()
    c.pred("a", 0, 40)
    c.stop("a", 10)
    assert phase_of(c.events, 10.5) is TaperPhase.INDUCTION
    assert phase_of(c.events, 11) is TaperPhase.UNTREATED


def test_short_gap_bridges_one_course() -> None:
    c = Chart()
    c.pred("a", 0, 60)
    c.stop("a", 10)
    c.pred("a", 10.5, 60)  # restarted within 24 h
    c.pred("a", 20, 40)
    p = picture_at(c.events, 21)
    assert p.course_start == ts(0)
    assert (p.phase, p.course_peak_mg_per_day) == (TaperPhase.TAPER, 60.0)


def test_long_gap_starts_a_new_course_with_its_own_peak() -> None:
    c = Chart()
    c.pred("a", 0, 60)
    c.stop("a", 10)
    c.pred("a", 12, 30)  # a new course: 30 is its peak, so this is induction
    p = picture_at(c.events, 13)
    assert p.course_start == ts(12)
    assert (p.phase, p.course_peak_mg_per_day) == (TaperPhase.INDUCTION, 30.0)


def test_glucocorticoid_without_a_mass_dose_is_still_treatment() -> None:
    c = Chart()
    c.rx("a", 0, "prednisone 5 mg tablet", dose=4, unit="tablet")
    p = picture_at(c.events, 10)
    assert p.prednisone_equivalent_mg_per_day == 0.0
    assert p.phase is not TaperPhase.UNTREATED
    assert p.treatment_started_at == ts(0)


@pytest.mark.parametrize(
    ("name", "window_days"), [("IVIG 2 g/kg", 56), ("rituximab 1000 mg", 183)],
)
def test_long_acting_agents_count_after_last_dose(name: str, window_days: int) -> None:
    c = Chart()
    c.rx("x", 0, name, dose=1000)
    c.rx("x", 2, name, dose=1000, status="completed")
    c.rx("x", 3, name, dose=1000, status="stopped")
    # counts for the window after the *last* active or completed version (day 2)
    assert phase_of(c.events, 2 + window_days - 0.01) is TaperPhase.MAINTENANCE
    assert phase_of(c.events, 2 + window_days) is TaperPhase.UNTREATED


def test_other_steroid_sparing_agents_count_only_while_in_force() -> None:
    c = Chart()
    c.rx("x", 0, "azathioprine", dose=150)
    c.rx("x", 30, "azathioprine", dose=150, status="completed")
    assert phase_of(c.events, 29) is TaperPhase.MAINTENANCE
    assert phase_of(c.events, 30) is TaperPhase.UNTREATED


def test_entered_in_error_long_acting_order_never_counted() -> None:
    c = Chart()
    c.rx("x", 0, "IVIG", dose=1000)
    c.rx("x", 1, "IVIG", dose=1000, status="entered-in-error")
    # as known at the time it counted; once retracted, its 56-day window is gone too
    assert phase_of(c.events, 0.5) is TaperPhase.MAINTENANCE
    assert phase_of(c.events, 1) is TaperPhase.UNTREATED
    assert phase_of(c.events, 10) is TaperPhase.UNTREATED


def test_on_hold_steroid_sparing_agent_counts() -> None:
    c = Chart()
    c.rx("x", 0, "mycophenolate mofetil", dose=1000, times=2)
    c.rx("x", 10, "mycophenolate mofetil", dose=1000, times=2, status="on-hold")
    assert phase_of(c.events, 20) is TaperPhase.MAINTENANCE


def test_empty_state_picture() -> None:
    p = ClinicalPicture(PatientState("x"), ts(0), 250.0)
    assert p.steps == []
    assert p.prednisone_equivalent_mg_per_day == 0.0
    assert p.phase is TaperPhase.UNTREATED
    assert p.course_peak_mg_per_day is None
