"""Builders for the console tests: alert transitions as the tracker sends them, pharmacist
actions as the console records them. Plain functions, so hypothesis tests can use them too."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from imnm_common.contracts.actions import AlertAction
from imnm_common.contracts.alerts import AlertTransition
from imnm_common.domain.rules import RULES
from imnm_console.adapters.store import Received
from imnm_console.domain.worklist import AlertCard, take_action

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
RAISED = datetime(2026, 3, 2, 8, 15, tzinfo=UTC)
RESOLVED = datetime(2026, 3, 8, 14, 0, tzinfo=UTC)
TOPIC = "imnm.alert.v1"

_offsets = itertools.count()
_action_ids = itertools.count(1)


def opened(
    alert_id: str = "al-statin_active-P-001-0001",
    *,
    patient_id: str = "P-001",
    rule: str = "statin_active",
    severity: str | None = None,
    raised_at: datetime = RAISED,
    summary: str = "Atorvastatin 40 mg daily is active in statin-associated IMNM",
    detail: str = (
        "Atorvastatin 40 mg PO daily (order ord-17) has been active since 2026-03-02; "
        "anti-HMGCR antibodies positive on 2026-02-20."
    ),
    evidence: tuple[str, ...] = ("ev-med-17", "ev-lab-4"),
    suggestions: tuple[str, ...] = ("Discontinue the statin permanently",),
    references: tuple[str, ...] | None = None,
) -> AlertTransition:
    """The "open" transition of one alert, with the fields the tracker fills in."""
    assert rule in RULES, rule
    info = RULES[rule][0]
    return AlertTransition(
        alert_id=alert_id, patient_id=patient_id, rule=rule,
        severity=severity or info.severity, status="open", raised_at=raised_at,
        resolved_at=None, summary=summary, detail=detail, evidence=list(evidence),
        suggestions=list(suggestions),
        references=list(info.references if references is None else references),
    )


def resolved(open_transition: AlertTransition, at: datetime = RESOLVED) -> AlertTransition:
    """The "resolved" transition of the same alert: same identity, summary and evidence,
    a resolution text in ``detail`` and no suggestions (as the tracker's engine sends it)."""
    resolution = RULES[open_transition.rule][0].resolution
    return open_transition.model_copy(update={
        "status": "resolved", "resolved_at": at, "suggestions": [],
        "detail": f"Resolved on {at:%Y-%m-%d}: {resolution}.",
    })


def received(topic: str = TOPIC, partition: int = 0) -> Received:
    return Received(topic, partition, next(_offsets))


def batch(*transitions: AlertTransition) -> list[tuple[AlertTransition, Received]]:
    return [(t, received()) for t in transitions]


def action(
    target: AlertTransition | AlertCard,
    kind: str = "acknowledge",
    *,
    at: datetime = NOW,
    user: str = "pharm.jdoe",
    reason: str = "addressed",
    comment: str = "",
    snooze_until: datetime | None = None,
    action_id: str | None = None,
) -> AlertAction:
    data: dict[str, Any] = {
        "action_id": action_id or f"act-{next(_action_ids):06d}",
        "alert_id": target.alert_id, "patient_id": target.patient_id,
        "action": kind, "reason": reason, "comment": comment, "user": user, "at": at,
        "snooze_until": snooze_until,
    }
    if kind == "snooze" and snooze_until is None:
        data["snooze_until"] = at + timedelta(hours=24)
    return AlertAction.model_validate(data)


def act_on(store: Any, alert_id: str, kind: str = "acknowledge", **options: Any) -> AlertAction:
    """Take ``kind`` on a stored alert the way the action service does; the action taken."""
    card = store.get(alert_id)
    taken = action(card, kind, **options)
    store.record_action(take_action(card, taken), taken, NOW)
    return taken
