"""The worklist's pure verbs: recording transitions, taking actions, the work state."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from console_builders import NOW, RAISED, RESOLVED, action, opened, resolved
from hypothesis import given
from hypothesis import strategies as st

from imnm_console.domain.worklist import (
    ActionRefused,
    AlertCard,
    TransitionOutcome,
    WorkState,
    record_transition,
    take_action,
)


def _open_card() -> AlertCard:
    card, _ = record_transition(None, opened())
    return card


def _resolved_card() -> AlertCard:
    card, _ = record_transition(_open_card(), resolved(opened()))
    return card


# ------------------------------------------------------------------ record_transition
def test_first_open_transition_makes_a_new_open_card() -> None:
    t = opened()
    card, outcome = record_transition(None, t)
    assert outcome is TransitionOutcome.NEW
    assert card.alert_id == t.alert_id
    assert card.patient_id == "P-001"
    assert card.rule == "statin_active"
    assert card.severity == "critical"
    assert card.status == "open"
    assert card.raised_at == RAISED
    assert card.detail == t.detail
    assert card.evidence == ("ev-med-17", "ev-lab-4")
    assert card.suggestions == ("Discontinue the statin permanently",)
    assert card.references == tuple(t.references)
    assert card.resolved_at is None
    assert card.resolution == ""
    assert card.last_action is None
    assert card.seen == frozenset({"open"})
    assert card.work_state(NOW) is WorkState.NEEDS_ACTION


def test_redelivered_open_is_a_duplicate_and_changes_nothing() -> None:
    card = _open_card()
    again, outcome = record_transition(card, opened())
    assert outcome is TransitionOutcome.DUPLICATE
    assert again == card


def test_redelivered_open_keeps_the_action_taken_in_between() -> None:
    card = take_action(_open_card(), action(opened(), "acknowledge"))
    again, outcome = record_transition(card, opened())
    assert outcome is TransitionOutcome.DUPLICATE
    assert again.last_action == "acknowledge"
    assert again.work_state(NOW) is WorkState.ACKNOWLEDGED


def test_resolved_after_open_updates_the_card() -> None:
    t = opened()
    card, outcome = record_transition(_open_card(), resolved(t))
    assert outcome is TransitionOutcome.UPDATED
    assert card.status == "resolved"
    assert card.resolved_at == RESOLVED
    assert card.resolution.startswith("Resolved on 2026-03-08: ")
    assert card.detail == t.detail  # why it fired is kept
    assert card.seen == frozenset({"open", "resolved"})


def test_redelivered_resolved_is_a_duplicate() -> None:
    card = _resolved_card()
    again, outcome = record_transition(card, resolved(opened()))
    assert outcome is TransitionOutcome.DUPLICATE
    assert again == card
    again, outcome = record_transition(card, opened())
    assert outcome is TransitionOutcome.DUPLICATE
    assert again == card


def test_resolved_before_open_ends_resolved_with_the_why_text_of_the_open() -> None:
    t = opened()
    first, outcome = record_transition(None, resolved(t))
    assert outcome is TransitionOutcome.NEW
    assert first.status == "resolved"
    assert first.detail == ""
    assert first.suggestions == ()
    assert first.resolution.startswith("Resolved on 2026-03-08")

    card, outcome = record_transition(first, t)
    assert outcome is TransitionOutcome.UPDATED
    assert card.status == "resolved"
    assert card.resolved_at == RESOLVED
    assert card.detail == t.detail
    assert card.suggestions == tuple(t.suggestions)
    assert card.resolution == first.resolution
    assert card.work_state(NOW) is WorkState.RESOLVED


def test_transition_of_another_alert_is_refused() -> None:
    other = opened("al-statin_active-P-002-0001", patient_id="P-002")
    with pytest.raises(ValueError, match="another alert"):
        record_transition(_open_card(), other)


# ------------------------------------------------------------------ take_action
def test_action_on_a_resolved_alert_is_refused_naming_the_date() -> None:
    with pytest.raises(ActionRefused) as refused:
        take_action(_resolved_card(), action(opened(), "acknowledge"))
    assert "resolved" in refused.value.reason
    assert "2026-03-08" in refused.value.reason


def test_action_naming_another_patient_is_refused() -> None:
    foreign = opened(patient_id="P-999")
    with pytest.raises(ActionRefused, match="another alert or patient"):
        take_action(_open_card(), action(foreign))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("acknowledge", WorkState.ACKNOWLEDGED), ("override", WorkState.OVERRIDDEN)],
)
def test_action_sets_the_last_action_and_who(kind: str, expected: WorkState) -> None:
    card = take_action(_open_card(), action(opened(), kind, user="pharm.asmith"))
    assert card.last_action == kind
    assert card.last_action_by == "pharm.asmith"
    assert card.snooze_until is None
    assert card.status == "open"
    assert card.work_state(NOW) is expected


def test_snooze_sets_snooze_until() -> None:
    until = NOW + timedelta(hours=72)
    card = take_action(_open_card(), action(opened(), "snooze", snooze_until=until))
    assert card.last_action == "snooze"
    assert card.last_action_by == "pharm.jdoe"
    assert card.snooze_until == until


def test_a_later_action_replaces_an_earlier_snooze() -> None:
    snoozed = take_action(_open_card(), action(opened(), "snooze"))
    card = take_action(snoozed, action(opened(), "acknowledge", user="pharm.other"))
    assert card.last_action == "acknowledge"
    assert card.last_action_by == "pharm.other"
    assert card.snooze_until is None
    assert card.work_state(NOW + timedelta(minutes=1)) is WorkState.ACKNOWLEDGED


# ------------------------------------------------------------------ work_state
def test_snooze_holds_until_it_expires() -> None:
    until = NOW + timedelta(hours=4)
    card = take_action(_open_card(), action(opened(), "snooze", snooze_until=until))
    assert card.work_state(NOW) is WorkState.SNOOZED
    assert card.work_state(until - timedelta(microseconds=1)) is WorkState.SNOOZED
    assert card.work_state(until) is WorkState.NEEDS_ACTION
    assert card.work_state(until + timedelta(days=1)) is WorkState.NEEDS_ACTION


@pytest.mark.parametrize("kind", ["acknowledge", "override", "snooze"])
def test_resolved_wins_over_any_action(kind: str) -> None:
    card = take_action(_open_card(), action(opened(), kind))
    card, _ = record_transition(card, resolved(opened()))
    assert card.last_action == kind  # the history is kept
    assert card.work_state(NOW) is WorkState.RESOLVED


def test_resolved_wins_over_unknown_state_fields() -> None:
    card = replace(_open_card(), status="resolved", last_action="snooze",
                   snooze_until=NOW + timedelta(days=1))
    assert card.work_state(NOW) is WorkState.RESOLVED


# ------------------------------------------------------------------ property
_texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@st.composite
def _transition_sequences(draw: st.DrawFn) -> tuple[list[int], tuple]:
    """An open/resolved pair of one alert and a sequence of indices (0 open, 1 resolved)
    holding both, with repeats, in any order."""
    t = opened(
        draw(st.from_regex(r"al-[a-z0-9\-]{1,61}", fullmatch=True)),
        patient_id=draw(st.from_regex(r"P-[0-9]{3,6}", fullmatch=True)),
        rule=draw(st.sampled_from(["statin_active", "pjp_prophylaxis_missing",
                                   "ck_monitoring_overdue", "taper_too_fast"])),
        raised_at=RAISED + timedelta(minutes=draw(st.integers(0, 10_000))),
        summary=draw(_texts),
        detail=draw(_texts),
        evidence=tuple(draw(st.lists(st.from_regex(r"ev-[0-9]{1,5}", fullmatch=True),
                                     max_size=3))),
        suggestions=tuple(draw(st.lists(_texts, max_size=2))),
    )
    r = resolved(t, t.raised_at + timedelta(hours=draw(st.integers(0, 500))))
    extra = draw(st.lists(st.integers(0, 1), max_size=6))
    order = draw(st.permutations([0, 1, *extra]))
    return list(order), (t, r)


@given(_transition_sequences())
def test_any_delivery_order_ends_as_open_then_resolved(
    case: tuple[list[int], tuple],
) -> None:
    order, pair = case
    expected, _ = record_transition(None, pair[0])
    expected, _ = record_transition(expected, pair[1])

    card: AlertCard | None = None
    outcomes = []
    for index in order:
        card, outcome = record_transition(card, pair[index])
        outcomes.append(outcome)
    assert card == expected
    assert outcomes.count(TransitionOutcome.NEW) == 1
    assert outcomes.count(TransitionOutcome.UPDATED) == 1
    assert outcomes.count(TransitionOutcome.DUPLICATE) == len(order) - 2
