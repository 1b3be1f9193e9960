"""alert.v1, alert-action.v1 and deadletter.v1 models enforce their contracts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from imnm_common.contracts import AlertAction, AlertTransition, DeadLetter

NOW = datetime(2025, 5, 1, 12, tzinfo=UTC)


def action(**fields: object) -> AlertAction:
    base: dict[str, object] = {
        "action_id": "act-1", "alert_id": "al-1", "patient_id": "MRN-1",
        "action": "acknowledge", "reason": "addressed", "user": "pharm1", "at": NOW,
    }
    return AlertAction.model_validate({**base, **fields})


def test_snooze_needs_a_future_end() -> None:
    assert action(action="snooze", snooze_until=NOW + timedelta(days=1)).snooze_until
    with pytest.raises(ValidationError, match="snooze_until: required"):
        action(action="snooze")
    with pytest.raises(ValidationError, match="must be after"):
        action(action="snooze", snooze_until=NOW - timedelta(hours=1))
    with pytest.raises(ValidationError, match="only allowed"):
        action(snooze_until=NOW + timedelta(days=1))


def test_override_for_other_reason_needs_a_comment() -> None:
    with pytest.raises(ValidationError, match="comment"):
        action(action="override", reason="other")
    assert action(action="override", reason="other", comment="palliative care").comment


def test_action_reason_is_coded() -> None:
    with pytest.raises(ValidationError):
        action(reason="because")


def test_alert_summary_is_at_most_140_characters() -> None:
    fields: dict[str, object] = {
        "alert_id": "al-1", "patient_id": "MRN-1", "rule": "statin_active",
        "severity": "critical", "status": "open", "raised_at": NOW, "summary": "x" * 141,
        "detail": "d",
    }
    with pytest.raises(ValidationError, match="summary"):
        AlertTransition.model_validate(fields)
    fields["summary"] = "x" * 140
    alert = AlertTransition.model_validate(fields)
    assert alert.resolved_at is None and alert.evidence == []


def test_deadletter_offsets_are_non_negative() -> None:
    fields: dict[str, object] = {
        "reason": "malformed JSON", "reason_code": "bad_json", "payload": "{",
        "topic": "imnm.events.v1", "partition": 0, "offset": -1, "rejected_at": NOW,
    }
    with pytest.raises(ValidationError, match="offset"):
        DeadLetter.model_validate(fields)
