"""alert-action.v1: what a pharmacist did with an alert in the console, keyed by ``patient_id``."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

ActionReason = Literal[
    "addressed",
    "clinically_appropriate",
    "prescriber_contacted",
    "patient_declined",
    "not_applicable",
    "duplicate",
    "other",
]


class AlertAction(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    action_id: str = Field(min_length=1, max_length=128)
    alert_id: str = Field(min_length=1, max_length=64)
    patient_id: str = Field(min_length=1, max_length=64)
    action: Literal["acknowledge", "override", "snooze"]
    reason: ActionReason
    comment: str = Field(default="", max_length=2000)
    user: str = Field(min_length=1, max_length=128)
    at: AwareDatetime
    snooze_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _snooze_has_an_end(self) -> AlertAction:
        if self.action == "snooze" and self.snooze_until is None:
            raise ValueError("snooze_until: required when action is snooze")
        if self.action != "snooze" and self.snooze_until is not None:
            raise ValueError("snooze_until: only allowed when action is snooze")
        if self.snooze_until is not None and self.snooze_until <= self.at:
            raise ValueError("snooze_until: must be after at")
        if self.action == "override" and self.reason == "other" and not self.comment.strip():
            raise ValueError("comment: an override with reason 'other' needs a comment")
        return self
