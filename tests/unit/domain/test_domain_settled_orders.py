"""Settling old orders (engine.settle_orders): a patient treated for years keeps a bounded state,
and no transition changes because of it."""

from __future__ import annotations

import random

import orjson
import pytest
from domain_chart import Chart, fingerprint, iso, parse, replay, ts
from pydantic import ValidationError

from imnm_common.domain import engine
from imnm_common.domain.config import RulesConfig
from imnm_common.domain.picture import therapy_intervals
from imnm_common.domain.state import PatientState
from imnm_common.service_layer.replay import Replay
from imnm_demo.generator import StreamSpec, delivered_out_of_order, generate_lines

NEVER_SETTLE = RulesConfig(order_history_days=100_000)
YEARS = 6


def years_of_maintenance(chart: Chart, years: int = YEARS) -> float:
    """Monthly IVIG and prednisone renewals tapered to a maintenance dose, quarterly methotrexate
    renewals, a monthly CK and a quarterly MMT-8; a statin restarted once by mistake. Returns the
    last day."""
    chart.dx(0, antibody="anti-HMGCR", statin_associated=True)
    # treatment began with azathioprine alone: the treatment span starts there, not at day 1
    chart.rx("aza", -40, "azathioprine", dose=150)
    chart.rx("aza", 100, "azathioprine", dose=150, status="stopped")
    chart.rx("pjp", 0, "Bactrim SS", dose=1, unit="tablet")
    chart.rx("pjp", 60, "Bactrim SS", dose=1, unit="tablet", status="stopped")
    dose, previous = 60.0, None
    month = 0
    for month, day in enumerate(range(1, 365 * years, 28), start=1):
        if previous is not None:
            chart.stop(previous, day)
        dose = max(5.0, round(dose * 0.85, 1))
        previous = f"pred-{month}"
        chart.pred(previous, day, dose)
        chart.rx(f"ivig-{month}", day + 1, "IVIG", dose=140, unit="g", per=None, route="IV")
        chart.rx(f"ivig-{month}", day + 3, "IVIG", dose=140, unit="g", per=None, route="IV",
                 status="completed")
        if not 40 <= month <= 44:  # CK missed for a while: "overdue ... treatment since"
            chart.ck(day + 2, 320.0, reference_high=200.0)
        if month % 3 == 0:
            chart.mmt8(day + 2, 140.0)
        if month % 3 == 1:
            if month > 1:
                chart.rx(f"mtx-{month - 3}", day, "methotrexate", dose=20, per="wk",
                         status="stopped")
            chart.rx(f"mtx-{month}", day, "methotrexate", dose=20, per="wk")
        if month == 30:
            chart.rx("statin", day, "atorvastatin 40 mg", dose=40)
            chart.rx("statin", day + 5, "atorvastatin 40 mg", dose=40, status="stopped")
    return float(28 * month + 5)


def _final_state(events: list[dict[str, object]], config: RulesConfig) -> PatientState:
    r = Replay(config)
    for line in events:
        list(r.feed_lines([orjson.dumps(line)]))
    return r.states["MRN-1"]


def test_years_of_treatment_give_the_same_transitions_with_a_bounded_state(chart: Chart) -> None:
    last_day = years_of_maintenance(chart)
    settled = replay(chart.events, last_day)
    kept = replay(chart.events, last_day, NEVER_SETTLE)
    assert fingerprint(settled) == fingerprint(kept)
    assert any(t.rule == "statin_active" for t in settled)
    assert any(t.rule == "pjp_prophylaxis_missing" for t in settled)  # quotes the course start
    overdue = [t for t in settled if t.rule == "ck_monitoring_overdue" and t.status == "open"]
    assert overdue[-1].raised_at.timestamp() > ts(40 * 28)
    assert f"treatment since {iso(-40)[:10]}" in overdue[-1].detail

    long_state = _final_state(chart.events, engine.DEFAULT_RULES_CONFIG)
    full_state = _final_state(chart.events, NEVER_SETTLE)
    assert long_state.settled is not None and full_state.settled is None
    assert len(full_state.orders) > 150
    assert len(long_state.orders) < 50  # about 400 days of orders, not six years
    assert not any(slot.startswith("statin_active:") for slot in long_state.last_resolved)
    assert len(long_state.to_bytes()) < len(full_state.to_bytes()) / 2


def test_settled_summaries_keep_the_course_and_the_cover_history(chart: Chart) -> None:
    last_day = years_of_maintenance(chart, years=3)
    state = _final_state(chart.events, engine.DEFAULT_RULES_CONFIG)
    settled = state.settled
    assert settled is not None
    assert settled.before <= ts(last_day) - 400 * 86_400
    # azathioprine from day -40, then prednisone without a break: one span from day -40
    assert settled.therapy_spans[0][0] == ts(-40)
    assert settled.glucocorticoid_steps[0] == (ts(1), 60.0 * 0.85)
    assert settled.glucocorticoid_steps[-1][1] == 0.0  # settled orders count no longer
    assert settled.stopped_counting_at["pjp_prophylaxis"] == ts(60)
    for order in state.orders.values():  # what is kept still counted after the horizon
        assert order.latest.in_force or any(
            end > settled.before for _, end in therapy_intervals(order, float("inf")))


def test_settled_state_round_trips_and_the_earlier_format_is_still_read(chart: Chart) -> None:
    years_of_maintenance(chart, years=3)
    state = _final_state(chart.events, engine.DEFAULT_RULES_CONFIG)
    assert PatientState.from_bytes(state.to_bytes()).to_bytes() == state.to_bytes()

    earlier = orjson.loads(PatientState(patient_id="MRN-9").to_bytes())
    earlier[0] = 3  # the format before settling had no summary element
    restored = PatientState.from_bytes(orjson.dumps(earlier[:-1]))
    assert restored.patient_id == "MRN-9" and restored.settled is None


