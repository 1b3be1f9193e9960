"""A taper written as one order: ``dose_schedule`` steps and ``ends_at``.

The reference is the same taper written the way the engine always understood it, one order
version per step at the step's time: a schedule must give the same alerts at the same times,
whatever the order of delivery allows and whether or not the state is stored in between.
"""

from __future__ import annotations

import random

import orjson
import pytest
from domain_chart import Chart, drive, iso, opened, parse, replay, rows, ts

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.events import EventRejected, parse_event_object
from imnm_common.domain import engine
from imnm_common.domain.state import PatientState
from imnm_demo.generator import (
    StreamSpec,
    generate_lines,
    with_orders_as_schedules,
    with_weight_based_doses,
)

PJP = "pjp_prophylaxis_missing"
CAD = "calcium_vitamin_d_missing"

# prednisone 60 mg/day for two weeks, then down by steps to 5 mg, every 14 days
TAPER = [(14.0, 40.0), (28.0, 30.0), (42.0, 20.0), (56.0, 15.0), (70.0, 10.0), (84.0, 5.0)]


def _course(c: Chart, *, as_schedule: bool, ends: float | None = None) -> None:
    """An IMNM course on ``TAPER``, with the results that make the rules speak (CK rising in the
    taper, no prophylaxis for the first weeks)."""
    c.dx(0)
    if as_schedule:
        c.pred("pred-1", 0, 60, steps=TAPER, ends=ends)
    else:
        c.pred("pred-1", 0, 60)
        for day, mg in TAPER:
            c.pred("pred-1", day, mg)
        if ends is not None:
            c.stop("pred-1", ends, status="completed")
    c.rx("mtx-1", 3, "methotrexate", dose=15, times=1, period=1, per="wk")
    for day, value in ((1, 4200), (29, 900), (57, 700), (75, 2400)):
        c.ck(day, value, reference_high=200)
    c.rx("smx-1", 35, "trimethoprim-sulfamethoxazole")
    c.mmt8(2, 120)
    c.mmt8(60, 135)
    c.events.sort(key=lambda event: str(event["occurred_at"]))  # delivered in time order


def _seen(transitions: list[AlertTransition]) -> list[tuple[object, ...]]:
    return [(*row, t.summary) for row, t in zip(rows(transitions), transitions, strict=True)]


@pytest.mark.parametrize("ends", [None, 98.0])
@pytest.mark.parametrize("roundtrip", [False, True])
def test_a_schedule_alerts_as_the_same_steps_ordered_one_by_one(
    ends: float | None, roundtrip: bool
) -> None:
    scheduled, stepped = Chart(), Chart()
    _course(scheduled, as_schedule=True, ends=ends)
    _course(stepped, as_schedule=False, ends=ends)
    expected = _seen(replay(stepped.events, 200))
    assert {row[0] for row in expected} >= {PJP, CAD, "taper_relapse_risk"}  # rules spoke
    assert _seen(replay(scheduled.events, 200, roundtrip_state=roundtrip)) == expected


def test_the_engine_verbs_take_a_step_at_its_own_time() -> None:
    c = Chart()
    c.dx(0)
    c.pred("pred-1", 0, 60, steps=TAPER)
    c.ck(29, 900, reference_high=200)
    state, _ = drive(c.events, 45)
    versions = state.orders["pred-1"].versions
    assert [(v.at, v.prednisone_equivalent_mg_per_day) for v in versions] == [
        (ts(0), 60.0), (ts(14), 40.0), (ts(28), 30.0), (ts(42), 20.0)
    ]
    assert {v.event_id for v in versions} == {c.events[1]["event_id"]}  # the order event's
    assert [v.at for v in state.orders["pred-1"].schedule] == [ts(d) for d, _ in TAPER[3:]]
    assert state.next_step_at == ts(56)
    assert engine.next_due(state) is not None and engine.next_due(state) <= ts(56)


