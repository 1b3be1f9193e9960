"""Rules judged on every event: 1 statin_active, 10 methotrexate_daily_dosing,
11 tacrolimus_trough_out_of_range."""

from __future__ import annotations

import pytest
from domain_chart import (
    HMGCR_LOINC,
    Chart,
    of_rule,
    only_rules,
    opened,
    rows,
)

from imnm_common.domain.config import (
    DEFAULT_RULES_CONFIG,
    MethotrexateDailyConfig,
    TacrolimusTroughConfig,
)

STATIN = only_rules("statin_active")
MTX = only_rules("methotrexate_daily_dosing")
TACRO = only_rules("tacrolimus_trough_out_of_range")


# --------------------------------------------------------------------------------------------
# 1. statin_active
def test_statin_alert_opens_at_order_time_with_full_content(chart: Chart) -> None:
    dx = chart.dx(0, antibody="anti-HMGCR", statin_associated=True)
    order = chart.rx("s1", 3, "Lipitor 40 mg tablet", rxnorm="83367", dose=40)
    [t] = chart.run(10, STATIN)
    assert rows([t]) == [("statin_active", "open", 3.0, None)]
    assert t.severity == "critical"
    assert t.summary == "Active statin order (Lipitor 40 mg tablet) in a patient with IMNM"
    assert "Order s1 for Lipitor 40 mg tablet (40 mg 1x per 1 d) is active since" in t.detail
    assert "statin-associated" in t.detail and "anti-HMGCR antibodies are positive" in t.detail
    assert "discontinued immediately and permanently" in t.detail
    assert t.evidence == [order["event_id"], dx["event_id"]]
    assert t.suggestions[0] == "Discontinue the statin now and do not re-challenge"
    assert any("discontinue statin immediately and permanently" in r for r in t.references)
    assert t.patient_id == "MRN-1"


@pytest.mark.parametrize("status", ["stopped", "completed", "cancelled", "entered-in-error"])
def test_statin_alert_resolves_when_order_leaves_force(chart: Chart, status: str) -> None:
    chart.dx(0)
    chart.rx("s1", 1, "simvastatin 20 mg", dose=20)
    chart.rx("s1", 5, "simvastatin 20 mg", dose=20, status=status)
    transitions = chart.run(10, STATIN)
    assert rows(transitions) == [
        ("statin_active", "open", 1.0, None),
        ("statin_active", "resolved", 1.0, 5.0),
    ]
    assert transitions[0].alert_id == transitions[1].alert_id
    assert transitions[1].detail.startswith(
        "Resolved on 2025-01-06: the statin order, or the statin on the medication list, is no"
    )


