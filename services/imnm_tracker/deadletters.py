"""deadletter.v1 messages for input the tracker cannot use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from imnm_common.contracts.deadletter import DeadLetter, rejected_message
from imnm_tracker.records import SourceRecord

SERVICE = "imnm-tracker"

# Codes the tracker adds to those of EventRejected (bad_json, missing_field, ...).
KEY_MISMATCH = "key_mismatch"
PROCESSING_ERROR = "processing_error"


def utc_now() -> datetime:
    return datetime.now(UTC)


def dead_letter(
    record: SourceRecord,
    reason: str,
    reason_code: str,
    now: Callable[[], datetime] = utc_now,
) -> DeadLetter:
    """The rejected message with where it came from; ``rejected_at`` is wall-clock time."""
    return rejected_message(
        value=record.value, key=record.key, topic=record.topic, partition=record.partition,
        offset=record.offset, reason=reason, reason_code=reason_code, service=SERVICE,
        rejected_at=now(),
    )

