"""A seeded, deterministic generator of realistic IMNM treatment histories as events.v1 dicts.

Each patient: an IMNM diagnosis (antibody mix as in published cohorts: mostly anti-HMGCR, then
anti-SRP, some seronegative), a prednisone course at ~1 mg/kg with a 10-20% taper every 4 weeks
(sometimes too fast), a steroid-sparing agent, supportive orders (PJP prophylaxis, calcium and
vitamin D, bisphosphonate) that are sometimes late or missing, creatine kinase every few weeks,
MMT-8 scores, IVIG or rituximab by antibody, the occasional statin left running or daily
methotrexate, and relapses during the taper. Same seed, same events, byte for byte.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from imnm_common.contracts.events import MAX_DOSE_STEPS
from imnm_common.domain.knowledge import DrugClass, recognise

Event = dict[str, Any]

STATINS = (("83367", "atorvastatin 40 mg tablet"), ("36567", "simvastatin 20 mg tablet"),
           ("301542", "Crestor 10 mg"), ("42463", "pravastatin 40 mg"))
SPARING = (("6851", "methotrexate 2.5 mg tablet", 20.0, "mg", 1, 1, "wk"),
           ("1256", "azathioprine 50 mg tablet", 150.0, "mg", 1, 1, "d"),
           ("68149", "mycophenolate mofetil 500 mg", 1000.0, "mg", 2, 1, "d"))


@dataclass(frozen=True, slots=True)
class StreamSpec:
    patients: int = 100
    days: int = 365
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    seed: int = 7
    id_prefix: str = "SYN"
    bad_fraction: float = 0.0  # malformed messages mixed in (demo of dead letters)
    # Long-term care: every this many days each order in force is renewed (stopped, and the
    # same prescription started under a new order id), as at a clinic visit or admission.
    renew_every_days: float | None = None


class _Patient:
    def __init__(self, spec: StreamSpec, index: int, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.patient_id = f"{spec.id_prefix}-{index:06d}"
        self.events: list[Event] = []
        self.counter = 0

    def at(self, day: float) -> str:
        moment = self.spec.start + timedelta(minutes=round(day * 1440))
        return moment.isoformat().replace("+00:00", "Z")

    def emit(self, day: float, event_type: str, **fields: Any) -> None:
        if day > self.spec.days:
            return
        self.counter += 1
        self.events.append({
            "event_id": f"{self.patient_id}-{self.counter:04d}",
            "patient_id": self.patient_id,
            "event_type": event_type,
            "occurred_at": self.at(day),
            "source": "synthetic",
            **fields,
        })

    def order(self, day: float, order_id: str, status: str, rxnorm: str | None, name: str,
              dose: float | None = None, unit: str = "mg", times: int = 1, period: float = 1,
              period_unit: str = "d", route: str = "oral") -> None:
        medication: dict[str, str] = {"name": name}
        if rxnorm:
            medication["rxnorm"] = rxnorm
        fields: dict[str, Any] = {"order_id": order_id, "status": status,
                                  "medication": medication, "route": route}
        if dose is not None:
            fields["dose"] = {"value": dose, "unit": unit}
            fields["frequency"] = {"times": times, "period": period, "unit": period_unit}
        self.emit(day, "medication_order", **fields)


def _history(p: _Patient) -> None:
    rng = p.rng
    onset = rng.uniform(0, 60)
    antibody = rng.choices(("anti-HMGCR", "anti-SRP", "seronegative"), (60, 25, 15))[0]
    statin_associated = antibody == "anti-HMGCR" and rng.random() < 0.7
    oid = 0

    def next_order() -> str:
        nonlocal oid
        oid += 1
        return f"{p.patient_id}-ORD{oid:03d}"

    # A statin from before the diagnosis: usually stopped within days, sometimes forgotten.
    if statin_associated or rng.random() < 0.1:
        rx, name = rng.choice(STATINS)
        statin = next_order()
        p.order(onset - rng.uniform(60, 400), statin, "active", rx, name, 40, "mg")
        if rng.random() < 0.93:
            p.order(onset + rng.uniform(0, 3), statin, "stopped", rx, name, 40, "mg")
    ck = rng.uniform(4000, 15000)
    p.emit(onset - 2, "lab_result", loinc="2157-6", value=round(ck), unit="U/L",
           reference_high=200, result_id=f"{p.patient_id}-CK0")
    if antibody != "seronegative":
        loinc = "93493-5" if antibody == "anti-HMGCR" else "33921-8"
        p.emit(onset - 1, "lab_result", loinc=loinc, value_text="positive")
    p.emit(onset, "diagnosis", condition="IMNM", antibody=antibody,
           statin_associated=statin_associated)

    # Glucocorticoid: optional methylprednisolone pulse, then prednisone ~1 mg/kg.
    day = onset
    if rng.random() < 0.1:
        pulse = next_order()
        p.order(day, pulse, "active", "6902", "methylprednisolone 1 g IV", 1000, "mg", route="IV")
        day += 3
        p.order(day, pulse, "completed", "6902", "methylprednisolone 1 g IV", 1000, "mg",
                route="IV")
    dose = float(rng.choice((40, 50, 60, 60, 70, 80)))
    pred = next_order()
    p.order(day, pred, "active", "8640", "prednisone", dose)
    # Steroid-sparing agent, sometimes late or missing; rare daily-methotrexate error.
    if rng.random() < 0.9:
        rx, name, sdose, unit, times, period, punit = rng.choice(SPARING)
        start = day + rng.choice((0, 0, 7, 14, 45))
        sparing = next_order()
        if rx == "6851" and rng.random() < 0.03:
            p.order(start, sparing, "active", rx, name, 15, unit, 1, 1, "d")
            p.order(start + rng.uniform(0.5, 4), sparing, "active", rx, name, sdose, unit,
                    times, period, punit)
        else:
            p.order(start, sparing, "active", rx, name, sdose, unit, times, period, punit)
    if antibody == "anti-HMGCR" and rng.random() < 0.3:
        for month in range(12):
            ivig = next_order()
            when = day + 7 + 30 * month
            p.order(when, ivig, "active", None, "IVIG 2 g/kg over 2 days", 140, "g", route="IV")
            p.order(when + 2, ivig, "completed", None, "IVIG 2 g/kg over 2 days", 140, "g",
                    route="IV")
    if antibody == "anti-SRP" and rng.random() < 0.3:
        for dose_day in (14, 28, 196, 210):
            rtx = next_order()
            p.order(day + dose_day, rtx, "completed", "121191", "rituximab 1000 mg IV", 1000,
                    "mg", route="IV")
    if rng.random() < 0.05:
        tac = next_order()
        p.order(day + 60, tac, "active", "42316", "tacrolimus 1 mg capsule", 2, "mg", 2, 1, "d")
        for month in range(1, 9):
            p.emit(day + 60 + 30 * month, "lab_result", loinc="11253-2",
                   value=round(rng.uniform(3.5, 12.0), 1), unit="ng/mL")
    # Supportive care, sometimes late or missing.
    if rng.random() < 0.8:
        p.order(day + rng.choice((0, 0, 3, 21, 45)), next_order(), "active", "10831",
                "Bactrim SS tablet", 1, "tablet")
    if rng.random() < 0.85:
        p.order(day + rng.choice((0, 2, 10, 30)), next_order(), "active", None,
                "calcium carbonate 600 mg + vitamin D3 400 IU", 1, "tablet", 2, 1, "d")
    if rng.random() < 0.6:
        p.order(day + rng.uniform(20, 120), next_order(), "active", "46041",
                "alendronate 70 mg", 70, "mg", 1, 1, "wk")

    # Taper: induction 4-8 weeks, then 10-20% every 4 weeks (1.5% of steps too fast).
    relapses = rng.random() < 0.15
    taper_day = day + rng.choice((28, 35, 42, 56))
    current = pred
    ck_level = ck
    relapse_done = False
    while dose > 5 and taper_day < p.spec.days:
        factor = rng.uniform(0.5, 0.65) if rng.random() < 0.015 else rng.uniform(0.8, 0.9)
        # Round up to a 2.5 mg tablet step so a planned 20% step never becomes 21%.
        new_dose = max(5.0, math.ceil(dose * factor / 2.5) * 2.5)
        if new_dose >= dose:
            new_dose = dose - 2.5
        if rng.random() < 0.5:
            p.order(taper_day, current, "active", "8640", "prednisone", new_dose)
        else:  # replacement order: stop + new at the same instant, in either order
            replacement = next_order()
            steps = [(current, "stopped", dose), (replacement, "active", new_dose)]
            if rng.random() < 0.5:
                steps.reverse()
            for order_id, status, mg in steps:
                p.order(taper_day, order_id, status, "8640", "prednisone", mg)
            current = replacement
        dose = new_dose
        if relapses and not relapse_done and dose < 30:
            relapse_done = True
            ck_level = rng.uniform(2500, 9000)
        taper_day += 28
    # CK every 2-6 weeks, falling with treatment; MMT-8 improving.
    ck_day = day + rng.uniform(10, 20)
    n = 0
    while ck_day < p.spec.days:
        n += 1
        ck_level = max(120.0, ck_level * rng.uniform(0.45, 0.9))
        p.emit(ck_day, "lab_result", loinc="2157-6", value=round(ck_level), unit="U/L",
               reference_high=200, result_id=f"{p.patient_id}-CK{n}")
        ck_day += rng.choice((14, 21, 21, 28, 28, 28, 28, 42))
    score = rng.uniform(70, 110)
    mmt_day = day + rng.uniform(0, 14)
    while mmt_day < p.spec.days:
        p.emit(mmt_day, "muscle_assessment", instrument="MMT8", score=round(score))
        score = min(150.0, score + rng.uniform(-4, 12))
        mmt_day += rng.choice((28, 42, 56, 84))


def _renew_orders(p: _Patient, every: float) -> None:
    """Renew each order in force every ``every`` days from the start: a stop of the current
    order and the same prescription under a new order id at that instant. Later versions of the
    renewed order (dose changes, its stop) go to its successor."""
    events = sorted(p.events, key=lambda e: e["occurred_at"])  # stable: same-instant order kept
    renewals = [p.at(every * k) for k in range(1, int(p.spec.days // every) + 1)]
    successor: dict[str, str] = {}  # original order id -> the order id now carrying it
    latest: dict[str, Event] = {}  # current order id -> its latest version
    renewed_count = 0
    out: list[Event] = []

    def renew(at: str) -> None:
        nonlocal renewed_count
        for order_id, version in list(latest.items()):
            if version["status"] not in ("active", "on-hold"):
                continue
            renewed_count += 1
            new_id = f"{p.patient_id}-RNW{renewed_count:03d}"
            for status, oid in (("stopped", order_id), ("active", new_id)):
                p.counter += 1
                out.append({**version, "event_id": f"{p.patient_id}-{p.counter:04d}",
                            "occurred_at": at, "order_id": oid, "status": status})
            del latest[order_id]
            latest[new_id] = out[-1]
            for original, current in successor.items():
                if current == order_id:
                    successor[original] = new_id
            successor.setdefault(order_id, new_id)

    for event in events:
        while renewals and renewals[0] < event["occurred_at"]:
            renew(renewals.pop(0))
        if event["event_type"] == "medication_order":
            event = {**event, "order_id": successor.get(event["order_id"], event["order_id"])}
            latest[event["order_id"]] = event
        out.append(event)
    while renewals:
        renew(renewals.pop(0))
    p.events = out


def _bad(rng: random.Random, n: int) -> str:
    head = f'"event_id": "bad-{n}", "patient_id": "SYN-BAD"'
    lab = f'{head}, "event_type": "lab_result", "loinc": "2157-6"'
    return rng.choice((
        "{" + head,  # truncated JSON
        "{" + lab + ', "occurred_at": "2025-02-01T00:00:00Z", "value": 5000000}',
        "{" + lab + ', "occurred_at": "2025-02-01 00:00:00", "value": 500}',
    ))


def generate(spec: StreamSpec) -> list[Event]:
    """All events for ``spec.patients`` patients, ordered by ``occurred_at`` (then id)."""
    events: list[Event] = []
    for index in range(spec.patients):
        rng = random.Random(f"{spec.seed}:{index}")
        patient = _Patient(spec, index, rng)
        _history(patient)
        if spec.renew_every_days:
            _renew_orders(patient, spec.renew_every_days)
        events.extend(e for e in patient.events if e["occurred_at"] >= patient.at(-400))
    events.sort(key=lambda e: (e["occurred_at"], e["patient_id"], e["event_id"]))
    return events


def generate_lines(spec: StreamSpec) -> Iterator[str]:
    """JSON lines, with ``bad_fraction`` malformed lines mixed in deterministically."""
    rng = random.Random(f"{spec.seed}:bad")
    for n, event in enumerate(generate(spec)):
        if spec.bad_fraction and rng.random() < spec.bad_fraction:
            yield _bad(rng, n)
        yield json.dumps(event, separators=(",", ":"))


def delivered_out_of_order(
    lines: list[str], rng: random.Random, *, window: int = 20, re_delivered_every: int = 50
) -> list[str]:
    """``lines`` as an at-least-once bus might deliver them: each swapped with one up to
    ``window`` places on (late events), and one in every ``re_delivered_every`` delivered again
    at a random place in the stream (duplicates, some years early or late)."""
    lines = list(lines)
    for i in range(0, len(lines) - window, 5):
        j = i + rng.randrange(window)
        lines[i], lines[j] = lines[j], lines[i]
    for _ in range(len(lines) // re_delivered_every):
        lines.insert(rng.randrange(len(lines)), lines[rng.randrange(len(lines))])
    return lines


BODY_WEIGHT_LOINC = "29463-7"


def with_weight_based_doses(
    lines: list[str], rng: random.Random, *, weighed_every: float = 16.0,
    per_kg_fraction: float = 0.5, unweighed_fraction: float = 0.0,
) -> list[str]:
    """``lines`` with every patient weighed at their first event and now and then after (about
    one weight per ``weighed_every`` lines, drifting by up to 2%; some corrected or entered in
    error later), and, for ``per_kg_fraction`` of the patients, every glucocorticoid dose in mg
    written per kg of their first weight instead: the same mg/day, give or take the drift.
    ``unweighed_fraction`` of the patients are never weighed (their doses stay unknown)."""
    weights: dict[str, tuple[float, bool]] = {}  # patient -> (first weight, doses per kg)
    current: dict[str, float] = {}
    unweighed: set[str] = set()
    out: list[str] = []
    for number, line in enumerate(lines):
        try:
            event = json.loads(line)
            patient = event["patient_id"]
            at = event["occurred_at"]
        except (ValueError, TypeError, KeyError):
            out.append(line)  # a malformed line (``bad_fraction``) stays as it is
            continue
        first = patient not in weights
        if first:
            weights[patient] = (round(rng.uniform(45, 110), 1), rng.random() < per_kg_fraction)
            current[patient] = weights[patient][0]
            if unweighed_fraction and rng.random() < unweighed_fraction:
                unweighed.add(patient)
            else:
                out.append(_weight_line(patient, at, current[patient], "final", number, 0))
        baseline, per_kg = weights[patient]
        dose = event.get("dose")
        if per_kg and dose and dose.get("unit") == "mg" and _is_glucocorticoid(event):
            event["dose"] = {"value": round(dose["value"] / baseline, 4), "unit": "mg/kg"}
            line = json.dumps(event, separators=(",", ":"))
        out.append(line)
        if not first and patient not in unweighed and rng.random() * weighed_every < 1:
            current[patient] = round(current[patient] * rng.uniform(0.98, 1.02), 1)
            status = rng.choice(("final",) * 6 + ("corrected", "entered-in-error"))
            result = 1 + rng.randrange(3)  # corrections and withdrawals hit a recent weight
            out.append(_weight_line(patient, at, current[patient], status, number, result))
    return out


def with_orders_as_schedules(lines: list[str]) -> list[str]:
    """``lines`` with each order's changes written ahead, as a taper in one FHIR
    MedicationRequest is: a run of active versions of one order (same route, each later than
    the one before) becomes the first version's ``dose_schedule``, and a completed version
    ending the run its ``ends_at``. Other versions (stopped, on hold, same instant) stay events,
    and replace the schedule from their time on. The engine must judge this stream as it judges
    ``lines``: only the alerts' evidence differs (a step cites the version that scheduled it)."""
    events: list[Event | str] = []
    runs: dict[tuple[str, str], tuple[int, str]] = {}  # order -> (index of first, last at)
    for line in lines:
        try:
            event = json.loads(line)
            key = (event["patient_id"], event["order_id"])
            at, status = event["occurred_at"], event["status"]
        except (ValueError, TypeError, KeyError):
            events.append(line)  # a malformed line or another event type stays as it is
            continue
        run = runs.get(key)
        first = events[run[0]] if run is not None else None
        if (
            isinstance(first, dict) and run is not None and at > run[1]
            and event.get("route") == first.get("route")
        ):
            if status == "active" and len(first.get("dose_schedule", ())) < MAX_DOSE_STEPS:
                step = {"starts_at": at, "dose": event.get("dose"),
                        "frequency": event.get("frequency")}
                first.setdefault("dose_schedule", []).append(
                    {k: v for k, v in step.items() if v is not None}
                )
                runs[key] = (run[0], at)
                continue
            if status == "completed":
                first["ends_at"] = at
                del runs[key]
                continue
        if status == "active":
            runs[key] = (len(events), at)
        else:
            runs.pop(key, None)
        events.append(event)
    return [e if isinstance(e, str) else json.dumps(e, separators=(",", ":")) for e in events]


def _is_glucocorticoid(event: Event) -> bool:
    medication = event["medication"]
    recognition = recognise(medication.get("rxnorm"), medication.get("atc"),
                            medication.get("name"), event.get("route"))
    return DrugClass.GLUCOCORTICOID in recognition.classes


def _weight_line(patient: str, at: str, kg: float, status: str, number: int, result: int) -> str:
    return json.dumps({
        "event_id": f"{patient}-weight-{number}", "patient_id": patient,
        "event_type": "lab_result", "occurred_at": at, "loinc": BODY_WEIGHT_LOINC,
        "value": kg, "unit": "kg", "status": status, "result_id": f"{patient}-weight-{result}",
    }, separators=(",", ":"))
