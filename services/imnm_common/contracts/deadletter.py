"""deadletter.v1: a rejected input message with the reason and where it came from."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    reason: str = Field(description="Why it was rejected, naming the field.")
    reason_code: str = Field(
        description="Short category, also the metrics label: bad_json, not_an_object, "
        "missing_field, unknown_event_type, bad_timestamp, schema_violation, out_of_range, "
        "invalid_value, implausible_value (events.v1 validation), key_mismatch (message key "
        "missing or not the event's patient_id), processing_error (an unexpected failure while "
        "applying a valid event; the patient's state is left as before the message); "
        "from imnm-console (alert.v1 input): bad_json, schema_violation; from imnm-ingest (raw "
        "HL7 v2 / FHIR): not_parseable, unsupported_message, missing_field, invalid_field, "
        "invalid_event (converted, but not valid events.v1)."
    )
    payload: str = Field(description="The original message value (UTF-8, or base64).")
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    key: str | None = None
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    rejected_at: AwareDatetime = Field(description="Wall-clock time of the rejection.")
    service: str = Field(
        default="imnm-tracker", description="Who rejected it: imnm-tracker, imnm-console or "
        "imnm-ingest."
    )


def payload_field(value: bytes | None) -> tuple[str, Literal["utf-8", "base64"]]:
    """``payload`` and ``payload_encoding`` for a rejected message value."""
    if value is None:
        return "", "utf-8"
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        # Not text: keep it byte for byte so the integration team sees what was sent.
        return base64.b64encode(value).decode("ascii"), "base64"


def rejected_message(
    *,
    value: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    reason_code: str,
    service: str,
    rejected_at: datetime,
) -> DeadLetter:
    """The dead letter of one consumed message: its bytes, its key and where it was read."""
    payload, encoding = payload_field(value)
    return DeadLetter(
        reason=reason, reason_code=reason_code, payload=payload, payload_encoding=encoding,
        key=None if key is None else bytes(key).decode("utf-8", errors="replace"),
        topic=topic, partition=partition, offset=offset, rejected_at=rejected_at,
        service=service,
    )
