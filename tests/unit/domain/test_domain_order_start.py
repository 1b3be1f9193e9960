"""An order written ahead of its first dose (``starts_at``): a glucocorticoid counts from its
start, as if it had been ordered then; a statin, methotrexate or prophylaxis from its order."""

from __future__ import annotations

import pytest
from domain_chart import Chart, only_rules, opened, parse, replay, rows

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.events import EventRejected, parse_event_object

PJP = "pjp_prophylaxis_missing"


def _seen(
    transitions: list[AlertTransition], *, evidence: bool = True
) -> list[tuple[object, ...]]:
    return [(*row, t.summary, t.detail, tuple(t.evidence) if evidence else ())
            for row, t in zip(rows(transitions), transitions, strict=True)]


def test_a_glucocorticoid_counts_from_its_start() -> None:
    ahead, at_start = Chart(), Chart()
    for chart in (ahead, at_start):
        chart.dx(0)
        chart.ck(1, 900, reference_high=200)
    ahead.pred("p1", 2, 30, starts=9, eid="p1-v1")
    at_start.pred("p1", 9, 30, eid="p1-v1")  # the same order, sent on the day it starts
    expected = _seen(replay(at_start.events, 120))
    assert (PJP, "open", 37.0, None) in [row[:4] for row in expected]  # 9 + 28 days
    assert _seen(replay(ahead.events, 120)) == expected
    assert _seen(replay(ahead.events, 120, roundtrip_state=True)) == expected


def test_the_replacement_written_ahead_is_judged_against_the_dose_it_replaces() -> None:
    """On day 10 the prescriber ends 60 mg on day 14 and orders 40 mg from day 14: 60 to 40,
    not the 100 mg/day of both counted from day 10."""
    chart = Chart()
    chart.dx(0)
    chart.pred("p1", 0, 60)
    chart.pred("p1", 10, 60, ends=14)
    chart.pred("p2", 10, 40, starts=14)
    [too_fast] = opened(chart.run(30, only_rules("taper_too_fast")), "taper_too_fast")
    assert too_fast.summary == "Glucocorticoid taper too fast: 60 to 40 mg/day"
    assert rows([too_fast]) == [("taper_too_fast", "open", 14.0, None)]


@pytest.mark.parametrize("stopped", [5, 30])
def test_it_counts_only_from_its_start_to_its_stop(stopped: float) -> None:
    """Ordered on day 1 to start on day 20: stopped before its start it never counted, and
    stopped on day 30 it counted 10 days, too few for any rule (from day 1: 29 days, enough for
    Pneumocystis prophylaxis and calcium with vitamin D)."""
    ahead, from_order = Chart(), Chart()
    for chart, starts in ((ahead, 20.0), (from_order, None)):
        chart.dx(0)
        chart.pred("p1", 1, 60, starts=starts)
        chart.stop("p1", stopped)
    assert ahead.run(120) == []
    if stopped == 30:
        assert {t.rule for t in from_order.run(120)} >= {PJP, "calcium_vitamin_d_missing"}


def test_a_schedule_written_ahead_starts_with_its_first_dose() -> None:
    ahead, stepped = Chart(), Chart()
    for chart in (ahead, stepped):
        chart.dx(0)
    ahead.pred("p1", 1, 60, starts=5, steps=[(30, 40)], ends=60)
    stepped.pred("p1", 5, 60)
    stepped.pred("p1", 30, 40)
    stepped.stop("p1", 60, status="completed")
    # the evidence differs: a step cites the order event that scheduled it
    expected = _seen(replay(stepped.events, 200), evidence=False)
    assert {row[0] for row in expected} >= {PJP, "taper_too_fast"}
    assert _seen(replay(ahead.events, 200), evidence=False) == expected


@pytest.mark.parametrize(("drug", "rule"), [
    ("atorvastatin", "statin_active"),
    ("methotrexate", "methotrexate_daily_dosing"),
])
def test_a_hazard_written_ahead_alerts_when_ordered(drug: str, rule: str) -> None:
    chart = Chart()
    chart.dx(0)
    chart.rx("o1", 2, drug, dose=15, starts=9)
    [alert] = opened(chart.run(20, only_rules(rule)), rule)
    assert rows([alert]) == [(rule, "open", 2.0, None)]


def test_prophylaxis_written_ahead_is_cover_when_ordered() -> None:
    chart = Chart()
    chart.dx(0)
    chart.pred("p1", 0, 30)
    chart.rx("smx", 20, "trimethoprim-sulfamethoxazole", starts=40)
    assert chart.run(60, only_rules(PJP)) == []


def test_a_start_at_or_before_the_order_is_as_if_absent() -> None:
    ahead, plain = Chart(), Chart()
    for chart in (ahead, plain):
        chart.dx(0)
    ahead.pred("p1", 3, 30, starts=1, eid="p1-v1")
    plain.pred("p1", 3, 30, eid="p1-v1")
    assert _seen(replay(ahead.events, 60)) == _seen(replay(plain.events, 60))


def test_steps_and_the_end_come_after_the_start() -> None:
    chart = Chart()
    step = chart.pred("p1", 1, 60, starts=10, steps=[(8, 40)])
    with pytest.raises(EventRejected, match=r"dose_schedule\.0\.starts_at: a step starts after"):
        parse_event_object(step)
    end = chart.pred("p1", 1, 60, starts=10, ends=9)
    with pytest.raises(EventRejected, match="ends_at: the order ends after occurred_at, after "
                                            "starts_at"):
        parse_event_object(end)
    assert parse([chart.pred("p1", 1, 60, starts=10, ends=11)])
