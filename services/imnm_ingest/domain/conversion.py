"""What every converter shares: the rejection it raises and the last step, validation.

A converter builds plain events.v1 objects and hands them to :func:`canonical`, which validates
them with exactly the rules the tracker applies to events.v1 input; a converted event that would
be dead-lettered by the tracker is rejected here instead, with the source message's coordinates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from imnm_common.contracts.events import CanonicalEvent, EventRejected, parse_event_object
from imnm_common.domain.knowledge import PERIOD_DAYS


class ConversionRejected(ValueError):
    """A raw message that cannot become events.v1; ``reason`` names the segment/field or the
    FHIR element (``OBX-3: ...``, ``Observation.subject: ...``); ``code`` is a short,
    label-safe category for metrics."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


# Codes a converter uses (the metrics label of a rejection):
NOT_PARSEABLE = "not_parseable"  # not HL7 ER7 / not FHIR JSON at all
UNSUPPORTED = "unsupported_message"  # a message or resource type we do not convert
MISSING_FIELD = "missing_field"  # a field the event needs is absent
INVALID_FIELD = "invalid_field"  # present but unusable (bad timestamp, bad number, ...)
INVALID_EVENT = "invalid_event"  # converted, but not a valid events.v1 event


def put_present(event: dict[str, Any], **fields: Any) -> None:
    """Add to ``event`` the fields that are not None (events.v1 omits absent optional fields)."""
    event.update({k: v for k, v in fields.items() if v is not None})


def days_between_administrations(frequency: dict[str, Any]) -> float:
    """An events.v1 frequency as days from one administration to the next (FHIR period / times,
    as the rules read it: twice a day is 0.5, "7 per 1 wk" is 1)."""
    return float(frequency["period"]) * PERIOD_DAYS[frequency["unit"]] / frequency["times"]


def administrations_a_day(frequency: dict[str, Any]) -> float:
    """How many times a day an events.v1 frequency gives (0 for a period of no length)."""
    days = days_between_administrations(frequency)
    return 1.0 / days if days > 0 else 0.0


def daily_frequency(a_day: float) -> dict[str, Any] | None:
    """``a_day`` administrations as an events.v1 frequency, or None when it is not a whole
    number (events.v1 counts ``times`` in whole administrations)."""
    if abs(a_day - round(a_day)) >= 1e-9:
        return None
    return {"times": round(a_day), "period": 1.0, "unit": "d"}


def canonical(objects: Iterable[dict[str, Any]], where: str = "") -> list[CanonicalEvent]:
    """Validate converted events; the first invalid one rejects the whole message (a message
    is converted entirely or not at all, so a correction never lands half-applied)."""
    events: list[CanonicalEvent] = []
    for obj in objects:
        try:
            events.append(parse_event_object(obj))
        except EventRejected as rejected:
            prefix = f"{where}: " if where else ""
            raise ConversionRejected(
                f"{prefix}converted event {obj.get('event_id')!r} is not valid events.v1: "
                f"{rejected.reason}", INVALID_EVENT,
            ) from None
    return events
