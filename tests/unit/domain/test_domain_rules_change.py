"""A site changes its rules configuration (a threshold, a rule switched off): every patient
judged under the old one is judged again, every rule, when next advanced. What no longer holds
resolves; what holds now opens; what held under both stays as it is."""

from __future__ import annotations

from domain_chart import Chart, Row, drive, rows, ts

from imnm_common.domain import engine
from imnm_common.domain.config import DEFAULT_RULES_CONFIG, RulesConfig
from imnm_common.domain.state import PatientState

STATIN_OFF = RulesConfig.model_validate({"statin_active": {"enabled": False}})
PJP_AT_10 = RulesConfig.model_validate({"pjp_prophylaxis_missing": {"min_mg_per_day": 10}})


def judged(chart: Chart, day: float) -> tuple[PatientState, list[Row]]:
    state, transitions = drive(chart.events, day)
    return state, rows(transitions)


def statin_patient() -> Chart:
    chart = Chart()
    chart.dx(0)
    chart.rx("atorva", 1, "atorvastatin", dose=40)
    return chart


def test_switching_a_rule_off_resolves_its_open_alerts() -> None:
    state, before = judged(statin_patient(), 5)
    assert before == [("statin_active", "open", 1.0, None)]
    assert state.judged_under == engine.rules_fingerprint(DEFAULT_RULES_CONFIG)
    after = rows(engine.advance(state, ts(6), STATIN_OFF))
    # judged again when the change is first seen: the alert was open until then
    assert after == [("statin_active", "resolved", 1.0, 6.0)]
    assert state.judged_under == engine.rules_fingerprint(STATIN_OFF)
    assert engine.advance(state, ts(7), STATIN_OFF) == []  # once


def test_a_lower_threshold_opens_what_now_holds() -> None:
    chart = Chart()
    chart.dx(0)
    chart.pred("p", 0, 15)  # 15 mg/day for 60 days: below 20, above 10
    state, before = judged(chart, 60)
    assert [r for r in before if r[0] == "pjp_prophylaxis_missing"] == []
    after = rows(engine.advance(state, ts(61), PJP_AT_10))
    assert ("pjp_prophylaxis_missing", "open", 28.0, None) in after


def test_the_same_configuration_judges_nothing_again() -> None:
    state, _ = judged(statin_patient(), 5)
    assert engine.rules_fingerprint(RulesConfig()) == engine.rules_fingerprint(
        DEFAULT_RULES_CONFIG)
    assert engine.advance(state, ts(6), RulesConfig()) == []
    assert state.pending_at is None and state.dirty_rules == []


def test_a_state_from_before_fingerprints_is_judged_once_and_changes_nothing() -> None:
    state, _ = judged(statin_patient(), 5)
    state.judged_under = None  # as format 4 states were stored
    older = PatientState.from_bytes(state.to_bytes())
    assert engine.advance(older, ts(6)) == []  # the statin alert holds under both
    assert older.judged_under == engine.rules_fingerprint(DEFAULT_RULES_CONFIG)
    assert list(older.open_alerts) == list(state.open_alerts)


def test_an_event_after_the_change_judges_everything_at_its_close() -> None:
    chart = statin_patient()
    state, _ = judged(chart, 5)
    chart.ck(8, 900)  # reads only CK rules, but the configuration changed since day 5
    event = chart.parsed()[-1]
    transitions = engine.advance(state, ts(8), STATIN_OFF, inclusive=False)
    transitions += engine.apply(state, event, STATIN_OFF).transitions
    transitions += engine.advance(state, ts(8), STATIN_OFF)
    assert rows(transitions) == [("statin_active", "resolved", 1.0, 8.0)]


def test_an_alert_opened_on_an_event_alone_is_judged_again_too() -> None:
    chart = statin_patient()
    state = engine.new_state(chart.patient_id)
    opened = [t for event in chart.parsed() for t in engine.apply(state, event).transitions]
    assert [t.rule for t in opened] == ["statin_active"]  # immediate: no advance yet
    # the order's instant had not closed: it closes under the configuration in force now
    assert rows(engine.advance(state, ts(3), STATIN_OFF)) == [
        ("statin_active", "resolved", 1.0, 1.0)]
    assert engine.advance(state, ts(4), STATIN_OFF) == []
