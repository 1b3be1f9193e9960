"""Rules 6-7: ck_monitoring_overdue (28 days induction/taper, 90 maintenance) and
muscle_assessment_overdue (MMT-8, 90 days in any treated phase)."""

from __future__ import annotations

import pytest
from domain_chart import Chart, only_rules, rows

from imnm_common.domain.config import MonitoringConfig

CK = "ck_monitoring_overdue"
MMT = "muscle_assessment_overdue"
CK_ONLY = only_rules(CK)
MMT_ONLY = only_rules(MMT)


def mtx(c: Chart, day: float, status: str = "active") -> None:
    c.rx("mtx", day, "methotrexate", dose=20, period=1, per="wk", status=status)


# --------------------------------------------------------------------------------------------
# CK
def test_ck_overdue_28_days_after_last_ck_in_induction(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    ck = chart.ck(2, 4000)
    assert chart.run(29.99, CK_ONLY) == []
    [t] = chart.run(30, CK_ONLY)
    assert rows([t]) == [(CK, "open", 30.0, None)]
    assert t.severity == "warning"
    assert t.summary == "creatine kinase result overdue (induction phase)"
    assert t.detail == (
        "No creatine kinase result for 28 days (the last on 2025-01-03; treatment since "
        "2025-01-01). In the induction phase it is due every 28 days to judge disease activity "
        "and guide the taper."
    )
    assert t.evidence == [ck["event_id"]]
    assert t.suggestions == ["Order a creatine kinase level"]


def test_ck_counted_from_treatment_start_when_last_ck_is_older(chart: Chart) -> None:
    chart.dx(-30)
    chart.ck(-20, 9000)
    chart.pred("p", 0, 60)
    [t] = chart.run(40, CK_ONLY)
    assert rows([t]) == [(CK, "open", 28.0, None)]
    assert "the last on 2024-12-12" in t.detail


def test_ck_without_any_result(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    [t] = chart.run(40, CK_ONLY)
    assert rows([t]) == [(CK, "open", 28.0, None)]
    assert "none on record" in t.detail and t.evidence == []


def test_ck_resolves_with_the_next_ck_and_becomes_due_again(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    chart.ck(0, 5000)
    chart.ck(35, 3000)
    transitions = chart.run(70, CK_ONLY)
    assert rows(transitions) == [
        (CK, "open", 28.0, None),
        (CK, "resolved", 28.0, 35.0),
        (CK, "open", 63.0, None),
    ]
    assert transitions[2].alert_id != transitions[0].alert_id
    assert "a creatine kinase result arrived" in transitions[1].detail


def test_ck_at_the_due_instant_prevents_the_alert(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    chart.ck(0, 5000)
    chart.ck(28, 3000)
    assert chart.run(40, CK_ONLY) == []


def test_ck_in_taper_is_also_28_days(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    chart.ck(0, 5000)
    chart.pred("p", 20, 50)
    [t] = chart.run(40, CK_ONLY)
    assert rows([t]) == [(CK, "open", 28.0, None)]
    assert t.summary == "creatine kinase result overdue (taper phase)"


def test_ck_in_maintenance_is_90_days(chart: Chart) -> None:
    chart.dx(0)
    mtx(chart, 0)
    chart.ck(1, 500)
    assert chart.run(90.99, CK_ONLY) == []
    [t] = chart.run(91, CK_ONLY)
    assert rows([t]) == [(CK, "open", 91.0, None)]
    assert t.summary == "creatine kinase result overdue (maintenance phase)"


def test_ck_interval_switches_when_glucocorticoid_ends(chart: Chart) -> None:
    chart.dx(0)
    mtx(chart, 0)
    chart.pred("p", 0, 40)
    chart.ck(0, 2000)
    chart.stop("p", 30)
    # overdue in induction from day 28; from day 31 (stopped for 24 h) maintenance allows 90
    assert rows(chart.run(95, CK_ONLY)) == [
        (CK, "open", 28.0, None),
        (CK, "resolved", 28.0, 31.0),
        (CK, "open", 90.0, None),
    ]


def test_ck_limit_shortens_when_glucocorticoid_starts_in_maintenance(chart: Chart) -> None:
    chart.dx(0)
    mtx(chart, 0)
    chart.ck(0, 300)
    chart.pred("p", 60, 60)
    # the 28-day limit applies from day 60: overdue at once, raised when it became true
    assert rows(chart.run(70, CK_ONLY)) == [(CK, "open", 60.0, None)]


def test_ck_untreated_patient_is_not_monitored(chart: Chart) -> None:
    chart.dx(0)
    chart.ck(0, 9000)
    assert chart.run(200, CK_ONLY) == []


def test_ck_alert_resolves_when_treatment_ends(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 40)
    chart.stop("p", 40)
    assert rows(chart.run(60, CK_ONLY)) == [(CK, "open", 28.0, None), (CK, "resolved", 28.0, 41.0)]


def test_ck_preliminary_result_does_not_count(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 40)
    chart.ck(10, 5000, status="preliminary")
    assert rows(chart.run(30, CK_ONLY)) == [(CK, "open", 28.0, None)]


def test_ck_entered_in_error_result_no_longer_counts(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 40)
    chart.ck(20, 5000, result_id="ck-1")
    chart.lab("2157-6", 30, status="entered-in-error", result_id="ck-1")
    assert rows(chart.run(40, CK_ONLY)) == [(CK, "open", 28.0, None)]


def test_ck_corrected_result_keeps_counting(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 40)
    chart.ck(20, 5000, result_id="ck-1")
    chart.ck(20, 500, result_id="ck-1", status="corrected")
    assert rows(chart.run(50, CK_ONLY)) == [(CK, "open", 48.0, None)]


def test_ck_other_loinc_does_not_count(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 40)
    chart.lab("1761-6", 20, 12.0)  # aldolase
    assert rows(chart.run(30, CK_ONLY)) == [(CK, "open", 28.0, None)]


def test_ck_overdue_before_diagnosis_raises_at_diagnosis(chart: Chart) -> None:
    chart.pred("p", -100, 40)
    chart.dx(0)
    assert rows(chart.run(1, CK_ONLY)) == [(CK, "open", 0.0, None)]


def test_ck_config(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 40)
    config = CK_ONLY.model_copy(update={CK: MonitoringConfig(induction_taper_days=14,
                                                             maintenance_days=60)})
    [t] = chart.run(20, config)
    assert rows([t]) == [(CK, "open", 14.0, None)]
    assert "due every 14 days" in t.detail


# --------------------------------------------------------------------------------------------
# MMT-8
@pytest.mark.parametrize("maintenance", [False, True])
def test_mmt8_overdue_after_90_days_in_any_treated_phase(chart: Chart, maintenance: bool
                                                         ) -> None:
    chart.dx(0)
    if maintenance:
        mtx(chart, 0)
    else:
        chart.pred("p", 0, 40)
    score = chart.mmt8(5, 120)
    assert chart.run(94.99, MMT_ONLY) == []
    [t] = chart.run(95, MMT_ONLY)
    assert rows([t]) == [(MMT, "open", 95.0, None)]
    assert t.severity == "info"
    assert t.evidence == [score["event_id"]]
    assert t.summary.startswith("manual muscle test (MMT-8) overdue")
    assert t.suggestions == ["Schedule a manual muscle testing (MMT-8) assessment"]


def test_mmt8_resolves_with_the_next_assessment(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 40)
    chart.mmt8(100, 130)
    assert rows(chart.run(120, MMT_ONLY)) == [
        (MMT, "open", 90.0, None),
        (MMT, "resolved", 90.0, 100.0),
    ]


def test_mmt8_untreated_is_not_monitored(chart: Chart) -> None:
    chart.dx(0)
    chart.mmt8(0, 80)
    assert chart.run(300, MMT_ONLY) == []


def test_glucocorticoid_dosed_in_tablets_is_monitored(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("p", 0, "prednisone 20 mg tablet", dose=3, unit="tablet")
    [t] = chart.run(30, CK_ONLY)
    assert rows([t]) == [(CK, "open", 28.0, None)]
    assert t.summary == "creatine kinase result overdue (induction phase)"


def test_ck_entered_in_error_after_resolution_reopens_as_a_new_episode(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    chart.ck(30, 3000, result_id="ck-1")
    chart.lab("2157-6", 31, status="entered-in-error", result_id="ck-1")
    transitions = chart.run(40, CK_ONLY)
    assert rows(transitions) == [
        (CK, "open", 28.0, None),
        (CK, "resolved", 28.0, 30.0),
        (CK, "open", 30.0, None),  # overdue again; the new episode starts at the resolution
    ]
    assert transitions[2].alert_id != transitions[0].alert_id
