"""Wire contracts: pydantic v2 models are the single source of truth for ``schemas/``."""

from imnm_common.contracts.actions import AlertAction
from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.deadletter import DeadLetter
from imnm_common.contracts.events import (
    CanonicalEvent,
    DiagnosisEvent,
    EventRejected,
    LabResultEvent,
    MedicationOrderEvent,
    MuscleAssessmentEvent,
    parse_event,
    parse_event_object,
)

__all__ = [
    "AlertAction",
    "AlertTransition",
    "CanonicalEvent",
    "DeadLetter",
    "DiagnosisEvent",
    "EventRejected",
    "LabResultEvent",
    "MedicationOrderEvent",
    "MuscleAssessmentEvent",
    "parse_event",
    "parse_event_object",
]
