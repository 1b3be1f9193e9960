"""Rule 12, methotrexate_dose_above_range: one dose above the weekly maximum (the seed's IMNM range
is 15-25 mg once weekly). The slipped decimal, 75 mg ordered for 7.5 mg, is the classic case."""

from __future__ import annotations

import pytest
from domain_chart import Chart, only_rules, opened, rows

from imnm_common.domain.config import MethotrexateDoseConfig

RULE = "methotrexate_dose_above_range"
DOSE = only_rules(RULE)
BOTH = only_rules(RULE, "methotrexate_daily_dosing")


@pytest.mark.parametrize(
    ("dose", "unit", "times", "period", "per", "alerts"),
    [
        (25, "mg", 1, 1, "wk", False),      # the top of the range
        (25.5, "mg", 1, 1, "wk", True),
        (75, "mg", 1, 1, "wk", True),       # 7.5 intended
        (0.075, "g", 1, 1, "wk", True),     # the same in grams
        (30, "mg", 1, 2, "wk", True),       # one dose of 30, however rare
        (20, "mg", 1, 2, "wk", False),
        (10, "tablet", 1, 1, "wk", False),  # strength unknown: not judged
        (75, "mg", 1, 1, None, True),       # no frequency: the dose alone is too high
    ],
)
def test_dose_boundaries(chart: Chart, dose: float, unit: str, times: int, period: float,
                         per: str | None, alerts: bool) -> None:
    chart.dx(0)
    chart.rx("m1", 1, "methotrexate 2.5 mg tablet", dose=dose, unit=unit, times=times,
             period=period, per=per)
    assert bool(opened(chart.run(3, DOSE), RULE)) is alerts


def test_content_and_the_correction_resolves(chart: Chart) -> None:
    chart.dx(0)
    wrong = chart.rx("m1", 1, "methotrexate", dose=75, times=1, period=1, per="wk")
    chart.rx("m1", 2, "methotrexate", dose=7.5, times=1, period=1, per="wk")
    transitions = chart.run(10, DOSE)
    assert rows(transitions) == [(RULE, "open", 1.0, None), (RULE, "resolved", 1.0, 2.0)]
    t = transitions[0]
    assert t.severity == "critical"
    assert t.summary == "Methotrexate 75 mg per dose, above 25 mg weekly"
    assert t.detail == (
        "Order m1 (methotrexate, 75 mg 1x per 1 wk) gives 75 mg of methotrexate in one dose, "
        "more than the 25 mg a week at the top of the IMNM range (15-25 mg once weekly). A "
        "slipped decimal (75 mg for 7.5 mg) is the classic cause; an overdose causes fatal "
        "bone-marrow, mucosal and liver toxicity."
    )
    assert t.evidence == [wrong["event_id"]]
    assert t.suggestions[0].startswith("Hold and verify the dose")
    assert transitions[1].detail == (
        "Resolved on 2025-01-03: the methotrexate dose is within the weekly range now or the "
        "order is no longer in force.")


def test_still_too_high_after_a_change_is_the_same_alert(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("m1", 1, "methotrexate", dose=75, per="wk")
    chart.rx("m1", 2, "methotrexate", dose=50, per="wk")
    chart.rx("m1", 4, "methotrexate", status="stopped")
    assert rows(chart.run(10, DOSE)) == [(RULE, "open", 1.0, None), (RULE, "resolved", 1.0, 4.0)]


def test_a_daily_order_is_the_daily_rules_alone(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("m1", 1, "methotrexate", dose=75, times=1, period=1, per="d")
    assert {t.rule for t in chart.run(3, BOTH)} == {"methotrexate_daily_dosing"}


def test_an_order_before_the_diagnosis_alerts_from_the_diagnosis(chart: Chart) -> None:
    chart.rx("m1", -5, "methotrexate", dose=75, per="wk")
    chart.dx(0)
    assert rows(chart.run(3, DOSE)) == [(RULE, "open", 0.0, None)]


def test_other_steroid_sparing_agents_are_not_judged(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("a1", 1, "azathioprine", dose=150, per="d")
    chart.rx("c1", 1, "mycophenolate mofetil", dose=1500, times=2, per="d")
    assert chart.run(3, DOSE) == []


def test_config_max(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("m1", 1, "methotrexate", dose=27.5, per="wk")
    assert rows(chart.run(3, DOSE)) == [(RULE, "open", 1.0, None)]
    config = DOSE.model_copy(update={RULE: MethotrexateDoseConfig(max_mg_per_week=30)})
    assert chart.run(3, config) == []