def test_an_unknown_order_dated_before_the_horizon_is_stale(chart: Chart) -> None:
    years_of_maintenance(chart, years=3)
    state = _final_state(chart.events, engine.DEFAULT_RULES_CONFIG)
    assert state.settled is not None
    horizon_day = (state.settled.before - ts(0)) / 86_400
    late = Chart()
    before, after = parse([
        late.rx("statin-old", horizon_day - 10, "atorvastatin 40 mg", dose=40, eid="late-1"),
        late.rx("statin-new", horizon_day + 10, "atorvastatin 40 mg", dose=40, eid="late-2"),
    ])
    outcome = engine.apply(state, before, engine.DEFAULT_RULES_CONFIG)
    assert outcome.stale and "statin-old" not in state.orders
    # late but after the horizon: judged as ever (the statin alert opens at once)
    outcome = engine.apply(state, after, engine.DEFAULT_RULES_CONFIG)
    assert not outcome.stale and "statin-new" in state.orders
    assert [t.rule for t in outcome.transitions] == ["statin_active"]


def test_generated_years_of_renewed_orders_give_identical_transitions() -> None:
    spec = StreamSpec(patients=30, days=365 * 4, seed=11, renew_every_days=90)
    lines = [line.encode() for line in generate_lines(spec)]

    def run(config: RulesConfig) -> tuple[list[bytes], Replay]:
        r = Replay(config)
        out = [t.model_dump_json().encode() for t in r.feed_lines(lines)]
        out += [t.model_dump_json().encode() for t in r.finish()]
        return out, r

    settled, with_settling = run(engine.DEFAULT_RULES_CONFIG)
    kept, without = run(NEVER_SETTLE)
    assert settled == kept and len(settled) > 100
    assert with_settling.stats.stale_versions == 0
    orders_settled = sum(len(s.orders) for s in with_settling.states.values())
    orders_kept = sum(len(s.orders) for s in without.states.values())
    assert orders_settled < orders_kept / 2


def test_a_horizon_shorter_than_30_days_is_refused() -> None:
    with pytest.raises(ValidationError, match="order_history_days"):
        RulesConfig(order_history_days=10)
    assert RulesConfig(order_history_days=30).order_history_days == 30


def test_a_stop_delivered_after_the_horizon_passed_it_settles_its_order(chart: Chart) -> None:
    """An order's stop arriving over ``order_history_days`` late (a topic re-read after the
    seen-event window expired) ends the order before the horizon: it is settled in the same
    ``apply``, and the rules that read it are judged again. It used to raise a KeyError, which
    stopped `imnm replay` and dead-lettered the event in the tracker."""
    chart.dx(0)
    chart.pred("pred", 0, 60)
    chart.ck(500, 180.0)
    late_stop = chart.stop("pred", 10)
    events = parse(chart.events)
    state = engine.new_state("MRN-1")
    config = engine.DEFAULT_RULES_CONFIG
    for event in events[:-1]:
        engine.apply(state, event, config)
        engine.advance(state, event.occurred_at.timestamp(), config)
    assert "pjp_prophylaxis_missing" in {a.rule for a in state.open_alerts.values()}

    outcome = engine.apply(state, events[-1], config)
    assert not outcome.stale and not outcome.duplicate
    assert "pred" not in state.orders  # settled: it stopped before the horizon
    assert state.settled is not None and state.settled.before > ts(10)
    assert state.settled.stopped_counting_at["glucocorticoid"] == ts(10)
    resolved = engine.advance(state, ts(500), config)
    assert {t.rule for t in resolved if t.status == "resolved"} >= {"pjp_prophylaxis_missing"}
    assert late_stop["event_id"] in state.seen_event_ids


@pytest.mark.parametrize("seed", [3, 4])
def test_years_re_delivered_out_of_order_replay_to_the_end(seed: int) -> None:
    """Generated years of renewed orders with events re-delivered at random places in the
    stream (some years early or late, past the seen-event window): every line is accounted
    for, none raises."""
    spec = StreamSpec(patients=40, days=365 * 3, seed=seed, renew_every_days=90)
    lines = delivered_out_of_order(list(generate_lines(spec)), random.Random(seed),
                                   re_delivered_every=10)
    r = Replay()
    transitions = [*r.feed_lines(lines), *r.finish()]
    assert r.stats.read == len(lines) == r.stats.accepted + r.stats.duplicates
    assert r.stats.stale_versions > 0 and len(transitions) > 100


@pytest.mark.parametrize("seed", [8, 9, 11])
def test_a_restored_state_settles_and_judges_as_the_running_one(seed: int) -> None:
    """A tracker that restarted (states decoded from the changelog) and one that ran on (states
    in memory) must give the same transitions, also when events arrive years out of order and
    orders settle early. Settling once remembered, outside the stored state, the horizon it had
    checked: the restored state settled a late-stopped order the running one had not."""
    rng = random.Random(seed)
    spec = StreamSpec(patients=10, days=730, seed=seed, renew_every_days=60)
    lines = delivered_out_of_order(list(generate_lines(spec)), rng, re_delivered_every=10)
    config = RulesConfig(order_history_days=60, seen_event_ids_kept=256)

    def run(restore: bool) -> list[str]:
        replay = Replay(config)
        out: list[str] = []
        for line in lines:
            out += [t.model_dump_json() for t in replay.feed_lines([line])]
            if restore:
                for patient_id, state in replay.states.items():
                    replay.states[patient_id] = PatientState.from_bytes(state.to_bytes())
        out += [t.model_dump_json() for t in replay.finish()]
        return out

    running = run(restore=False)
    assert len(running) > 30
    assert run(restore=True) == running
