"""Test helpers for the IMNM domain: build events as plain JSON dicts, validate them with
``parse_event_object`` and drive them through :class:`Replay` on its virtual clock.

Times are given in (fractional) days after ``T0``; ``day_of`` converts a transition's timestamps
back, so assertions read like a clinical timeline.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.events import CanonicalEvent, parse_event_object
from imnm_common.domain import engine
from imnm_common.domain.config import DEFAULT_RULES_CONFIG, RulesConfig
from imnm_common.domain.state import PatientState
from imnm_common.service_layer.replay import Replay

T0 = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
DAY_S = 86_400.0

CK_LOINC = "2157-6"
TACROLIMUS_LOINC = "11253-2"
HMGCR_LOINC = "93493-5"
SRP_LOINC = "33921-8"
BODY_WEIGHT_LOINC = "29463-7"

Event = dict[str, Any]


def when(day: float) -> datetime:
    return T0 + timedelta(days=day)


def iso(day: float) -> str:
    return when(day).isoformat().replace("+00:00", "Z")


def ts(day: float) -> float:
    return when(day).timestamp()


def day_of(moment: datetime | None) -> float | None:
    """Days after T0 (rounded to the second), or None."""
    if moment is None:
        return None
    return round((moment - T0).total_seconds()) / DAY_S


class Chart:
    """One patient's event history, built in delivery order."""

    def __init__(self, patient_id: str = "MRN-1") -> None:
        self.patient_id = patient_id
        self.events: list[Event] = []
        self._ids = itertools.count(1)

    # --- generic -------------------------------------------------------------------------
    def add(self, event_type: str, day: float, eid: str | None = None, **fields: Any) -> Event:
        raw: Event = {
            "event_id": eid or f"{self.patient_id}-e{next(self._ids):03d}",
            "patient_id": self.patient_id,
            "event_type": event_type,
            "occurred_at": iso(day),
            **{k: v for k, v in fields.items() if v is not None},
        }
        self.events.append(raw)
        return raw

    # --- diagnosis -----------------------------------------------------------------------
    def dx(
        self,
        day: float = 0.0,
        *,
        status: str = "active",
        condition: str = "IMNM",
        antibody: str | None = None,
        statin_associated: bool | None = None,
        eid: str | None = None,
    ) -> Event:
        return self.add(
            "diagnosis", day, eid, condition=condition, status=status, antibody=antibody,
            statin_associated=statin_associated,
        )

    # --- orders --------------------------------------------------------------------------
    def rx(
        self,
        order_id: str,
        day: float,
        name: str | None = None,
        *,
        dose: float | None = None,
        unit: str = "mg",
        times: int = 1,
        period: float = 1,
        per: str | None = "d",
        status: str = "active",
        rxnorm: str | None = None,
        atc: str | None = None,
        route: str | None = None,
        eid: str | None = None,
        steps: Sequence[tuple[float, float]] = (),
        ends: float | None = None,
        reported: bool | None = None,
        starts: float | None = None,
    ) -> Event:
        """``steps``: (day, dose) of a dose schedule, same unit and frequency; ``ends``: the
        order's ``ends_at`` day; ``reported``: from the patient's medication list; ``starts``:
        the day of the first dose, for an order written ahead."""
        medication = {k: v for k, v in (("name", name), ("rxnorm", rxnorm), ("atc", atc)) if v}
        frequency = (
            {"times": times, "period": period, "unit": per}
            if per is not None and dose is not None else None
        )
        schedule = [
            {"starts_at": iso(step_day), "dose": {"value": step_dose, "unit": unit},
             "frequency": frequency}
            for step_day, step_dose in steps
        ]
        return self.add(
            "medication_order", day, eid, order_id=order_id, status=status,
            medication=medication,
            dose={"value": dose, "unit": unit} if dose is not None else None,
            frequency=frequency,
            route=route,
            dose_schedule=schedule or None,
            ends_at=None if ends is None else iso(ends),
            starts_at=None if starts is None else iso(starts),
            reported=reported,
        )

    def pred(
        self, order_id: str, day: float, mg: float, *, status: str = "active",
        drug: str = "prednisone", eid: str | None = None,
        steps: Sequence[tuple[float, float]] = (), ends: float | None = None,
        starts: float | None = None,
    ) -> Event:
        """A once-daily oral glucocorticoid order version (``steps``, ``ends``, ``starts``: see
        ``rx``)."""
        return self.rx(order_id, day, drug, dose=mg, status=status, eid=eid, steps=steps,
                       ends=ends, starts=starts)

    def stop(self, order_id: str, day: float, name: str = "prednisone", *,
             status: str = "stopped", eid: str | None = None) -> Event:
        return self.rx(order_id, day, name, status=status, eid=eid)

    # --- results -------------------------------------------------------------------------
    def lab(
        self,
        loinc: str,
        day: float,
        value: float | None = None,
        *,
        value_text: str | None = None,
        reference_high: float | None = None,
        status: str = "final",
        result_id: str | None = None,
        unit: str | None = None,
        eid: str | None = None,
        comparator: str | None = None,
    ) -> Event:
        return self.add(
            "lab_result", day, eid, loinc=loinc, value=value, value_text=value_text,
            reference_high=reference_high, status=status, result_id=result_id, unit=unit,
            comparator=comparator,
        )

    def ck(self, day: float, value: float, **kw: Any) -> Event:
        kw.setdefault("unit", "U/L")
        return self.lab(CK_LOINC, day, value, **kw)

    def tacro(self, day: float, value: float, **kw: Any) -> Event:
        kw.setdefault("unit", "ng/mL")
        return self.lab(TACROLIMUS_LOINC, day, value, **kw)

    def weight(self, day: float, value: float, **kw: Any) -> Event:
        kw.setdefault("unit", "kg")
        return self.lab(BODY_WEIGHT_LOINC, day, value, **kw)

    def mmt8(self, day: float, score: float, eid: str | None = None) -> Event:
        return self.add("muscle_assessment", day, eid, instrument="MMT8", score=score)

    # --- running -------------------------------------------------------------------------
    def parsed(self) -> list[CanonicalEvent]:
        return [parse_event_object(e) for e in self.events]

    def run(self, now_day: float, config: RulesConfig = DEFAULT_RULES_CONFIG
            ) -> list[AlertTransition]:
        return replay(self.events, now_day, config)