def test_without_the_schedule_the_induction_dose_would_be_taken_to_last() -> None:
    """The gap this closes: 60 mg for two weeks, then 10 mg. Read as 60 mg for ever, the
    Pneumocystis rule fired at day 28 for a patient on 10 mg."""
    def events(steps: list[tuple[float, float]]) -> list[dict[str, object]]:
        c = Chart()
        c.dx(0)
        c.pred("pred-1", 0, 60, steps=steps)
        return c.events

    assert opened(replay(events([]), 60), PJP)
    assert not opened(replay(events([(14.0, 10.0)]), 60), PJP)


def test_a_step_resolves_an_alert_on_its_own_day_with_nothing_else_happening() -> None:
    """No event and no other due time near day 50: the step itself is what the clock stops at."""
    c = Chart()
    c.dx(0)
    c.pred("pred-1", 0, 60, steps=[(35, 40), (50, 10)])
    assert rows(replay(c.events, 80), PJP) == [(PJP, "open", 28.0, None),
                                              (PJP, "resolved", 28.0, 50.0)]


def test_ends_at_completes_the_order() -> None:
    c = Chart()
    c.dx(0)
    c.pred("pred-1", 0, 30, ends=10)
    state, transitions = drive(c.events, 40)
    assert not opened(transitions, CAD)  # 2.5 mg/day for 14 days never held
    last = state.orders["pred-1"].latest
    assert (last.at, last.status) == (ts(10), "completed")
    c2 = Chart()
    c2.dx(0)
    c2.pred("pred-1", 0, 30)
    assert opened(replay(c2.events, 40), CAD)


def test_a_later_order_event_replaces_the_rest_of_the_schedule() -> None:
    c = Chart()
    c.dx(0)
    c.pred("pred-1", 0, 60, steps=[(14, 40), (28, 20)])
    c.pred("pred-1", 20, 50)  # the taper abandoned: back up, no schedule
    state, _ = drive(c.events, 60)
    order = state.orders["pred-1"]
    assert [(v.at, v.prednisone_equivalent_mg_per_day) for v in order.versions] == [
        (ts(0), 60.0), (ts(14), 40.0), (ts(20), 50.0)
    ]
    assert order.schedule == () and state.next_step_at is None


def test_an_order_event_delivered_after_later_steps_were_taken_replaces_them() -> None:
    """Delivered late, but later than the order event whose schedule it replaces: it wins from
    its own time on, as in order, and the steps taken after it go."""
    c = Chart()
    c.dx(0)
    c.pred("pred-1", 0, 60, steps=[(14, 40), (28, 20)])
    c.ck(30, 150, reference_high=200)  # the clock passes both steps
    late = c.pred("pred-1", 20, 50)
    state, _ = drive(c.events, 60)
    in_order, _ = drive([c.events[0], c.events[1], late, c.events[2]], 60)
    assert state.orders["pred-1"].versions == in_order.orders["pred-1"].versions
    assert [v.at for v in state.orders["pred-1"].versions] == [ts(0), ts(14), ts(20)]


def test_an_order_event_older_than_the_latest_order_event_stays_stale() -> None:
    c = Chart()
    c.dx(0)
    c.pred("pred-1", 10, 60, steps=[(20, 40)])
    c.pred("pred-1", 5, 50)  # older than the version that carries the schedule
    state, _ = drive(c.events, 30)
    assert [v.at for v in state.orders["pred-1"].versions] == [ts(10), ts(20)]


def test_a_stored_state_keeps_its_pending_steps() -> None:
    c = Chart()
    c.dx(0)
    c.pred("pred-1", 0, 60, steps=TAPER, ends=98)
    state, _ = drive(c.events, 30)
    restored = PatientState.from_bytes(state.to_bytes())
    assert restored.orders["pred-1"].schedule == state.orders["pred-1"].schedule
    assert restored.orders["pred-1"].ordered_at == ts(0)
    assert restored.next_step_at == ts(42)
    readable = restored.to_dict()["orders"]["pred-1"]
    assert readable["schedule"][0]["prednisone_equivalent_mg_per_day"] == 20.0


