"""Results reported as a bound (comparator "<", "<=", ">=", ">"): a creatine kinase above the
analyser's range (">2000"), a tacrolimus trough below the assay's ("<2"). Such a result was drawn
(it counts for monitoring) and the rules draw from it only what every value it allows gives."""

from __future__ import annotations

import pytest
from domain_chart import Chart, only_rules, rows, tapering
from hypothesis import given, settings
from hypothesis import strategies as st

CK_DUE = "ck_monitoring_overdue"
RELAPSE = "taper_relapse_risk"
TACRO = "tacrolimus_trough_out_of_range"


def test_a_ck_above_the_analysers_range_counts_as_monitoring(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p", 0, 60)
    chart.ck(2, 2000, comparator=">")
    assert chart.run(29.99, only_rules(CK_DUE)) == []
    [t] = chart.run(30, only_rules(CK_DUE))  # due 28 days after that result, not after day 0
    assert rows([t]) == [(CK_DUE, "open", 30.0, None)]
    assert "the last on 2025-01-03" in t.detail


def test_a_ck_above_the_range_shows_a_relapse_as_reported(chart: Chart) -> None:
    tapering(chart)
    low = chart.ck(35, 200)
    high = chart.ck(50, 2000, comparator=">")
    [t] = chart.run(55, only_rules(RELAPSE))
    assert rows([t]) == [(RELAPSE, "open", 50.0, None)]
    assert (
        "CK >2000 U/L on 2025-02-20 is above the upper limit (200) and at least 10.0x the "
        "lowest CK since the taper began (200 U/L on 2025-02-05)"
    ) in t.detail
    assert t.evidence == [low["event_id"], high["event_id"]]


@pytest.mark.parametrize(
    ("comparator", "alerts"),
    [
        (None, True),   # 301 > 1.5 x 200
        (">", True),    # above 301
        (">=", True),
        ("<", False),   # anything below 301: possibly 250, no rise proven
        ("<=", False),
    ],
)
def test_only_a_proven_rise_is_a_relapse(chart: Chart, comparator: str | None,
                                         alerts: bool) -> None:
    tapering(chart)
    chart.ck(35, 200)
    chart.ck(50, 301, comparator=comparator)
    expected = [(RELAPSE, "open", 50.0, None)] if alerts else []
    assert rows(chart.run(55, only_rules(RELAPSE))) == expected


def test_exactly_at_the_limit_a_strict_bound_is_above_it(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 200)
    chart.ck(50, 300, comparator=">")  # more than 300 = 1.5 x 200
    assert rows(chart.run(55, only_rules(RELAPSE))) == [(RELAPSE, "open", 50.0, None)]


def test_a_lower_bound_is_never_the_lowest_ck(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 100, comparator=">")  # perhaps 250
    chart.ck(40, 200)
    chart.ck(50, 290)  # 2.9x the bound, but below 1.5 x 200
    assert chart.run(55, only_rules(RELAPSE)) == []


def test_an_upper_bound_is_the_lowest_ck_by_its_bound(chart: Chart) -> None:
    tapering(chart)
    chart.ck(35, 100, comparator="<")  # below the analyser's low end
    chart.ck(50, 250)
    [t] = chart.run(55, only_rules(RELAPSE))
    assert "at least 2.5x the lowest CK since the taper began (<100 U/L" in t.detail


@pytest.mark.parametrize(
    ("comparator", "value", "direction"),
    [
        ("<", 2.0, "low"),     # below the assay's range
        ("<", 5.0, "low"),     # below 5
        ("<=", 5.0, None),     # possibly 5, in range
        ("<", 8.0, None),      # possibly in range
        (">", 10.0, "high"),
        (">=", 10.0, None),    # possibly 10
        (">", 3.0, None),
        (">=", 12.0, "high"),
    ],
)
def test_tacrolimus_bound_out_of_range_only_when_every_value_is(
    chart: Chart, comparator: str, value: float, direction: str | None
) -> None:
    chart.dx(0)
    chart.tacro(2, value, comparator=comparator)
    transitions = chart.run(3, only_rules(TACRO))
    if direction is None:
        assert transitions == []
        return
    [t] = transitions
    assert t.summary == (
        f"Tacrolimus trough {direction}: {comparator}{value:g} ng/mL (target 5-10)"
    )
    assert f"Tacrolimus trough {comparator}{value:g} ng/mL on 2025-01-03" in t.detail


# --- soundness: what a bound raises, every value it allows raises --------------------------
_COMPARATORS = st.sampled_from(["<", "<=", ">=", ">"])


def _allowed(comparator: str, bound: float, distance: float) -> float:
    """A value >= 0 the bound allows, ``distance`` from the bound where it can be."""
    if comparator == ">":
        above = bound + distance
        return above if above > bound else bound + 0.001  # a tiny distance rounds to the bound
    if comparator == ">=":
        return bound + distance
    if comparator == "<":
        below = bound - distance
        return below if 0 <= below < bound else bound / 2
    return max(bound - distance, 0.0)


def _relapse_opened(lowest: float, latest: float, comparator: str | None) -> bool:
    chart = Chart()
    tapering(chart)
    chart.ck(35, lowest)
    chart.ck(50, latest, comparator=comparator)
    return bool(chart.run(55, only_rules(RELAPSE)))


@settings(max_examples=150, deadline=None)
@given(
    comparator=_COMPARATORS,
    bound=st.integers(min_value=0, max_value=2_000).map(float),
    lowest=st.integers(min_value=1, max_value=1_000).map(float),
    distance=st.floats(min_value=0, max_value=2_000),
)
def test_a_relapse_from_a_bound_holds_for_every_value_it_allows(
    comparator: str, bound: float, lowest: float, distance: float
) -> None:
    true_value = _allowed(comparator, bound, distance)
    if _relapse_opened(lowest, bound, comparator):
        assert _relapse_opened(lowest, true_value, None), (comparator, bound, true_value)


def _trough_direction(value: float, comparator: str | None) -> str | None:
    chart = Chart()
    chart.dx(0)
    chart.tacro(2, value, comparator=comparator)
    transitions = chart.run(3, only_rules(TACRO))
    return transitions[0].summary.split(":")[0].rsplit(" ", 1)[1] if transitions else None


@settings(max_examples=150, deadline=None)
@given(
    comparator=_COMPARATORS,
    bound=st.integers(min_value=0, max_value=40).map(lambda n: n / 2),
    distance=st.floats(min_value=0, max_value=20),
)
def test_a_trough_alert_from_a_bound_holds_for_every_value_it_allows(
    comparator: str, bound: float, distance: float
) -> None:
    direction = _trough_direction(bound, comparator)
    if direction is not None:
        true_value = _allowed(comparator, bound, distance)
        assert _trough_direction(true_value, None) == direction, (comparator, bound, true_value)
