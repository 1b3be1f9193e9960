"""The worklist's verbs: record an alert transition, decide whether a pharmacist's action is
allowed, and say where an alert sits in the work. No I/O and no clock: ``now`` is an argument.

An alert's *status* belongs to the tracker (open until the rule stops holding); its *work state*
belongs to the pharmacy (what was done about it). A resolved alert leaves the worklist whatever
was done, and a new episode of the same finding is a new alert id, so it starts unworked.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from imnm_common.contracts.actions import AlertAction
from imnm_common.contracts.alerts import AlertTransition


class WorkState(StrEnum):
    NEEDS_ACTION = "needs_action"
    ACKNOWLEDGED = "acknowledged"
    OVERRIDDEN = "overridden"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


_BY_ACTION = {"acknowledge": WorkState.ACKNOWLEDGED, "override": WorkState.OVERRIDDEN}
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}  # the worklist: critical first


@dataclass(frozen=True, slots=True)
class AlertCard:
    """What the console knows of one alert: the tracker's side and the last action on it."""

    alert_id: str
    patient_id: str
    rule: str
    severity: str
    status: str  # "open" | "resolved", the tracker's word
    raised_at: datetime
    summary: str
    detail: str  # why it fired (from the "open" transition)
    evidence: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    resolved_at: datetime | None = None
    resolution: str = ""  # the "resolved" transition's detail
    last_action: str | None = None  # "acknowledge" | "override" | "snooze"
    last_action_by: str | None = None
    snooze_until: datetime | None = None
    seen: frozenset[str] = field(default_factory=frozenset)  # statuses received

    def work_state(self, now: datetime) -> WorkState:
        if self.status == "resolved":
            return WorkState.RESOLVED
        if self.last_action == "snooze":
            snoozed = self.snooze_until is not None and now < self.snooze_until
            return WorkState.SNOOZED if snoozed else WorkState.NEEDS_ACTION
        if self.last_action in _BY_ACTION:
            return _BY_ACTION[self.last_action]
        return WorkState.NEEDS_ACTION


class TransitionOutcome(StrEnum):
    NEW = "new"  # first word on this alert
    UPDATED = "updated"  # the other status of a known alert
    DUPLICATE = "duplicate"  # (alert_id, status) already recorded: redelivery or replay


def record_transition(
    card: AlertCard | None, transition: AlertTransition
) -> tuple[AlertCard, TransitionOutcome]:
    """The card after ``transition``. Subscribers de-duplicate on (alert_id, status), so a
    redelivered or replayed transition changes nothing, and a "resolved" that overtook its
    "open" (another partition history, a replayed topic) still ends resolved."""
    if card is None:
        return _card_from(transition), TransitionOutcome.NEW
    if card.alert_id != transition.alert_id:
        raise ValueError("transition belongs to another alert")
    if transition.status in card.seen:
        return card, TransitionOutcome.DUPLICATE
    seen = card.seen | {transition.status}
    if transition.status == "resolved":
        return replace(
            card, status="resolved", resolved_at=transition.resolved_at,
            resolution=transition.detail, seen=seen,
        ), TransitionOutcome.UPDATED
    # the "open" after its "resolved": the why-it-fired text arrives, the status stays
    return replace(
        card, detail=transition.detail, suggestions=tuple(transition.suggestions), seen=seen
    ), TransitionOutcome.UPDATED


def _card_from(t: AlertTransition) -> AlertCard:
    opened = t.status == "open"
    return AlertCard(
        alert_id=t.alert_id,
        patient_id=t.patient_id,
        rule=t.rule,
        severity=t.severity,
        status=t.status,
        raised_at=t.raised_at,
        summary=t.summary,
        detail=t.detail if opened else "",
        evidence=tuple(t.evidence),
        suggestions=tuple(t.suggestions) if opened else (),
        references=tuple(t.references),
        resolved_at=t.resolved_at,
        resolution="" if opened else t.detail,
        seen=frozenset({t.status}),
    )


class ActionRefused(Exception):
    """An action the worklist cannot take; ``reason`` says why, for the pharmacist."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def take_action(card: AlertCard, action: AlertAction) -> AlertCard:
    """The card after a pharmacist's ``action`` (already valid as alert-action.v1)."""
    if action.alert_id != card.alert_id or action.patient_id != card.patient_id:
        raise ActionRefused("the action names another alert or patient")
    if card.status == "resolved":
        when = f" on {card.resolved_at:%Y-%m-%d}" if card.resolved_at else ""
        raise ActionRefused(f"the alert was resolved{when}: there is nothing left to act on")
    return replace(
        card,
        last_action=action.action,
        last_action_by=action.user,
        snooze_until=action.snooze_until,
    )

