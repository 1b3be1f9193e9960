"""Rules 8-9: taper_too_fast and taper_relapse_risk."""

from __future__ import annotations

import pytest
from domain_chart import Chart, only_rules, rows, tapering

from imnm_common.domain.config import TaperRelapseRiskConfig, TaperTooFastConfig

FAST = "taper_too_fast"
RELAPSE = "taper_relapse_risk"
FAST_ONLY = only_rules(FAST)
RELAPSE_ONLY = only_rules(RELAPSE)


# --------------------------------------------------------------------------------------------
# 8. taper_too_fast
@pytest.mark.parametrize(
    ("before", "after", "alerts"),
    [
        (60, 48, False),     # exactly 20 %
        (60, 47.5, True),    # 20.8 %
        (40, 32, False),     # exactly 20 %
        (40, 31, True),
        (15, 12, False),     # exactly 20 %, 3 mg
        (15, 11.5, True),    # 23 %, 3.5 mg
        (10, 7.5, False),    # 25 % but exactly 2.5 mg
        (10, 7, True),       # 30 %, 3 mg
        (12.5, 10, False),   # 20 %, 2.5 mg
        (5, 2.5, False),     # 50 % but only 2.5 mg
        (5, 2, True),        # 60 %, 3 mg
        (60, 20, True),
        (60, 0, False),      # stopping is not a taper step
        (30, 40, False),     # an increase
    ],
)
def test_taper_boundaries(chart: Chart, before: float, after: float, alerts: bool) -> None:
    chart.dx(0)
    chart.pred("p", 0, before)
    if after:
        chart.pred("p", 30, after)
    else:
        chart.stop("p", 30)
    transitions = chart.run(31, FAST_ONLY)
    if alerts:
        assert rows(transitions) == [(FAST, "open", 30.0, None)]
        assert transitions[0].summary == (
            f"Glucocorticoid taper too fast: {before:g} to {after:g} mg/day")
    else:
        assert transitions == []


