"""alert.v1: one message per alert transition (opened or resolved), keyed by ``patient_id``.

``alert_id`` is deterministic (patient, rule, episode), so the same history yields the same ids in
every replay, restart and worker: subscribers de-duplicate on ``(alert_id, status)``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Severity = Literal["info", "warning", "critical"]
AlertStatus = Literal["open", "resolved"]


class AlertTransition(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    alert_id: str = Field(min_length=1, max_length=64)
    patient_id: str = Field(min_length=1, max_length=64)
    rule: str = Field(min_length=1, max_length=64)
    severity: Severity
    status: AlertStatus
    raised_at: AwareDatetime = Field(description="Clinical time the condition became true.")
    resolved_at: AwareDatetime | None = Field(
        default=None, description="Clinical time it stopped holding; null while open."
    )
    summary: str = Field(max_length=140)
    detail: str = Field(description="Why, in clinical terms: doses, dates, numbers compared.")
    evidence: list[str] = Field(default_factory=list, description="event_ids behind the alert.")
    suggestions: list[str] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)
