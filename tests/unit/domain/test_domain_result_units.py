"""Results in the other units labs report them in: CK in ukat/L or nkat/L (Nordic labs), a
tacrolimus trough in ug/L or nmol/L. The rules compare CK in U/L and troughs in ng/mL; read as
a bare number, CK 5 ukat/L (300 U/L) looked like 5 U/L and a rise went unseen."""

from __future__ import annotations

import pytest
from domain_chart import Chart, only_rules, rows, tapering

from imnm_common.contracts.events import EventRejected, parse_event_object

RELAPSE = "taper_relapse_risk"
TACRO = "tacrolimus_trough_out_of_range"


@pytest.mark.parametrize(("unit", "low", "high"), [
    ("U/L", 150, 450), ("IU/L", 150, 450), ("ukat/L", 2.5, 7.5), ("\u00b5kat/L", 2.5, 7.5),
    ("nkat/L", 2500, 7500),
])
def test_a_ck_rise_is_seen_in_any_unit_and_told_in_u_per_l(
    chart: Chart, unit: str, low: float, high: float
) -> None:
    tapering(chart)
    chart.ck(35, low, unit=unit)
    chart.ck(50, high, unit=unit)
    [t] = chart.run(55, only_rules(RELAPSE))
    assert rows([t]) == [(RELAPSE, "open", 50.0, None)]
    assert "CK 450 U/L on 2025-02-20 is above the upper limit (200) and 3.0x the lowest CK " \
           "since the taper began (150 U/L on 2025-02-05)" in t.detail


def test_a_reference_high_is_read_in_the_results_unit(chart: Chart) -> None:
    """3.5 ukat/L is 210 U/L: CK 3.6 ukat/L (216 U/L) is above it, read as U/L it was not."""
    tapering(chart)
    chart.ck(35, 1.0, unit="ukat/L", reference_high=3.5)
    chart.ck(50, 3.6, unit="ukat/L", reference_high=3.5)
    [t] = chart.run(55, only_rules(RELAPSE))
    assert "is above the upper limit (210)" in t.detail


def test_cks_in_two_units_are_compared_as_one(chart: Chart) -> None:
    """A patient seen by two labs: 150 U/L, then 4 ukat/L (240 U/L), a 1.6x rise."""
    tapering(chart)
    chart.ck(35, 150, unit="U/L")
    chart.ck(50, 4, unit="ukat/L")
    [t] = chart.run(55, only_rules(RELAPSE))
    assert "CK 240 U/L on 2025-02-20" in t.detail and "1.6x the lowest CK" in t.detail


@pytest.mark.parametrize(("value", "unit", "direction"), [
    (12.0, "nmol/L", None),  # 9.6 ng/mL: in range
    (14.0, "nmol/L", "high"),  # 11.3 ng/mL
    (5.5, "nmol/L", "low"),  # 4.4 ng/mL
    (4.5, "ug/L", "low"),
    (7.0, "mcg/L", None),
])
def test_a_trough_in_another_unit_is_judged_in_ng_per_ml(
    chart: Chart, value: float, unit: str, direction: str | None
) -> None:
    chart.dx(0)
    chart.tacro(2, value, unit=unit)
    transitions = chart.run(3, only_rules(TACRO))
    if direction is None:
        assert transitions == []
    else:
        [t] = transitions
        assert t.summary.startswith(f"Tacrolimus trough {direction}: "), t.summary
        assert f"{value * (0.804 if unit == 'nmol/L' else 1):g} ng/mL" in t.summary


@pytest.mark.parametrize(("loinc", "unit", "value", "reason"), [
    ("2157-6", "mg/dL", 300,
     "unit: 'mg/dL' is not a unit this test is reported in (U/L, IU/L, ukat/L or nkat/L)"),
    ("11253-2", "ng/dL", 8,
     "unit: 'ng/dL' is not a unit this test is reported in (ng/mL, ug/L, mcg/L or nmol/L)"),
    ("2157-6", "ukat/L", 20000, "value: creatine kinase 20000 ukat/L is implausible"),
])
def test_a_result_in_a_unit_its_test_is_not_reported_in_is_refused(
    loinc: str, unit: str, value: float, reason: str
) -> None:
    with pytest.raises(EventRejected) as caught:
        parse_event_object({
            "event_id": "lab-1", "patient_id": "MRN-1", "occurred_at": "2025-01-02T08:00:00Z",
            "source": "test", "event_type": "lab_result", "loinc": loinc, "value": value,
            "unit": unit,
        })
    assert reason in caught.value.reason, caught.value.reason


def test_a_result_without_a_unit_is_read_in_the_rules_unit(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 150, unit=None)
    chart.ck(50, 450, unit=None)
    [t] = chart.run(55, only_rules(RELAPSE))
    assert "CK 450 U/L" in t.detail