def parse(events: Iterable[Event | CanonicalEvent]) -> list[CanonicalEvent]:
    return [parse_event_object(e) if isinstance(e, dict) else e for e in events]


def replay(
    events: Iterable[Event | CanonicalEvent],
    now_day: float,
    config: RulesConfig = DEFAULT_RULES_CONFIG,
    *,
    roundtrip_state: bool = False,
) -> list[AlertTransition]:
    """Feed events in the given (delivery) order, then finish at ``now_day``.

    ``roundtrip_state`` serialises and restores every patient's state after every event, as a
    faust table restored from its changelog would."""
    r = Replay(config)
    out: list[AlertTransition] = []
    for event in parse(events):
        out.extend(r.feed(event))
        if roundtrip_state:
            for pid, state in list(r.states.items()):
                r.states[pid] = PatientState.from_bytes(state.to_bytes())
    out.extend(r.finish(ts(now_day)))
    return out


def drive(
    events: Sequence[Event | CanonicalEvent],
    now_day: float,
    config: RulesConfig = DEFAULT_RULES_CONFIG,
    patient_id: str = "MRN-1",
) -> tuple[PatientState, list[AlertTransition]]:
    """Drive the engine verbs directly (one patient): advance strictly before each new instant,
    apply, and finally advance to ``now_day`` inclusive."""
    state = engine.new_state(patient_id)
    out: list[AlertTransition] = []
    for event in parse(events):
        out.extend(engine.advance(state, event.occurred_at.timestamp(), config, inclusive=False))
        out.extend(engine.apply(state, event, config).transitions)
    out.extend(engine.advance(state, ts(now_day), config))
    return state, out


def judge_everything(state: PatientState, at: float, config: RulesConfig
                     ) -> list[AlertTransition]:
    """``engine._evaluate`` judging every rule, due or not: the reference selective evaluation
    must agree with (monkeypatched in)."""
    closing = state.pending_at is not None and state.pending_at <= at
    transitions = engine._reconcile(state, at, config, list(engine.ALL_RULES), full=True)
    state.evaluated_at = at
    if closing:
        state.pending_at = None
        state.dirty_rules = []
    return transitions


# --- transition views ------------------------------------------------------------------------
Row = tuple[str, str, float | None, float | None]


def rows(transitions: Iterable[AlertTransition], rule: str | None = None) -> list[Row]:
    """(rule, status, raised day, resolved day) for each transition, optionally one rule."""
    return [
        (t.rule, t.status, day_of(t.raised_at), day_of(t.resolved_at))
        for t in transitions
        if rule is None or t.rule == rule
    ]


def of_rule(transitions: Iterable[AlertTransition], rule: str) -> list[AlertTransition]:
    return [t for t in transitions if t.rule == rule]


def opened(transitions: Iterable[AlertTransition], rule: str) -> list[AlertTransition]:
    return [t for t in transitions if t.rule == rule and t.status == "open"]


def resolved(transitions: Iterable[AlertTransition], rule: str) -> list[AlertTransition]:
    return [t for t in transitions if t.rule == rule and t.status == "resolved"]


def rules_opened(transitions: Iterable[AlertTransition]) -> set[str]:
    return {t.rule for t in transitions if t.status == "open"}


def open_at_end(transitions: Iterable[AlertTransition]) -> set[str]:
    """Alert ids still open after all transitions."""
    still: set[str] = set()
    for t in transitions:
        if t.status == "open":
            still.add(t.alert_id)
        else:
            still.discard(t.alert_id)
    return still


def fingerprint(transitions: Iterable[AlertTransition]) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json") for t in transitions]


def only_rules(*enabled: str) -> RulesConfig:
    """A config with every rule disabled except ``enabled``."""
    names = [
        "statin_active", "pjp_prophylaxis_missing", "calcium_vitamin_d_missing",
        "bone_protection_review", "steroid_sparing_agent_missing", "ck_monitoring_overdue",
        "muscle_assessment_overdue", "taper_too_fast", "taper_relapse_risk",
        "methotrexate_daily_dosing", "tacrolimus_trough_out_of_range",
        "methotrexate_dose_above_range", "body_weight_missing",
    ]
    updates: dict[str, Any] = {}
    for name in names:
        current = getattr(DEFAULT_RULES_CONFIG, name)
        updates[name] = current.model_copy(update={"enabled": name in enabled})
    return DEFAULT_RULES_CONFIG.model_copy(update=updates)


def tapering(c: Chart) -> None:
    """Diagnosed day 0, prednisone 60 from day 0, tapered to 50 on day 30."""
    c.dx(0)
    c.pred("p", 0, 60)
    c.pred("p", 30, 50)
