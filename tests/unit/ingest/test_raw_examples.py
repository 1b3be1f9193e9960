"""examples/raw, as `imnm send-raw` sends them: every message converts, and together they tell
the clinical story docs/ingest.md describes for MRN-2001, MRN-2002's taper written as one
FHIR order is judged step by step, MRN-2003's split dose by its daily total, and MRN-2004's
methylprednisolone pulse of 3 doses (HL7 v2 TQ1-14) ends before the prednisone that follows, and
MRN-2005's medication list on admission shows a home statin without doubling the home prednisone
the inpatient order continues."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from imnm_cli.ingest_cmds import split_fhir, split_hl7v2
from imnm_common.contracts.events import CanonicalEvent, LabResultEvent, MedicationOrderEvent
from imnm_common.service_layer.replay import Replay
from imnm_ingest.domain.fhir import events_from_fhir
from imnm_ingest.domain.hl7v2 import events_from_hl7v2

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "raw"


def converted() -> list[CanonicalEvent]:
    events: list[CanonicalEvent] = []
    for path in sorted(EXAMPLES.iterdir()):
        data = path.read_bytes()
        if path.suffix == ".hl7":
            for message in split_hl7v2(data):
                events += events_from_hl7v2(message)
        else:
            assert path.name.endswith(".fhir.json"), path
            for message in split_fhir(data):
                events += events_from_fhir(message)
    return events


def test_every_example_converts_and_tells_the_story() -> None:
    events = converted()
    assert {e.patient_id for e in events} == {
        "MRN-2001", "MRN-2002", "MRN-2003", "MRN-2004", "MRN-2005"}
    assert len({e.event_id for e in events}) == len(events)
    bound = [e for e in events if isinstance(e, LabResultEvent) and e.comparator]
    assert [(e.value, e.comparator) for e in bound] == [(20000.0, ">")]

    replay = Replay()
    transitions = [t for e in sorted(events, key=lambda e: e.occurred_at)
                   for t in replay.feed(e)]
    transitions += list(replay.finish(datetime(2025, 3, 10, tzinfo=UTC).timestamp()))
    opened = {t.rule for t in transitions if t.status == "open"}
    assert {"statin_active", "methotrexate_dose_above_range"} <= opened
    # 30 tablets of 2.5 mg (RXO-18/19) weekly: 75 mg, a tenfold error
    [methotrexate] = [t for t in transitions if t.rule == "methotrexate_dose_above_range"]
    assert methotrexate.summary.startswith("Methotrexate 75 mg per dose"), methotrexate.summary
    # prednisone 1 mg/kg at the FHIR body weight of 72 kg: 72 mg/day for 28 days, no prophylaxis
    [pjp] = [t for t in transitions
             if t.rule == "pjp_prophylaxis_missing" and t.patient_id == "MRN-2001"]  # 2025-02-07
    assert pjp.detail.startswith("Glucocorticoid 72 mg/day prednisone-equivalent")
    assert "fhir:Observation/wt-2001/1" in pjp.evidence
    # MRN-2002: prednisone 60 mg for 28 days, then 40, 30, 20, 15 and 10 mg, in one order
    [taper] = [e for e in events if isinstance(e, MedicationOrderEvent) and e.dose_schedule]
    assert taper.patient_id == "MRN-2002"
    assert [s.dose.value for s in taper.dose_schedule or [] if s.dose] == [40, 30, 20, 15, 10]
    [too_fast] = [t for t in transitions if t.rule == "taper_too_fast"]
    assert too_fast.patient_id == "MRN-2002" and too_fast.raised_at == datetime(
        2025, 3, 3, 11, tzinfo=UTC)
    # MRN-2003: prednisone 15 mg every morning and 10 mg at night, one order: 25 mg/day, so
    # Pneumocystis prophylaxis is due after 28 days (the morning dose alone is below 20 mg/day)
    [split] = [t for t in transitions
               if t.rule == "pjp_prophylaxis_missing" and t.patient_id == "MRN-2003"]
    assert split.detail.startswith("Glucocorticoid 25 mg/day prednisone-equivalent"), split
    assert split.raised_at == datetime(2025, 2, 10, 11, tzinfo=UTC)
    # MRN-2004: methylprednisolone 1000 mg daily, 3 doses, then prednisone 60 mg: the pulse
    # ended, so 60 mg/day now (read as open, 1,250 + 60 = 1,310 mg/day)
    [calcium] = [t for t in transitions
                 if t.rule == "calcium_vitamin_d_missing" and t.patient_id == "MRN-2004"]
    assert calcium.detail.startswith("Glucocorticoid 60 mg/day prednisone-equivalent now")
    # MRN-2005: the medication list on admission (MedicationStatements) names atorvastatin,
    # prednisone 20 mg and calcium with vitamin D; the inpatient order continues the prednisone
    listed = [t for t in transitions if t.patient_id == "MRN-2005" and t.status == "open"]
    [home_statin] = [t for t in listed if t.rule == "statin_active"]
    assert home_statin.summary.startswith("Statin on the medication list (atorvastatin")
    assert home_statin.raised_at == datetime(2025, 1, 20, 9, tzinfo=UTC)  # when the list said so
    [pjp_listed] = [t for t in listed if t.rule == "pjp_prophylaxis_missing"]
    assert pjp_listed.detail.startswith("Glucocorticoid 20 mg/day prednisone-equivalent now")
    assert not [t for t in listed if t.rule == "calcium_vitamin_d_missing"]  # taken at home