def test_on_hold_statin_is_still_in_force(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("s1", 1, "rosuvastatin", dose=10)
    chart.rx("s1", 5, "rosuvastatin", dose=10, status="on-hold")
    assert rows(chart.run(10, STATIN)) == [("statin_active", "open", 1.0, None)]


def test_statin_alert_is_per_order(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("s1", 1, "atorvastatin", dose=40)
    chart.rx("s2", 2, "Red yeast rice", dose=600)
    chart.stop("s1", 4, "atorvastatin")
    transitions = chart.run(10, STATIN)
    assert rows(transitions) == [
        ("statin_active", "open", 1.0, None),
        ("statin_active", "open", 2.0, None),
        ("statin_active", "resolved", 1.0, 4.0),
    ]
    assert transitions[0].alert_id != transitions[1].alert_id
    assert transitions[2].alert_id == transitions[0].alert_id


def test_restarted_statin_is_a_new_alert(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("s1", 1, "pravastatin", dose=40)
    chart.stop("s1", 2, "pravastatin")
    chart.rx("s1", 3, "pravastatin", dose=40)
    transitions = chart.run(10, STATIN)
    assert rows(transitions) == [
        ("statin_active", "open", 1.0, None),
        ("statin_active", "resolved", 1.0, 2.0),
        ("statin_active", "open", 3.0, None),
    ]
    assert transitions[2].alert_id != transitions[0].alert_id


def test_statin_ordered_last_year_alerts_on_diagnosis_day(chart: Chart) -> None:
    order = chart.rx("s1", -300, "Zocor", dose=40)
    dx = chart.dx(0)
    [t] = chart.run(1, STATIN)
    assert rows([t]) == [("statin_active", "open", 0.0, None)]
    assert t.evidence == [order["event_id"], dx["event_id"]]
    assert "is active since 2024-03-07" in t.detail


def test_statin_stopped_before_diagnosis_does_not_alert(chart: Chart) -> None:
    chart.rx("s1", -300, "Zocor", dose=40)
    chart.stop("s1", -30, "Zocor")
    chart.dx(0)
    assert chart.run(10, STATIN) == []


@pytest.mark.parametrize(
    ("condition", "status"),
    [(None, None), ("dermatomyositis", "active"), ("IMNM", "resolved"),
     ("IMNM", "entered-in-error")],
)
def test_untracked_patient_gets_no_alerts(chart: Chart, condition: str | None,
                                          status: str | None) -> None:
    if condition is not None and status is not None:
        chart.dx(0, condition=condition, status=status)
    chart.rx("s1", 1, "Crestor", dose=10)
    chart.rx("m1", 1, "methotrexate", dose=15)
    chart.tacro(2, 15.0)
    assert chart.run(60) == []


def test_diagnosis_condition_is_case_insensitive(chart: Chart) -> None:
    chart.dx(0, condition=" imnm ")
    chart.rx("s1", 1, "Crestor", dose=10)
    assert rows(chart.run(2, STATIN)) == [("statin_active", "open", 1.0, None)]


@pytest.mark.parametrize("status", ["resolved", "entered-in-error"])
def test_diagnosis_withdrawn_resolves_alerts(chart: Chart, status: str) -> None:
    chart.dx(0)
    chart.rx("s1", 1, "Crestor", dose=10)
    chart.dx(5, status=status)
    assert rows(chart.run(10, STATIN)) == [
        ("statin_active", "open", 1.0, None),
        ("statin_active", "resolved", 1.0, 5.0),
    ]


def test_positive_hmgcr_result_appears_in_statin_detail(chart: Chart) -> None:
    chart.lab(HMGCR_LOINC, -2, value_text="Positive")
    chart.dx(0)
    chart.rx("s1", 1, "Crestor", dose=10)
    [t] = chart.run(2, STATIN)
    assert "anti-HMGCR antibodies are positive" in t.detail


def test_statin_rule_disabled(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("s1", 1, "Crestor", dose=10)
    config = DEFAULT_RULES_CONFIG.model_copy(
        update={"statin_active": DEFAULT_RULES_CONFIG.statin_active.model_copy(
            update={"enabled": False})})
    assert of_rule(chart.run(10, config), "statin_active") == []


# --------------------------------------------------------------------------------------------
# 10. methotrexate_daily_dosing
@pytest.mark.parametrize(
    ("times", "period", "per", "alerts"),
    [
        (1, 1, "d", True),    # daily: the classic fatal error
        (2, 1, "d", True),
        (1, 12, "h", True),
        (1, 6, "d", True),
        (1, 6.9, "d", True),
        (7, 1, "wk", True),   # 7x per week is daily
        (2, 1, "wk", True),   # twice weekly: every 3.5 days
        (1, 7, "d", False),   # exactly weekly
        (1, 168, "h", False),
        (1, 1, "wk", False),
        (1, 2, "wk", False),
        (1, 1, "mo", False),
        (4, 1, "mo", False),  # every 7.5 days
    ],
)
def test_methotrexate_frequency(chart: Chart, times: int, period: float, per: str,
                                alerts: bool) -> None:
    chart.dx(0)
    chart.rx("m1", 1, "methotrexate 2.5 mg tablet", dose=15, times=times, period=period,
             per=per)
    transitions = chart.run(3, MTX)
    assert bool(opened(transitions, "methotrexate_daily_dosing")) is alerts


def test_methotrexate_daily_alert_content_and_resolution(chart: Chart) -> None:
    chart.dx(0)
    first = chart.rx("m1", 1, "methotrexate", dose=15, times=1, period=1, per="d")
    chart.rx("m1", 2, "methotrexate", dose=10, times=1, period=1, per="d")  # still daily
    chart.rx("m1", 3, "methotrexate", dose=15, times=1, period=1, per="wk")
    transitions = chart.run(10, MTX)
    assert rows(transitions) == [
        ("methotrexate_daily_dosing", "open", 1.0, None),
        ("methotrexate_daily_dosing", "resolved", 1.0, 3.0),
    ]
    t = transitions[0]
    assert t.severity == "critical"
    assert t.summary == "Methotrexate ordered more often than weekly (15 mg 1x per 1 d)"
    assert "every 1 day(s)" in t.detail and "once weekly" in t.detail
    assert t.evidence == [first["event_id"]]
    assert "ONCE WEEKLY" in t.suggestions[0]


def test_methotrexate_stop_resolves_and_raised_at_keeps_the_daily_run(chart: Chart) -> None:
    chart.rx("m1", -10, "methotrexate", dose=15, times=1, period=1, per="d")
    chart.dx(0)
    chart.rx("m1", 3, "methotrexate", status="stopped")
    assert rows(chart.run(10, MTX)) == [
        ("methotrexate_daily_dosing", "open", 0.0, None),
        ("methotrexate_daily_dosing", "resolved", 0.0, 3.0),
    ]


def test_methotrexate_without_frequency_is_not_judged(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("m1", 1, "methotrexate", dose=15, per=None)
    assert chart.run(3, MTX) == []


def test_methotrexate_written_per_day_is_daily_without_a_frequency(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("m1", 1, "methotrexate", dose=15, unit="mg/d", per=None)
    chart.rx("m2", 1, "methotrexate", dose=15, unit="mg/d", period=1, per="wk")
    transitions = chart.run(3, MTX)
    assert rows(transitions) == [("methotrexate_daily_dosing", "open", 1.0, None)] * 2
    assert transitions[0].summary == "Methotrexate ordered more often than weekly (15 mg/d)"
    assert "every 1 day(s)" in transitions[0].detail


def test_methotrexate_is_per_order(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("m1", 1, "methotrexate", dose=15)
    chart.rx("m2", 2, "Trexall", dose=5)
    transitions = chart.run(3, MTX)
    assert len(transitions) == 2
    assert len({t.alert_id for t in opened(transitions, "methotrexate_daily_dosing")}) == 2


def test_methotrexate_config_min_period(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("m1", 1, "methotrexate", dose=15, period=10, per="d")
    config = MTX.model_copy(update={"methotrexate_daily_dosing": MethotrexateDailyConfig(
        min_period_days=14)})
    assert chart.run(3, MTX) == []
    assert rows(chart.run(3, config)) == [("methotrexate_daily_dosing", "open", 1.0, None)]


# --------------------------------------------------------------------------------------------
# 11. tacrolimus_trough_out_of_range
@pytest.mark.parametrize(
    ("value", "direction"),
    [(4.9, "low"), (5.0, None), (7.5, None), (10.0, None), (10.1, "high"), (0.0, "low")],
)
def test_tacrolimus_boundaries(chart: Chart, value: float, direction: str | None) -> None:
    chart.dx(0)
    result = chart.tacro(2, value)
    transitions = chart.run(3, TACRO)
    if direction is None:
        assert transitions == []
        return
    [t] = transitions
    assert rows([t]) == [("tacrolimus_trough_out_of_range", "open", 2.0, None)]
    assert t.summary == f"Tacrolimus trough {direction}: {value:g} ng/mL (target 5-10)"
    assert t.severity == "warning"
    assert t.evidence == [result["event_id"]]
    assert "outside the target range 5-10 ng/mL" in t.detail


@pytest.mark.parametrize("loinc", ["11253-2", "77348-1", "74097-7"])
def test_tacrolimus_loinc_codes(chart: Chart, loinc: str) -> None:
    chart.dx(0)
    chart.lab(loinc, 1, 12.0)
    assert len(opened(chart.run(2, TACRO), "tacrolimus_trough_out_of_range")) == 1


def test_tacrolimus_resolves_with_next_in_range_result_only(chart: Chart) -> None:
    chart.dx(0)
    first = chart.tacro(1, 3.0)
    chart.tacro(8, 4.0)  # still low: the same alert stays open, on its first evidence
    chart.tacro(15, 7.0)
    transitions = chart.run(20, TACRO)
    assert rows(transitions) == [
        ("tacrolimus_trough_out_of_range", "open", 1.0, None),
        ("tacrolimus_trough_out_of_range", "resolved", 1.0, 15.0),
    ]
    assert transitions[0].evidence == [first["event_id"]]
    assert "a later trough is within range" in transitions[1].detail


def test_tacrolimus_swing_to_the_other_side_replaces_the_alert(chart: Chart) -> None:
    # An open "low" alert advises raising the dose; once the trough is high that advice is the
    # opposite of right, so the low alert resolves and a high one opens at the new result.
    chart.dx(0)
    chart.tacro(1, 3.0)
    high = chart.tacro(8, 12.0)
    chart.tacro(10, 14.0)
    chart.tacro(15, 7.0)
    transitions = chart.run(20, TACRO)
    assert rows(transitions) == [
        ("tacrolimus_trough_out_of_range", "open", 1.0, None),
        ("tacrolimus_trough_out_of_range", "resolved", 1.0, 8.0),
        ("tacrolimus_trough_out_of_range", "open", 8.0, None),
        ("tacrolimus_trough_out_of_range", "resolved", 8.0, 15.0),
    ]
    low_alert, _, high_alert, _ = transitions
    assert low_alert.summary.startswith("Tacrolimus trough low: 3 ng/mL")
    assert high_alert.summary.startswith("Tacrolimus trough high: 12 ng/mL")
    assert high_alert.evidence == [high["event_id"]]
    assert high_alert.alert_id != low_alert.alert_id
    assert "out of range the other way" in transitions[1].detail


def test_tacrolimus_out_of_range_before_diagnosis_alerts_at_diagnosis(chart: Chart) -> None:
    chart.tacro(-5, 15.0)
    chart.dx(0)
    assert rows(chart.run(1, TACRO)) == [("tacrolimus_trough_out_of_range", "open", 0.0, None)]


def test_tacrolimus_preliminary_ignored(chart: Chart) -> None:
    chart.dx(0)
    chart.tacro(1, 2.0, status="preliminary")
    assert chart.run(2, TACRO) == []


def test_tacrolimus_corrected_result_replaces(chart: Chart) -> None:
    chart.dx(0)
    chart.tacro(1, 12.0, result_id="r1")
    chart.tacro(1.5, 8.0, result_id="r1", status="corrected")
    assert rows(chart.run(2, TACRO)) == [
        ("tacrolimus_trough_out_of_range", "open", 1.0, None),
        ("tacrolimus_trough_out_of_range", "resolved", 1.0, 1.5),
    ]


def test_tacrolimus_entered_in_error_removes_the_result(chart: Chart) -> None:
    chart.dx(0)
    chart.tacro(1, 7.0, result_id="r1")
    chart.tacro(2, 14.0, result_id="r2")
    chart.lab("11253-2", 3, status="entered-in-error", result_id="r2")
    assert rows(chart.run(4, TACRO)) == [
        ("tacrolimus_trough_out_of_range", "open", 2.0, None),
        ("tacrolimus_trough_out_of_range", "resolved", 2.0, 3.0),
    ]


def test_tacrolimus_config_range(chart: Chart) -> None:
    chart.dx(0)
    chart.tacro(1, 9.0)
    config = TACRO.model_copy(update={"tacrolimus_trough_out_of_range": TacrolimusTroughConfig(
        low_ng_per_ml=4.0, high_ng_per_ml=8.0)})
    [t] = chart.run(2, config)
    assert t.summary == "Tacrolimus trough high: 9 ng/mL (target 4-8)"
