"""The ingest converters' share of `make bench`: how fast raw HL7 v2 and FHIR messages become
events.v1. One run per process (``python -m bench.ingest_step STREAM``), printing one JSON line.

The benchmark's stream is written back as raw messages (:mod:`bench.raw_messages`, outside the
timing): labs as ORU^R01 and Observations, orders as RDE^O11 and MedicationRequests, diagnoses as
Conditions (FHIR only); muscle assessments have no raw form. Then every HL7 message, and
separately every FHIR message, goes through the real converter, as ``imnm ingest`` calls it.

A round trip is counted, not asserted: each converted event is compared with the event it was
written from, field by field on what the tracker reads (patient, instant, type; for labs loinc,
value, value text, unit, reference high, status; for orders status, medication, dose, frequency,
route; for diagnoses condition, status, antibody, statin-associated).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.raw_messages import fhir_for, hl7v2_for
from imnm_common.contracts.events import CanonicalEvent, parse_event_object
from imnm_ingest.domain.conversion import ConversionRejected
from imnm_ingest.domain.fhir import events_from_fhir
from imnm_ingest.domain.hl7v2 import events_from_hl7v2

WARM_UP = 20  # messages converted before the clock starts (imports, first-call caches)
EXAMPLES = 3

_FIELDS = {
    "lab_result": ("loinc", "value", "comparator", "value_text", "unit", "reference_high",
                   "status"),
    "medication_order": ("status", "medication", "dose", "frequency", "route"),
    "diagnosis": ("condition", "status", "antibody", "statin_associated"),
    "muscle_assessment": ("instrument", "score"),
}
_HOURS = {"h": 1.0, "d": 24.0, "wk": 168.0}


def _clinical(event: CanonicalEvent, name: str) -> Any:
    value = getattr(event, name)
    if name == "frequency" and value is not None and value.unit in _HOURS:
        # Q24H comes back as once a day: the same frequency, compared in hours
        return {"times": value.times, "period_hours": value.period * _HOURS[value.unit]}
    if name == "statin_associated":
        return bool(value)  # read from free text: only "statin-associated" is ever said
    if hasattr(value, "model_dump"):  # medication, dose
        return value.model_dump(exclude_none=True)
    return value


def round_trip_differences(source: CanonicalEvent, converted: CanonicalEvent) -> list[str]:
    """The clinical fields in which a converted event differs from its source event."""
    differences = []
    for name in ("patient_id", "event_type"):
        if getattr(source, name) != getattr(converted, name):
            differences.append(f"{name} {getattr(source, name)!r} -> "
                               f"{getattr(converted, name)!r}")
    if source.occurred_at != converted.occurred_at:  # aware datetimes: the same instant
        differences.append(f"occurred_at {source.occurred_at.isoformat()} -> "
                           f"{converted.occurred_at.isoformat()}")
    if source.event_type == converted.event_type:
        for name in _FIELDS[source.event_type]:
            before, after = _clinical(source, name), _clinical(converted, name)
            if before != after:
                differences.append(f"{name} {before!r} -> {after!r}")
    return differences


def _convert_all(
    messages: Sequence[bytes], convert: Callable[[bytes], list[CanonicalEvent]]
) -> tuple[list[list[CanonicalEvent] | ConversionRejected], float]:
    for raw in messages[:WARM_UP]:
        with contextlib.suppress(ConversionRejected):
            convert(raw)
    results: list[list[CanonicalEvent] | ConversionRejected] = []
    started = time.perf_counter()
    for raw in messages:
        try:
            results.append(convert(raw))
        except ConversionRejected as rejected:
            results.append(rejected)
    return results, time.perf_counter() - started


def measure(
    sources: Sequence[CanonicalEvent], messages: Sequence[bytes],
    convert: Callable[[bytes], list[CanonicalEvent]],
) -> dict[str, Any]:
    """Convert ``messages`` (``messages[i]`` written from ``sources[i]``), timed, then check."""
    results, seconds = _convert_all(messages, convert)
    events = rejected = mismatches = 0
    first_rejection: str | None = None
    examples: list[str] = []
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, ConversionRejected):
            rejected += 1
            first_rejection = first_rejection or f"{source.event_id}: {result.reason}"
            continue
        events += len(result)
        if len(result) == 1:
            differences = round_trip_differences(source, result[0])
        else:
            differences = [f"{len(result)} events from one message"]
        if differences:
            mismatches += 1
            if len(examples) < EXAMPLES:
                examples.append(f"{source.event_id}: {'; '.join(differences)}")
    return {
        "messages": len(messages),
        "events": events,
        "rejected": rejected,
        "first_rejection": first_rejection,
        "seconds": round(seconds, 4),
        "messages_per_second": round(len(messages) / seconds) if seconds else 0,
        "events_per_second": round(events / seconds) if seconds else 0,
        "round_trip_mismatches": mismatches,
        "mismatch_examples": examples,
    }


def main(stream: Path) -> dict[str, Any]:
    with stream.open("rb") as lines:
        sources = [parse_event_object(json.loads(line)) for line in lines if line.strip()]
    hl7_sources: list[CanonicalEvent] = []
    hl7_messages: list[bytes] = []
    fhir_sources: list[CanonicalEvent] = []
    fhir_messages: list[bytes] = []
    for number, source in enumerate(sources):
        hl7 = hl7v2_for(source, f"BENCH{number:08d}")
        if hl7 is not None:
            hl7_sources.append(source)
            hl7_messages.append(hl7)
        fhir = fhir_for(source)
        if fhir is not None:
            fhir_sources.append(source)
            fhir_messages.append(fhir)
    return {
        "source_events": len(sources),
        "hl7v2": measure(hl7_sources, hl7_messages, events_from_hl7v2),
        "fhir": measure(fhir_sources, fhir_messages, events_from_fhir),
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