def test_an_order_without_a_schedule_is_stored_as_before() -> None:
    c = Chart()
    c.dx(0)
    c.pred("pred-1", 0, 60)
    state, _ = drive(c.events, 3)
    assert len(orjson.loads(state.to_bytes())[5][0]) == 6  # the format 6 row: nothing added


def test_a_stopped_order_has_no_schedule() -> None:
    c = Chart()
    c.dx(0)
    c.pred("pred-1", 0, 60, steps=[(14, 40)], status="stopped")
    state, _ = drive(c.events, 30)
    assert state.orders["pred-1"].schedule == () and len(state.orders["pred-1"].versions) == 1


def test_weight_based_steps_are_converted_with_the_weight_at_their_time() -> None:
    c = Chart()
    c.dx(0)
    c.weight(0, 60)
    c.rx("pred-1", 0, "prednisone", dose=1, unit="mg/kg", steps=[(14, 0.5)])
    c.weight(10, 80)
    state, _ = drive(c.events, 20)
    mg = [v.prednisone_equivalent_mg_per_day for v in state.orders["pred-1"].versions]
    assert mg == [60.0, 40.0]


def test_schedule_out_of_order_is_rejected_with_a_reason() -> None:
    c = Chart()
    raw = c.pred("pred-1", 10, 60, steps=[(20, 40), (15, 30)])
    with pytest.raises(EventRejected, match=r"dose_schedule\.1\.starts_at"):
        parse_event_object(raw)
    raw = c.pred("pred-1", 10, 60, steps=[(10, 40)])
    with pytest.raises(EventRejected, match=r"dose_schedule\.0\.starts_at"):
        parse_event_object(raw)
    raw = c.pred("pred-1", 10, 60, steps=[(20, 40)], ends=20)
    with pytest.raises(EventRejected, match="ends_at: the order ends after"):
        parse_event_object(raw)
    raw = c.pred("pred-1", 10, 60, steps=[(11 + i, 40) for i in range(53)])
    with pytest.raises(EventRejected, match="dose_schedule"):
        parse_event_object(raw)
    raw = c.pred("pred-1", 10, 60, steps=[(20, 40)])
    raw["dose_schedule"][0]["starts_at"] = iso(20).replace("Z", "")
    with pytest.raises(EventRejected, match="offset"):
        parse_event_object(raw)
    assert len(parse([c.pred("pred-1", 10, 60, steps=[(11 + i, 40) for i in range(52)])])) == 1


def _without_evidence(transitions: list[AlertTransition]) -> list[dict[str, object]]:
    return [t.model_dump(mode="json", exclude={"evidence"}) for t in transitions]


@pytest.mark.parametrize(("spec", "weighed"), [
    (StreamSpec(patients=20, seed=11), False),
    (StreamSpec(patients=8, days=3 * 365, renew_every_days=90, seed=5), False),  # settling
    (StreamSpec(patients=20, seed=13, bad_fraction=0.02), True),  # mg/kg steps, bad lines
])
def test_a_generated_history_written_as_schedules_alerts_the_same(
    spec: StreamSpec, weighed: bool
) -> None:
    """Every run of an order's active versions written ahead as one event's schedule (and a
    completed version as its end): the same transitions in the same order, but for the
    evidence, with every state stored and read back after every event."""
    lines = list(generate_lines(spec))
    if weighed:
        lines = with_weight_based_doses(lines, random.Random(spec.seed), unweighed_fraction=0.2)
    scheduled = with_orders_as_schedules(lines)
    assert len(scheduled) < len(lines)  # the stream did change: steps and ends written ahead
    assert any("dose_schedule" in line for line in scheduled)
    assert any("ends_at" in line for line in scheduled)
    valid = [orjson.loads(line) for line in lines if _parses(line)]
    valid_scheduled = [orjson.loads(line) for line in scheduled if _parses(line)]
    expected = _without_evidence(replay(valid, 2000))
    assert len(expected) > 50
    assert _without_evidence(replay(valid_scheduled, 2000, roundtrip_state=True)) == expected


def _parses(line: str) -> bool:
    try:
        parse_event_object(orjson.loads(line))
    except (EventRejected, orjson.JSONDecodeError):
        return False
    return True