def test_taper_too_fast_content(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    step = chart.pred("p", 30, 40)
    [t] = chart.run(31, FAST_ONLY)
    assert t.severity == "warning"
    assert t.detail == (
        "Prednisone-equivalent dose reduced to 40 mg/day on 2025-01-31, 33% (20 mg) below "
        "60 mg/day, the highest non-pulse dose of the previous 28 days (from 2025-01-01). "
        "Recommended: reduce by 10-20% every 4 weeks; relapse is common during tapering."
    )
    assert t.evidence == [step["event_id"]]
    assert t.suggestions[0] == "Confirm the intended dose; a 20% step from 60 mg/day is 48 mg/day"


def test_reference_is_the_highest_dose_of_the_previous_28_days(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    chart.pred("p", 20, 50)  # 17 %: fine
    chart.pred("p", 30, 45)  # 25 % below 60, which was in force until day 20 (in the window)
    chart.pred("p", 60, 40)  # 11 % below 45: fine
    assert rows(chart.run(70, FAST_ONLY)) == [
        (FAST, "open", 30.0, None),
        (FAST, "resolved", 30.0, 48.0),  # 60 mg/day left the 28-day window
    ]


def test_a_dose_older_than_the_window_is_not_the_reference(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    chart.pred("p", 20, 50)
    chart.pred("p", 48.01, 40)  # 60 ended on day 20, more than 28 days ago: 20 % below 50
    assert chart.run(60, FAST_ONLY) == []


def test_raising_the_dose_resolves(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    chart.pred("p", 30, 40)
    chart.pred("p", 35, 55)
    assert rows(chart.run(40, FAST_ONLY)) == [
        (FAST, "open", 30.0, None),
        (FAST, "resolved", 30.0, 35.0),
    ]


def test_stopping_after_a_fast_step_resolves(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    chart.pred("p", 30, 40)
    chart.stop("p", 33)
    assert rows(chart.run(40, FAST_ONLY)) == [
        (FAST, "open", 30.0, None),
        (FAST, "resolved", 30.0, 33.0),
    ]


def test_pulses_are_not_the_reference(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("mp", 0, "methylprednisolone", dose=1000)  # 1250 mg/day pred-eq
    chart.stop("mp", 3, "methylprednisolone")
    chart.pred("p", 3, 60)
    chart.pred("p", 10, 48)  # 20 % below 60
    assert chart.run(20, FAST_ONLY) == []


def test_pulse_on_top_of_a_taper_then_back(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 40)
    chart.rx("mp", 10, "methylprednisolone", dose=500)
    chart.stop("mp", 13, "methylprednisolone")
    assert chart.run(20, FAST_ONLY) == []


@pytest.mark.parametrize("order", ["stop-then-new", "new-then-stop"])
def test_same_instant_replacement_is_one_step(chart: Chart, order: str) -> None:
    chart.dx(0)
    chart.pred("a", 0, 60)
    if order == "stop-then-new":
        chart.stop("a", 30)
        chart.pred("b", 30, 48)
    else:
        chart.pred("b", 30, 48)
        chart.stop("a", 30)
    assert chart.run(60, FAST_ONLY) == []
    # and no churn in any other rule either: only the expected, time-driven alerts
    everything = chart.run(60)
    assert all(t.status == "open" for t in everything)
    assert len({t.rule for t in everything}) == len(everything)


@pytest.mark.parametrize("order", ["stop-then-new", "new-then-stop"])
def test_same_instant_replacement_too_fast_alerts_once(chart: Chart, order: str) -> None:
    chart.dx(0)
    chart.pred("a", 0, 60)
    if order == "stop-then-new":
        chart.stop("a", 30)
        chart.pred("b", 30, 40)
    else:
        chart.pred("b", 30, 40)
        chart.stop("a", 30)
    assert rows(chart.run(40, FAST_ONLY)) == [(FAST, "open", 30.0, None)]


def test_stopping_one_of_two_orders_is_a_step(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("a", 0, 40)
    chart.pred("b", 0, 20)
    chart.stop("b", 30)
    assert rows(chart.run(31, FAST_ONLY)) == [(FAST, "open", 30.0, None)]


def test_reduction_just_before_diagnosis_alerts_at_diagnosis(chart: Chart) -> None:
    chart.pred("p", -40, 60)
    chart.pred("p", -5, 30)
    chart.dx(0)
    assert rows(chart.run(1, FAST_ONLY)) == [(FAST, "open", 0.0, None)]


def test_taper_too_fast_config(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 40)
    chart.pred("p", 10, 34)  # 15 %, 6 mg
    config = FAST_ONLY.model_copy(update={FAST: TaperTooFastConfig(
        max_reduction_fraction=0.10, min_reduction_mg=5, window_days=14)})
    assert chart.run(30, FAST_ONLY) == []
    assert rows(chart.run(30, config)) == [(FAST, "open", 10.0, None),
                                           (FAST, "resolved", 10.0, 24.0)]


# --------------------------------------------------------------------------------------------
# 9. taper_relapse_risk
@pytest.mark.parametrize(
    ("latest", "reference_high", "alerts"),
    [
        (301, None, True),    # > 200 and > 1.5 x 200
        (300, None, False),   # exactly 1.5 x the lowest
        (350, 400, False),    # above 1.5x but within the result's own upper limit
        (450, 400, True),
    ],
)
def test_ck_rise_boundaries(chart: Chart, latest: float, reference_high: float | None,
                            alerts: bool) -> None:
    tapering(chart)
    chart.ck(35, 200)
    chart.ck(50, latest, reference_high=reference_high)
    transitions = chart.run(55, RELAPSE_ONLY)
    assert rows(transitions) == ([(RELAPSE, "open", 50.0, None)] if alerts else [])


def test_ck_must_exceed_the_default_upper_limit(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 100)
    chart.ck(50, 200)  # 2x the lowest but not above 200
    chart.ck(55, 201)
    assert rows(chart.run(60, RELAPSE_ONLY)) == [(RELAPSE, "open", 55.0, None)]


def test_relapse_content(chart: Chart) -> None:
    tapering(chart)
    low = chart.ck(35, 150)
    high = chart.ck(50, 900, reference_high=200)
    [t] = chart.run(55, RELAPSE_ONLY)
    assert t.severity == "warning"
    assert t.summary == "Possible IMNM relapse during glucocorticoid taper"
    assert t.detail == (
        "In taper since 2025-01-31 at 50 mg/day prednisone-equivalent: CK 900 U/L on "
        "2025-02-20 is above the upper limit (200) and 6.0x the lowest CK since the taper began "
        "(150 U/L on 2025-02-05). Relapse is common during tapering. Corticosteroid-induced "
        "myopathy (normal CK) can mimic a flare."
    )
    assert t.evidence == [low["event_id"], high["event_id"]]
    assert t.suggestions[0].startswith("Review disease activity")


def test_ck_before_the_taper_is_not_the_baseline(chart: Chart) -> None:
    tapering(chart)
    chart.ck(10, 100)  # induction
    chart.ck(35, 400)
    chart.ck(50, 500)  # 1.25x the lowest since the taper
    assert chart.run(55, RELAPSE_ONLY) == []


def test_no_relapse_alert_outside_taper(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    chart.ck(5, 200)
    chart.ck(20, 2000)
    assert chart.run(30, RELAPSE_ONLY) == []


def test_relapse_resolves_with_a_later_ck(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 200)
    chart.ck(50, 800)
    chart.ck(60, 250)
    assert rows(chart.run(70, RELAPSE_ONLY)) == [
        (RELAPSE, "open", 50.0, None),
        (RELAPSE, "resolved", 50.0, 60.0),
    ]


def test_relapse_resolves_when_the_dose_is_raised(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 200)
    chart.ck(50, 800)
    chart.pred("p", 52, 55)  # still below the 60 peak: taper, but the dose was raised
    assert rows(chart.run(70, RELAPSE_ONLY)) == [
        (RELAPSE, "open", 50.0, None),
        (RELAPSE, "resolved", 50.0, 52.0),
    ]


def test_relapse_resolves_when_back_to_induction(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 200)
    chart.ck(50, 800)
    chart.pred("p", 52, 60)
    assert rows(chart.run(70, RELAPSE_ONLY)) == [
        (RELAPSE, "open", 50.0, None),
        (RELAPSE, "resolved", 50.0, 52.0),
    ]


def test_relapse_reopened_after_the_raise_is_undone_is_a_new_episode(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 200)
    chart.ck(50, 800)
    chart.pred("p", 52, 55)
    chart.pred("p", 60, 50)  # back down with the old high CK still the latest
    transitions = chart.run(70, RELAPSE_ONLY)
    assert rows(transitions) == [
        (RELAPSE, "open", 50.0, None),
        (RELAPSE, "resolved", 50.0, 52.0),
        (RELAPSE, "open", 60.0, None),
    ]
    assert transitions[2].alert_id != transitions[0].alert_id


@pytest.mark.parametrize(
    ("latest", "alerts"),
    [(109, False), (108, True), (107, True)],  # best 120: 10 % below is 108
)
def test_mmt8_drop_boundaries(chart: Chart, latest: float, alerts: bool) -> None:
    tapering(chart)
    chart.mmt8(35, 120)
    chart.mmt8(50, latest)
    transitions = chart.run(55, RELAPSE_ONLY)
    assert rows(transitions) == ([(RELAPSE, "open", 50.0, None)] if alerts else [])
    if alerts:
        assert "below the best since the taper began (120 on 2025-02-05)" in transitions[0].detail


def test_mmt8_resolves_with_a_later_better_score(chart: Chart) -> None:
    tapering(chart)
    chart.mmt8(35, 140)
    chart.mmt8(50, 100)
    chart.mmt8(60, 135)
    assert rows(chart.run(70, RELAPSE_ONLY)) == [
        (RELAPSE, "open", 50.0, None),
        (RELAPSE, "resolved", 50.0, 60.0),
    ]


def test_mmt8_before_the_taper_is_not_the_best(chart: Chart) -> None:
    tapering(chart)
    chart.mmt8(20, 150)
    chart.mmt8(40, 120)
    chart.mmt8(50, 118)
    assert chart.run(55, RELAPSE_ONLY) == []


def test_ck_and_mmt8_both_in_detail(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 200)
    chart.mmt8(35, 140)
    chart.mmt8(50, 100)
    chart.ck(50, 900)
    [t] = chart.run(55, RELAPSE_ONLY)
    assert rows([t]) == [(RELAPSE, "open", 50.0, None)]
    assert "CK 900 U/L" in t.detail and "MMT-8 100" in t.detail
    assert len(t.evidence) == 4


def test_preliminary_ck_does_not_drive_relapse(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 200)
    chart.ck(50, 900, status="preliminary")
    assert chart.run(55, RELAPSE_ONLY) == []


def test_corrected_ck_replaces_the_high_value(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 200)
    chart.ck(50, 900, result_id="ck-9")
    chart.ck(50, 250, result_id="ck-9", status="corrected")
    transitions = chart.run(55, RELAPSE_ONLY)
    assert rows(transitions) == []


def test_corrected_ck_delivered_later_resolves(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 200)
    chart.ck(50, 900, result_id="ck-9")
    chart.ck(51, 250, result_id="ck-9", status="corrected")
    assert rows(chart.run(55, RELAPSE_ONLY)) == [
        (RELAPSE, "open", 50.0, None),
        (RELAPSE, "resolved", 50.0, 51.0),
    ]


def test_relapse_config(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 100)
    chart.ck(50, 160)
    config = RELAPSE_ONLY.model_copy(update={RELAPSE: TaperRelapseRiskConfig(
        default_ck_upper_limit=150, ck_rise_factor=1.2, mmt8_drop_fraction=0.05)})
    assert chart.run(55, RELAPSE_ONLY) == []
    assert rows(chart.run(55, config)) == [(RELAPSE, "open", 50.0, None)]


def test_ck_of_zero_as_the_lowest_does_not_crash(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 0)
    chart.ck(50, 500)
    [t] = chart.run(55, RELAPSE_ONLY)
    assert "CK 500 U/L" in t.detail and "the lowest CK since the taper began (0 U/L" in t.detail


def test_mmt8_of_zero_does_not_crash(chart: Chart) -> None:
    tapering(chart)
    chart.mmt8(35, 0)
    chart.mmt8(50, 0)
    assert chart.run(55, RELAPSE_ONLY) == []
