"""AlertStore on SQLite: transitions in batches, actions, the worklist and its SQL filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from console_builders import (
    NOW,
    RAISED,
    RESOLVED,
    TOPIC,
    act_on,
    action,
    batch,
    opened,
    received,
    resolved,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel

from imnm_console.adapters.store import AlertStore
from imnm_console.domain.worklist import (
    AlertCard,
    TransitionOutcome,
    WorkState,
    record_transition,
    take_action,
)

NEW, UPDATED, DUPLICATE = (TransitionOutcome.NEW, TransitionOutcome.UPDATED,
                           TransitionOutcome.DUPLICATE)


def _three_alerts() -> list:
    return [
        opened("al-statin_active-P-001-0001"),
        opened("al-pjp_prophylaxis_missing-P-001-0001", rule="pjp_prophylaxis_missing",
               summary="No PJP prophylaxis on prednisone 60 mg/day for 5 weeks"),
        opened("al-ck_monitoring_overdue-P-002-0001", patient_id="P-002",
               rule="ck_monitoring_overdue", summary="No creatine kinase result for 6 weeks"),
    ]


# ------------------------------------------------------------------ transitions
def test_apply_transitions_records_a_batch(store: AlertStore) -> None:
    alerts = _three_alerts()
    outcomes = store.apply_transitions(batch(*alerts), NOW)
    assert outcomes == [NEW, NEW, NEW]
    for t in alerts:
        card = store.get(t.alert_id)
        assert card is not None
        assert (card.patient_id, card.rule, card.status) == (t.patient_id, t.rule, "open")
        assert card.summary == t.summary
        assert card.evidence == tuple(t.evidence)
        assert card.references == tuple(t.references)
        assert card.raised_at == RAISED
        assert card.raised_at.utcoffset() == timedelta(0)
        rows = store.transitions_of(t.alert_id)
        assert [(r.status, r.topic) for r in rows] == [("open", TOPIC)]
    assert store.get("al-unknown") is None


def test_redelivered_batch_gives_duplicates_and_no_new_rows(store: AlertStore) -> None:
    alerts = _three_alerts()
    first = batch(*alerts)
    store.apply_transitions(first, NOW)
    before = {t.alert_id: store.get(t.alert_id) for t in alerts}
    offsets = {t.alert_id: [r.offset for r in store.transitions_of(t.alert_id)]
               for t in alerts}

    outcomes = store.apply_transitions(first, NOW + timedelta(minutes=5))
    assert outcomes == [DUPLICATE, DUPLICATE, DUPLICATE]
    for t in alerts:
        assert store.get(t.alert_id) == before[t.alert_id]
        assert [r.offset for r in store.transitions_of(t.alert_id)] == offsets[t.alert_id]


def test_redelivery_keeps_the_action_taken_in_between(store: AlertStore) -> None:
    t = opened()
    store.apply_transitions(batch(t), NOW)
    act_on(store, t.alert_id, "override", reason="clinically_appropriate")
    assert store.apply_transitions(batch(t), NOW) == [DUPLICATE]
    assert store.get(t.alert_id).last_action == "override"


def test_open_and_resolved_of_one_alert_in_one_batch(store: AlertStore) -> None:
    t = opened()
    outcomes = store.apply_transitions(batch(t, resolved(t), t), NOW)
    assert outcomes == [NEW, UPDATED, DUPLICATE]
    card = store.get(t.alert_id)
    assert card.status == "resolved"
    assert card.resolved_at == RESOLVED
    assert card.detail == t.detail
    assert card.seen == frozenset({"open", "resolved"})
    assert [r.status for r in store.transitions_of(t.alert_id)] == ["open", "resolved"]


def test_resolved_overtaking_open_in_one_batch(store: AlertStore) -> None:
    t = opened()
    outcomes = store.apply_transitions(batch(resolved(t), t), NOW)
    assert outcomes == [NEW, UPDATED]
    card = store.get(t.alert_id)
    expected, _ = record_transition(None, t)
    expected, _ = record_transition(expected, resolved(t))
    assert card == expected


def test_transition_rows_keep_where_they_came_from(store: AlertStore) -> None:
    t = opened()
    store.apply_transitions([(t, received("imnm.alert.v1", 3))], NOW)
    (row,) = store.transitions_of(t.alert_id)
    assert (row.status, row.topic, row.partition) == ("open", "imnm.alert.v1", 3)
    assert row.received_at == NOW


# ------------------------------------------------------------------ worklist
def _seed_worklist(store: AlertStore) -> None:
    store.apply_transitions(batch(
        opened("al-info-old", rule="calcium_vitamin_d_missing", raised_at=RAISED),
        opened("al-warn-new", rule="ck_monitoring_overdue", patient_id="P-002",
               raised_at=RAISED + timedelta(days=3)),
        opened("al-crit-new", raised_at=RAISED + timedelta(days=2), patient_id="P-003"),
        opened("al-warn-old", rule="pjp_prophylaxis_missing",
               raised_at=RAISED + timedelta(hours=1)),
        opened("al-crit-old", raised_at=RAISED + timedelta(days=1)),
    ), NOW)


def _ids(cards: list[AlertCard]) -> list[str]:
    return [c.alert_id for c in cards]


def test_worklist_orders_critical_first_then_oldest(store: AlertStore) -> None:
    _seed_worklist(store)
    page = store.worklist(WorkState.NEEDS_ACTION, NOW)
    assert page.total == 5
    assert _ids(page.cards) == [
        "al-crit-old", "al-crit-new", "al-warn-old", "al-warn-new", "al-info-old",
    ]


def test_worklist_pages_with_limit_and_offset(store: AlertStore) -> None:
    _seed_worklist(store)
    first = store.worklist(None, NOW, limit=2)
    second = store.worklist(None, NOW, limit=2, offset=2)
    last = store.worklist(None, NOW, limit=2, offset=4)
    beyond = store.worklist(None, NOW, limit=2, offset=10)
    assert _ids(first.cards) == ["al-crit-old", "al-crit-new"]
    assert _ids(second.cards) == ["al-warn-old", "al-warn-new"]
    assert _ids(last.cards) == ["al-info-old"]
    assert beyond.cards == []
    assert {first.total, second.total, last.total, beyond.total} == {5}


def test_worklist_filters(store: AlertStore) -> None:
    _seed_worklist(store)
    act_on(store, "al-crit-old", "acknowledge")
    store.apply_transitions(batch(resolved(opened("al-info-old",
                                                  rule="calcium_vitamin_d_missing"))), NOW)

    by_state = store.worklist(WorkState.ACKNOWLEDGED, NOW)
    assert (_ids(by_state.cards), by_state.total) == (["al-crit-old"], 1)
    assert _ids(store.worklist(WorkState.RESOLVED, NOW).cards) == ["al-info-old"]
    assert _ids(store.worklist(WorkState.NEEDS_ACTION, NOW).cards) == [
        "al-crit-new", "al-warn-old", "al-warn-new",
    ]
    assert _ids(store.worklist(None, NOW, rule="statin_active").cards) == [
        "al-crit-old", "al-crit-new",
    ]
    warning = store.worklist(None, NOW, severity="warning")
    assert (_ids(warning.cards), warning.total) == (["al-warn-old", "al-warn-new"], 2)
    assert _ids(store.worklist(None, NOW, patient_id="P-001").cards) == [
        "al-crit-old", "al-warn-old", "al-info-old",
    ]
    combined = store.worklist(WorkState.NEEDS_ACTION, NOW, rule="statin_active",
                              patient_id="P-003")
    assert (_ids(combined.cards), combined.total) == (["al-crit-new"], 1)
    assert store.worklist(None, NOW, patient_id="P-404").total == 0


def test_counts_per_work_state(store: AlertStore) -> None:
    _seed_worklist(store)
    assert store.counts(NOW) == {
        WorkState.NEEDS_ACTION: 5, WorkState.ACKNOWLEDGED: 0, WorkState.OVERRIDDEN: 0,
        WorkState.SNOOZED: 0, WorkState.RESOLVED: 0,
    }
    for alert_id, kind in (("al-crit-old", "acknowledge"), ("al-warn-old", "override"),
                           ("al-warn-new", "snooze")):
        until = NOW + timedelta(hours=4) if kind == "snooze" else None
        act_on(store, alert_id, kind, snooze_until=until)
    store.apply_transitions(batch(resolved(opened("al-crit-new"))), NOW)
    assert store.counts(NOW) == {
        WorkState.NEEDS_ACTION: 1, WorkState.ACKNOWLEDGED: 1, WorkState.OVERRIDDEN: 1,
        WorkState.SNOOZED: 1, WorkState.RESOLVED: 1,
    }
    later = store.counts(NOW + timedelta(hours=4))  # the snooze has expired
    assert later[WorkState.SNOOZED] == 0
    assert later[WorkState.NEEDS_ACTION] == 2


# ------------------------------------------------------------------ actions
def test_action_round_trip_with_aware_utc_datetimes(store: AlertStore) -> None:
    t = opened()
    store.apply_transitions(batch(t), NOW)
    paris = timezone(timedelta(hours=1))
    at = datetime(2026, 3, 10, 10, 45, 12, 345678, tzinfo=paris)
    until = at + timedelta(hours=24)
    snooze = action(t, "snooze", at=at, snooze_until=until, action_id="act-snooze-1",
                    comment="waiting for the rheumatologist", reason="prescriber_contacted")
    card = take_action(store.get(t.alert_id), snooze)
    store.record_action(card, snooze, NOW)

    found = store.find_action("act-snooze-1")
    assert found == snooze
    assert found.at.utcoffset() == timedelta(0)
    assert found.at == datetime(2026, 3, 10, 9, 45, 12, 345678, tzinfo=UTC)
    assert found.snooze_until.utcoffset() == timedelta(0)
    assert found.snooze_until == until
    assert store.find_action("act-nope") is None

    stored = store.get(t.alert_id)
    assert stored.last_action == "snooze"
    assert stored.last_action_by == "pharm.jdoe"
    assert stored.snooze_until == until
    assert stored.work_state(at + timedelta(hours=1)) is WorkState.SNOOZED


def test_actions_of_lists_an_alerts_actions_in_time_order(store: AlertStore) -> None:
    t, other = opened(), opened("al-statin_active-P-002-0001", patient_id="P-002")
    store.apply_transitions(batch(t, other), NOW)
    late = action(t, "acknowledge", at=NOW + timedelta(hours=2), action_id="act-late")
    early = action(t, "snooze", at=NOW, action_id="act-early")
    elsewhere = action(other, "override", reason="not_applicable", action_id="act-else")
    for act in (late, early, elsewhere):
        alert_card = store.get(act.alert_id)
        store.record_action(take_action(alert_card, act), act, NOW)

    assert store.actions_of(t.alert_id) == [early, late]
    assert store.actions_of(other.alert_id) == [elsewhere]
    assert store.actions_of("al-unknown") == []


def test_record_action_on_an_unknown_alert_raises(store: AlertStore) -> None:
    t = opened("al-never-received")
    card, _ = record_transition(None, t)
    taken = action(t)
    with pytest.raises(KeyError, match="al-never-received"):
        store.record_action(card, taken, NOW)
    assert store.find_action(taken.action_id) is None
    assert store.actions_of("al-never-received") == []


# ------------------------------------------------------------------ the SQL twin
_OFFSETS = st.sampled_from([timedelta(0), timedelta(hours=2), timedelta(hours=-5)])


@st.composite
def _card_plans(draw: st.DrawFn) -> dict:
    """What happens to one alert: resolved or not, and its last action (a snooze ending before,
    at or after ``NOW``, in any time zone)."""
    last = draw(st.sampled_from([None, "acknowledge", "override", "snooze"]))
    until = None
    if last == "snooze":
        seconds = draw(st.one_of(st.just(0), st.integers(-7 * 86400, 7 * 86400)))
        until = (NOW + timedelta(seconds=seconds)).astimezone(timezone(draw(_OFFSETS)))
    return {
        "resolved": draw(st.booleans()),
        "resolved_first": draw(st.booleans()),
        "last": last,
        "until": until,
        "severity": draw(st.sampled_from(["critical", "warning", "info"])),
    }


def _check_the_sql_twin(store: AlertStore, plans: list[dict]) -> None:
    expected: dict[str, AlertCard] = {}
    for i, plan in enumerate(plans):
        t = opened(f"al-prop-{i:03d}", patient_id=f"P-{i:03d}",
                   severity=plan["severity"], raised_at=RAISED + timedelta(minutes=i))
        store.apply_transitions(batch(t), NOW)
        card, _ = record_transition(None, t)
        if plan["last"] is not None:
            until = plan["until"]
            at = NOW - timedelta(days=8) if until is None else until - timedelta(hours=1)
            act = action(t, plan["last"], at=at, snooze_until=until)
            card = take_action(card, act)
            store.record_action(card, act, NOW)
        if plan["resolved"]:
            store.apply_transitions(batch(resolved(t)), NOW)
            card, _ = record_transition(card, resolved(t))
        expected[t.alert_id] = card

    for alert_id, card in expected.items():
        assert store.get(alert_id) == card
    counts = store.counts(NOW)
    for state in WorkState:
        want = {a for a, c in expected.items() if c.work_state(NOW) == state}
        page = store.worklist(state, NOW, limit=100)
        assert {c.alert_id for c in page.cards} == want, state
        assert page.total == len(want)
        assert counts[state] == len(want)
    assert sum(counts.values()) == len(expected)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_card_plans(), max_size=10))
def test_sql_work_state_filter_matches_the_domain(plans: list[dict]) -> None:
    store = AlertStore("sqlite://")
    try:
        _check_the_sql_twin(store, plans)
    finally:
        store.close()


@pytest.mark.integration
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(plans=st.lists(_card_plans(), max_size=10))
def test_sql_work_state_filter_matches_the_domain_on_postgresql(
    postgres_database: str, plans: list[dict]
) -> None:
    """The same on PostgreSQL (NULL, CASE and time-zone comparisons are the dialect's own);
    one database for the test, emptied before each example."""
    store = AlertStore(postgres_database)
    try:
        with store.engine.begin() as connection:
            for table in reversed(SQLModel.metadata.sorted_tables):
                connection.execute(table.delete())
        _check_the_sql_twin(store, plans)
    finally:
        store.close()
