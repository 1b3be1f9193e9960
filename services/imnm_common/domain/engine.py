"""The domain verbs: ``apply`` an event, ``advance`` the clock, ask ``next_due``.

Time handling, in one place:
- ``apply`` records an event and judges the *immediate* rules (statin, methotrexate timing,
  tacrolimus) at once, because they do not depend on the glucocorticoid dose.
- Dose-based rules are judged when the event's instant closes: ``advance`` to a time at or after
  it. Events sharing one ``occurred_at`` are therefore one change (a stop + new replacement order
  is judged as the single dose step it is).
- Time-based rules become due at instants the rules compute (day 28 of a course, CK overdue...);
  ``next_due`` returns the earliest, and ``advance`` fires them in time order with the due time as
  the alert's ``raised_at``. Evaluation times only move forward.
- An order written ahead (``dose_schedule``, ``ends_at``: a taper in one order) keeps its later
  steps in the state; each becomes a version of the order when the clock reaches it, as if the
  order had been changed at that instant, and ``next_due`` is at the next one at the latest.
- Only what can have changed is judged: each rule keeps its own next due time, and an event
  marks dirty just the rules that read it (a CK result: CK monitoring and relapse risk). A rule
  neither due nor dirty has the same findings as when it was last judged.
- ...under the same thresholds: a state judged under another rules configuration (a site
  changed a threshold or switched a rule off) has every rule judged again when next advanced
  or given an event, at that instant. Alerts that no longer hold resolve, new ones open.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.events import (
    CanonicalEvent,
    DiagnosisEvent,
    Dose,
    Frequency,
    LabResultEvent,
    MedicationOrderEvent,
    MuscleAssessmentEvent,
    body_weight_in_kg,
    factor_to_rule_unit,
)
from imnm_common.domain import knowledge
from imnm_common.domain.config import DEFAULT_RULES_CONFIG, RulesConfig
from imnm_common.domain.knowledge import DrugClass
from imnm_common.domain.picture import (
    merge_intervals,
    order_recorded,
    orders_removed,
    picture_at,
    summed_dose_steps,
    therapy_intervals,
    weight_at,
)
from imnm_common.domain.rules import RULES, Finding, RuleContext, left_force_last
from imnm_common.domain.state import (
    DAY,
    Diagnosis,
    LabValue,
    MedicationOrder,
    MuscleScore,
    OpenAlert,
    OrderVersion,
    PatientState,
    SettledOrders,
)

IMMEDIATE_RULES = tuple(name for name, (info, _) in RULES.items() if info.immediate)
ALL_RULES = tuple(RULES)
# Which rules an event can change: a creatine kinase result cannot change a statin finding, so
# it re-judges only the rules that read it. Orders and diagnoses can change anything.
_RULES_READING_CK = ("ck_monitoring_overdue", "taper_relapse_risk")
_RULES_READING_MMT8 = ("muscle_assessment_overdue", "taper_relapse_risk")
_RULES_READING_TACROLIMUS = ("tacrolimus_trough_out_of_range",)
_RULES_READING_ORDERS_OF = {
    "statin": ("statin_active",),
    "pjp_prophylaxis": ("pjp_prophylaxis_missing",),
    "calcium": ("calcium_vitamin_d_missing",),
    "vitamin_d": ("calcium_vitamin_d_missing",),
    "bone_protection": ("bone_protection_review",),
    "steroid_sparing": ("steroid_sparing_agent_missing", "ck_monitoring_overdue",
                        "muscle_assessment_overdue", "taper_relapse_risk"),
    "glucocorticoid": tuple(
        name for name in RULES
        if name not in ("statin_active", "methotrexate_daily_dosing",
                        "methotrexate_dose_above_range", "tacrolimus_trough_out_of_range")
    ),
}
# Rules that read the treatment phase, which also moves when an IVIG/rituximab window closes
# or a bridged glucocorticoid gap ends (the picture's change points).
_PHASE_DEPENDENT = frozenset(
    {"steroid_sparing_agent_missing", "ck_monitoring_overdue", "muscle_assessment_overdue",
     "taper_relapse_risk"}
)
# ...and by agent, for rules that judge one drug's orders alone: an IVIG infusion (12% of a
# generated year's orders) cannot change a methotrexate finding.
_RULES_READING_ORDERS_OF_AGENT = {
    "methotrexate": ("methotrexate_daily_dosing", "methotrexate_dose_above_range"),
}
TRACKED_CONDITION = "imnm"


@dataclass(slots=True)
class ApplyOutcome:
    transitions: list[AlertTransition] = field(default_factory=list)
    duplicate: bool = False
    stale: bool = False  # an older order version delivered late: kept out of state


def new_state(patient_id: str) -> PatientState:
    return PatientState(patient_id=patient_id)


def rules_fingerprint(config: RulesConfig) -> str:
    """Short, stable id of a rules configuration: equal configurations give equal ids in every
    process (it is stored with each state and in the tracker's table headers)."""
    cached = _FINGERPRINTS.get(id(config))
    if cached is None or cached[0] is not config:
        digest = hashlib.blake2b(config.model_dump_json().encode(), digest_size=6).hexdigest()
        cached = _FINGERPRINTS[id(config)] = (config, f"rules-{digest}")
    return cached[1]


_FINGERPRINTS: dict[int, tuple[RulesConfig, str]] = {}  # RulesConfig is frozen


def _adopt_rules(state: PatientState, config: RulesConfig, now: float | None) -> None:
    """Judge every rule again when the state was judged under another configuration: at
    ``now``, the instant the caller judges up to (``apply`` closes its own instant)."""
    fingerprint = rules_fingerprint(config)
    if state.judged_under == fingerprint:
        return
    if state.clock is not None:  # without an event, nothing was judged
        if now is None:
            _mark_dirty(state, ALL_RULES)  # judged when the event's instant closes
        else:
            at = max(_judge_time(state), now)  # every rule due then (or at its earlier due)
            for name in ALL_RULES:
                due = state.rule_due.get(name)
                state.rule_due[name] = at if due is None else min(due, at)
    state.judged_under = fingerprint


def to_utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def alert_id_for(patient_id: str, rule: str, slot: str, since: float) -> str:
    """Deterministic: same patient, rule, slot and episode start give the same id everywhere."""
    digest = hashlib.blake2b(
        f"{patient_id}\x1f{rule}\x1f{slot}\x1f{since:.3f}".encode(), digest_size=12
    ).hexdigest()
    return f"al-{digest}"


# --------------------------------------------------------------------------------------------
# recording events
def apply(
    state: PatientState, event: CanonicalEvent, config: RulesConfig = DEFAULT_RULES_CONFIG
) -> ApplyOutcome:
    """Record one event; judge the immediate rules. The caller owns ``state`` (mutated)."""
    if event.patient_id != state.patient_id:
        raise ValueError("event belongs to another patient")
    if event.event_id in state.seen_event_ids:
        return ApplyOutcome(duplicate=True)
    _adopt_rules(state, config, None)
    at = event.occurred_at.timestamp()
    if state.next_step_at is not None:
        # Scheduled dose steps whose time has come are history this event follows (a caller
        # that advanced first has taken those before ``at`` already).
        upto = _judged_with(state, at)
        if state.next_step_at <= upto:
            _take_scheduled_steps(state, upto)
    stale = False
    if isinstance(event, MedicationOrderEvent):
        stale = not _record_order(state, event, at)
    elif isinstance(event, LabResultEvent):
        _record_lab(state, event, at, config)
    elif isinstance(event, MuscleAssessmentEvent):
        _record_score(state, event, at, config)
    elif isinstance(event, DiagnosisEvent):
        _record_diagnosis(state, event, at)
    _remember(state, event.event_id, config.seen_event_ids_kept)
    state.clock = at if state.clock is None else max(state.clock, at)
    if stale:
        return ApplyOutcome(stale=True)
    # Read before settling: a version delivered more than ``order_history_days`` late can stop
    # its order before the horizon, and settling then drops the order it names.
    rules = _rules_read_by(state, event)
    settle_orders(state, config)
    state.pending_at = state.clock
    _mark_dirty(state, rules)
    immediate = [name for name in IMMEDIATE_RULES if name in rules]
    if not immediate:
        return ApplyOutcome()  # a CK or MMT-8 result cannot change a statin finding
    return ApplyOutcome(_reconcile(state, _judge_time(state), config, immediate))


def _rules_read_by(state: PatientState, event: CanonicalEvent) -> tuple[str, ...]:
    if isinstance(event, MedicationOrderEvent):
        return _rules_reading(state.orders[event.order_id])
    if isinstance(event, LabResultEvent):
        if event.loinc == knowledge.LOINC_CREATINE_KINASE:
            return _RULES_READING_CK
        if event.loinc in knowledge.LOINC_TACROLIMUS:
            return _RULES_READING_TACROLIMUS
        if event.loinc in knowledge.LOINC_BODY_WEIGHT:
            return _RULES_READING_ORDERS_OF["glucocorticoid"]  # weight-based doses
        return ()  # antibodies only change wording
    if isinstance(event, MuscleAssessmentEvent):
        return _RULES_READING_MMT8
    return ALL_RULES


def _rules_reading(order: MedicationOrder) -> tuple[str, ...]:
    names = {name for cls in order.classes for name in _RULES_READING_ORDERS_OF[cls]}
    for agent in order.agents:
        names.update(_RULES_READING_ORDERS_OF_AGENT.get(agent, ()))
    return tuple(names)


def _mark_dirty(state: PatientState, rules: tuple[str, ...]) -> None:
    dirty = state.dirty_rules
    added = [name for name in rules if name not in dirty]
    if added:
        state.dirty_rules = sorted({*dirty, *added})


def _remember(state: PatientState, event_id: str, keep: int) -> None:
    state.seen_event_ids.append(event_id)
    if len(state.seen_event_ids) > keep:
        del state.seen_event_ids[: len(state.seen_event_ids) - keep]


def _record_order(state: PatientState, event: MedicationOrderEvent, at: float) -> bool:
    """Record the order version (and its schedule); False when it is stale. Scheduled steps up
    to the instant being judged become versions at once."""
    med = event.medication
    recognition = knowledge.recognise(med.rxnorm, med.atc, med.name, event.route)
    order = state.orders.get(event.order_id)
    if order is not None and at < order.latest_ordered_at:
        return False  # "latest occurred_at wins": an older version never changes state
    if order is None and state.settled is not None and at < state.settled.before:
        return False  # possibly a settled order's: history before the horizon is final
    # Only statin and methotrexate alerts quote the order's agents, name and dose: others do
    # not carry that text in the state, which every table write copies.
    methotrexate = "methotrexate" in recognition.agents
    quoted = DrugClass.STATIN in recognition.classes or methotrexate
    # an order's kind and drug classes are its first version's
    reported = order.reported if order is not None else bool(event.reported)
    classes = recognition.classes
    if reported:
        # The patient's list names what the inpatient order continuing it names too: summed,
        # one prednisone dose would count twice. The hospital's glucocorticoid orders count.
        classes = classes - {DrugClass.GLUCOCORTICOID}
    factor = None if reported else recognition.prednisone_factor
    dosing = (factor, methotrexate, quoted, state.body_weights)
    version = _order_version(at, event.status, event.event_id, event.dose, event.frequency,
                             *dosing)
    glucocorticoid = DrugClass.GLUCOCORTICOID in (order.classes if order is not None else classes)
    starts = _later_start(event, at, version, glucocorticoid)
    if starts is not None:
        # written ahead of its first dose: ordered now, given from then (a step of its schedule)
        version = version._replace(status=NOT_STARTED)
    if order is None:
        order = MedicationOrder(
            order_id=event.order_id,
            classes=sorted(c.value for c in classes),
            agents=list(recognition.agents) if quoted else [],
            label=(med.name or recognition.agents[0]) if quoted else "",
            counts_after_last_dose_days=recognition.counts_after_last_dose_days,
            reported=reported,
        )
        state.orders[event.order_id] = order
    if order.versions and order.versions[-1].at > at:
        # Only scheduled steps of an earlier order event come later: this version replaces
        # them, and what was derived from them goes.
        order.versions = [v for v in order.versions if v.at <= at]
        state.derived.clear()
    if order.versions and order.versions[-1].at == at:
        order.versions[-1] = version  # same instant: the later delivery is the correction
    else:
        order.versions.append(version)
    order_recorded(state, order, at)
    had_schedule = bool(order.schedule)
    given_later = starts is not None or (
        version.in_force and (event.dose_schedule or event.ends_at)
    )
    order.schedule = _schedule_of(event, version, dosing, starts) if given_later else ()
    order.ordered_at = None
    if had_schedule or order.schedule:
        state.note_schedules()
        upto = _judged_with(state, at)
        if order.schedule and order.schedule[0].at <= upto:
            _take_scheduled_steps(state, upto)
    return True


# The status of a glucocorticoid order's version written ahead of its first dose: not in force
# (nothing is given yet), so the dose rules count it from ``starts_at``.
NOT_STARTED = "draft"


def _later_start(
    event: MedicationOrderEvent, at: float, version: OrderVersion, glucocorticoid: bool
) -> float | None:
    """When a glucocorticoid order in force starts after its own time: only a glucocorticoid's
    dose and exposure wait for the first dose. A statin or methotrexate ordered for next week
    is a hazard to stop now, and prophylaxis ordered is no missing prophylaxis."""
    if event.starts_at is None or not glucocorticoid or not version.in_force:
        return None
    starts = event.starts_at.timestamp()
    return starts if starts > at else None


# How an order's doses become the numbers its rules read: the prednisone factor, whether it is
# methotrexate, whether its alerts quote its dose, the body weights.
_DosingOf = tuple[float | None, bool, bool, list[LabValue]]


def _order_version(
    at: float, status: str, event_id: str, dose: Dose | None, frequency: Frequency | None,
    prednisone_factor: float | None, methotrexate: bool, quoted: bool, weights: list[LabValue],
) -> OrderVersion:
    mg_per_day = mg_per_kg_per_day = None
    if prednisone_factor is not None and dose is not None:
        mg_per_day, mg_per_kg_per_day = _prednisone_equivalent(
            dose, frequency, prednisone_factor, weights, at
        )
    return OrderVersion(
        at=at,
        status=status,
        event_id=event_id,
        prednisone_equivalent_mg_per_day=mg_per_day,
        period_days=_administration_period_days(dose, frequency),
        dose_text=_dose_text(dose, frequency) if quoted else "",
        mg_per_dose=(
            knowledge.mass_in_mg(dose.value, dose.unit)
            if methotrexate and dose is not None else None
        ),
        mg_per_kg_per_day=mg_per_kg_per_day,
    )


def _schedule_of(
    event: MedicationOrderEvent, first: OrderVersion, dosing: _DosingOf, starts: float | None
) -> tuple[OrderVersion, ...]:
    """The versions an order's first dose (when it starts later), later dose steps and end
    become at their times."""
    schedule = [] if starts is None else [first._replace(at=starts, status=event.status)]
    schedule += [
        _order_version(step.starts_at.timestamp(), event.status, event.event_id, step.dose,
                       step.frequency, *dosing)
        for step in event.dose_schedule or ()
    ]
    if event.ends_at is not None:
        last = schedule[-1] if schedule else first
        schedule.append(last._replace(at=event.ends_at.timestamp(), status="completed"))
    return tuple(schedule)


def _take_scheduled_steps(state: PatientState, upto: float) -> None:
    """Scheduled dose steps due by ``upto`` become versions of their orders, as if each order had
    been changed at its step's time: the rules that read the order are judged at that instant."""
    for order in state.orders.values():
        while order.schedule and order.schedule[0].at <= upto:
            step, order.schedule = order.schedule[0], order.schedule[1:]
            if step.mg_per_kg_per_day is not None:  # with the weight known by now
                step = step._replace(prednisone_equivalent_mg_per_day=_weighed(
                    step.mg_per_kg_per_day, weight_at(state.body_weights, step.at)
                ))
            if order.ordered_at is None:
                order.ordered_at = order.latest.at
            order.versions.append(step)
            order_recorded(state, order, step.at)
            _mark_dirty(state, _rules_reading(order))
            pending = state.pending_at
            state.pending_at = step.at if pending is None else max(pending, step.at)
    state.note_schedules()


def _prednisone_equivalent(
    dose: Dose, frequency: Frequency | None, factor: float, weights: list[LabValue], at: float
) -> tuple[float | None, float | None]:
    """A glucocorticoid order's prednisone-equivalent mg/day and, for a weight-based dose, its
    mg/kg/day (the mg/day is then None until a body weight is known)."""
    unit = knowledge.per_day_unit(dose.unit)
    if unit is not None:
        per_day = 1.0  # a daily amount: the frequency only divides it
    else:
        unit = dose.unit
        # No frequency on a glucocorticoid order: once daily, the usual default.
        per_day = (
            frequency.times / (frequency.period * knowledge.PERIOD_DAYS[frequency.unit])
            if frequency else 1.0
        )
    dose_mg = knowledge.mass_in_mg(dose.value, unit)
    if dose_mg is not None:
        return dose_mg * factor * per_day, None
    mg_per_kg = knowledge.mass_per_kg_in_mg(dose.value, unit)
    if mg_per_kg is None:
        return None, None
    mg_per_kg_per_day = mg_per_kg * factor * per_day
    return _weighed(mg_per_kg_per_day, weight_at(weights, at)), mg_per_kg_per_day


def _administration_period_days(dose: Dose | None, freq: Frequency | None) -> float | None:
    """Days between administrations (FHIR period / times): every 12 h and 2x a day are both
    0.5 days, and 7x per week is daily, not weekly."""
    period = None if freq is None else freq.period * knowledge.PERIOD_DAYS[freq.unit] / freq.times
    if dose is not None and knowledge.per_day_unit(dose.unit) is not None:
        # A dose written per day ("methotrexate 15 mg/d") is given daily, whatever else is said.
        return 1.0 if period is None else min(period, 1.0)
    return period


def _dose_text(dose: Dose | None, f: Frequency | None) -> str:
    parts = []
    if dose is not None:
        parts.append(f"{dose.value:g} {dose.unit}")
    if f is not None:
        parts.append(f"{f.times}x per {f.period:g} {f.unit}")
    return " ".join(parts)


def _record_lab(
    state: PatientState, event: LabResultEvent, at: float, config: RulesConfig
) -> None:
    if event.status == "preliminary":
        return
    if event.loinc in knowledge.ANTIBODY_BY_LOINC and event.status in {"final", "corrected"}:
        if _is_positive(event):
            state.antibody = knowledge.ANTIBODY_BY_LOINC[event.loinc]
        return
    if event.loinc == knowledge.LOINC_CREATINE_KINASE:
        series = state.creatine_kinase
    elif event.loinc in knowledge.LOINC_TACROLIMUS:
        series = state.tacrolimus_troughs
    elif event.loinc in knowledge.LOINC_BODY_WEIGHT:
        _record_weight(state, event, at)
        return
    else:
        return
    row = None
    if event.status in {"final", "corrected"} and event.value is not None:
        value, high = event.value, event.reference_high
        # the contract refused any unit the test is not reported in
        factor = factor_to_rule_unit(event.loinc, event.unit) or 1.0
        if factor != 1.0:  # into the unit the rules compare in (CK U/L, a trough ng/mL)
            value, high = value * factor, None if high is None else high * factor
        row = LabValue(at, value, event.event_id, event.result_id, high, event.comparator)
    series[:] = _result_recorded(series, event, row)
    if row is not None:
        horizon = series[-1].at - config.lab_history_days * DAY
        series[:] = [r for r in series if r.at >= horizon]


def _result_recorded(
    series: list[LabValue], event: LabResultEvent, row: LabValue | None
) -> list[LabValue]:
    """``series`` without what the event replaces (the same result, or a re-delivery of the
    event) and with ``row``, its new value if it has one, in time order."""
    key_id = event.result_id
    kept = [
        r for r in series
        if not ((key_id is not None and r.result_id == key_id) or r.event_id == event.event_id)
    ]
    if row is not None:
        kept.append(row)
        kept.sort(key=lambda r: r.at)
    return kept


def _record_weight(state: PatientState, event: LabResultEvent, at: float) -> None:
    """Keep the body weights (kg) and convert the weight-based glucocorticoid doses again."""
    kg = None if event.value is None else body_weight_in_kg(event.value, event.unit)
    row = None
    if event.status in {"final", "corrected"} and kg is not None:
        row = LabValue(at, kg, event.event_id, event.result_id)
    state.body_weights = _result_recorded(state.body_weights, event, row)
    _convert_weight_based_doses(state)
    state.body_weights = _weights_kept(state)


def _convert_weight_based_doses(state: PatientState) -> None:
    changed = False
    weights = state.body_weights
    for order in state.orders_of(DrugClass.GLUCOCORTICOID):
        for index, version in enumerate(order.versions):
            if version.mg_per_kg_per_day is None:
                continue
            mg_per_day = _weighed(version.mg_per_kg_per_day, weight_at(weights, version.at))
            if mg_per_day != version.prednisone_equivalent_mg_per_day:
                order.versions[index] = version._replace(
                    prednisone_equivalent_mg_per_day=mg_per_day
                )
                changed = True
    if changed:
        state.derived.clear()  # the dose steps, and all that is derived from them, changed


# Body weights kept besides those the kept order versions were converted with: a late order
# version up to this many days old converts with the weight of its own time, and a correction
# or withdrawal of a recent weight finds it. Inpatients weighed daily keep ~30 weights, not a
# year of them (every table write copies the state).
RECENT_WEIGHT_DAYS = 30.0


def _weights_kept(state: PatientState) -> list[LabValue]:
    """The weights of the last ``RECENT_WEIGHT_DAYS``, the last one before them, and every
    weight a kept order version was converted with: a version converts to the same dose
    whenever it is converted again, however old it is."""
    weights = state.body_weights
    if not weights:
        return weights
    horizon = weights[-1].at - RECENT_WEIGHT_DAYS * DAY
    first = max((i for i, w in enumerate(weights) if w.at <= horizon), default=0)
    used = {
        weight_at(weights, version.at)
        for order in state.orders_of(DrugClass.GLUCOCORTICOID)
        for version in order.versions
        if version.mg_per_kg_per_day is not None
    }
    return [w for i, w in enumerate(weights) if i >= first or w in used]


def _weighed(mg_per_kg_per_day: float, weight: LabValue | None) -> float | None:
    return None if weight is None else mg_per_kg_per_day * weight.value


def _is_positive(event: LabResultEvent) -> bool:
    if event.value_text is not None:
        return event.value_text.strip().lower() in knowledge.POSITIVE_WORDS
    return (
        event.value is not None
        and event.reference_high is not None
        and event.value > event.reference_high
    )


def _record_score(
    state: PatientState, event: MuscleAssessmentEvent, at: float, config: RulesConfig
) -> None:
    scores = [s for s in state.mmt8_scores if s.event_id != event.event_id]
    scores.append(MuscleScore(at, event.score, event.event_id))
    scores.sort(key=lambda s: s.at)
    horizon = scores[-1].at - config.lab_history_days * DAY
    state.mmt8_scores = [s for s in scores if s.at >= horizon]


def _record_diagnosis(state: PatientState, event: DiagnosisEvent, at: float) -> None:
    if event.condition.strip().lower() != TRACKED_CONDITION:
        return
    current = state.diagnosis
    if current is not None and at < current.at:
        return  # an older diagnosis version delivered late changes nothing
    if event.antibody not in (None, "unknown"):
        state.antibody = event.antibody
    if event.statin_associated is not None:
        state.statin_associated = event.statin_associated
    if current is not None and current.status == "active" and event.status == "active":
        return  # still the same tracked episode: keep its start
    state.diagnosis = Diagnosis(at=at, status=event.status, event_id=event.event_id)


# --------------------------------------------------------------------------------------------
# bounded history
SETTLE_EVERY_DAYS = 30.0  # the horizon moves in steps of this
_ALL_TIME = float("inf")


def settle_orders(state: PatientState, config: RulesConfig) -> None:
    """Replace the orders that stopped counting before the history horizon by what they still
    say: their summed glucocorticoid dose steps, their therapy intervals and when each drug class
    last stopped counting. Every rule reads an old order only through those (a course's start and
    peak, a treatment span's start, "due since the cover stopped"), so judgments at or after the
    horizon are unchanged; a patient treated for years keeps a bounded number of orders.
    """
    assert state.clock is not None
    judged = state.clock if state.evaluated_at is None else min(state.clock, state.evaluated_at)
    # On a 30-day grid, so the horizons (and the summaries) follow from the events alone.
    step = SETTLE_EVERY_DAYS * DAY
    horizon = (judged - config.order_history_days * DAY) // step * step
    if state.settled is not None and horizon <= state.settled.before:
        return
    # What settles follows from the orders, the open alerts and the horizon alone, so a state
    # decoded from the changelog settles what the one kept in memory does. The memo below only
    # saves looking again: it is dropped whenever an order gets a version (``order_recorded``)
    # or an alert resolves (``_reconcile``; an alert opening only keeps more orders). It once
    # outlived those changes, and a restarted worker then settled a late-stopped order that one
    # running on had not.
    derived = state.derived
    if derived.get("settle_checked") == horizon:
        return
    derived["settle_checked"] = horizon  # true again once the orders that qualify are settled
    # Most orders are younger than the horizon (every order of a first year is): the version
    # time rules them out before their therapy intervals are derived.
    candidates = [
        o for o in state.orders.values() if o.versions[-1].at <= horizon and not o.schedule
    ]
    if not candidates:
        return
    # an order whose alert is still open stays: its resolution quotes it
    alerted = {slot.partition(":")[2] for slot in state.open_alerts}
    settling = [
        order for order in candidates
        if order.order_id not in alerted and _stopped_counting_by(order, horizon)
    ]
    if not settling:
        return
    previous = state.settled or SettledOrders(before=horizon)
    glucocorticoids = [o for o in settling if DrugClass.GLUCOCORTICOID in o.classes]
    spans = list(previous.therapy_spans)
    stopped = dict(previous.stopped_counting_at)
    for order in settling:
        if DrugClass.GLUCOCORTICOID in order.classes or DrugClass.STEROID_SPARING in order.classes:
            spans.extend(therapy_intervals(order, _ALL_TIME))
        left = left_force_last([order], _ALL_TIME)
        if left is not None:
            for cls in order.classes:
                stopped[cls] = max(stopped.get(cls, left), left)
    state.settled = SettledOrders(
        before=horizon,
        glucocorticoid_steps=summed_dose_steps(
            glucocorticoids, _ALL_TIME, previous.glucocorticoid_steps
        ),
        therapy_spans=merge_intervals(spans),
        stopped_counting_at=stopped,
    )
    gone = {order.order_id for order in settling}
    state.orders = {oid: order for oid, order in state.orders.items() if oid not in gone}
    # per-order slots ("statin_active:<order>"): an order id seen again starts afresh anyway
    state.last_resolved = {
        slot: at for slot, at in state.last_resolved.items()
        if slot.partition(":")[2] not in gone
    }
    orders_removed(state, gone)


def _stopped_counting_by(order: MedicationOrder, horizon: float) -> bool:
    latest = order.latest
    return (
        latest.at <= horizon
        and not latest.in_force
        and all(end <= horizon for _, end in therapy_intervals(order, _ALL_TIME))
    )


# --------------------------------------------------------------------------------------------
# time
def _judged_with(state: PatientState, at: float) -> float:
    """The instant judged once an event at ``at`` is applied."""
    return at if state.clock is None else max(at, _judge_time(state))


def _judge_time(state: PatientState) -> float:
    """Evaluation times never move backwards, even when a late event arrives."""
    assert state.clock is not None
    return state.clock if state.evaluated_at is None else max(state.clock, state.evaluated_at)


def next_due(state: PatientState) -> float | None:
    """Earliest instant at which ``advance`` has something to judge."""
    # Asked several times per event (by advance's loop and by every scheduler): no temporaries.
    due = min(state.rule_due.values()) if state.rule_due else None
    step = state.next_step_at
    if step is not None and (due is None or step < due):
        due = step
    if state.pending_at is not None:
        judge = _judge_time(state)
        if due is None or judge < due:
            return judge
    return due


def advance(
    state: PatientState,
    now: float,
    config: RulesConfig = DEFAULT_RULES_CONFIG,
    *,
    inclusive: bool = True,
) -> list[AlertTransition]:
    """Fire everything due up to ``now`` (or strictly before it), in time order."""
    _adopt_rules(state, config, now)
    transitions: list[AlertTransition] = []
    while True:
        due = next_due(state)
        if due is None or due > now or (not inclusive and due >= now):
            return transitions
        transitions.extend(_evaluate(state, due, config))


def _evaluate(state: PatientState, at: float, config: RulesConfig) -> list[AlertTransition]:
    """Judge the rules due by ``at`` and, when the pending instant closes, those its events
    touched; every other rule's findings cannot have changed since it was last judged."""
    if state.next_step_at is not None and state.next_step_at <= at:
        _take_scheduled_steps(state, at)
    closing = state.pending_at is not None and state.pending_at <= at
    names = {name for name, due in state.rule_due.items() if due <= at}
    if closing:
        names.update(state.dirty_rules)
    transitions = _reconcile(state, at, config, [n for n in ALL_RULES if n in names], full=True)
    state.evaluated_at = at
    if closing:
        state.pending_at = None
        state.dirty_rules = []
    return transitions


def _enabled_rules(config: RulesConfig) -> frozenset[str]:
    cached = _ENABLED.get(id(config))
    if cached is None or cached[0] is not config:
        cached = _ENABLED[id(config)] = (
            config, frozenset(name for name in RULES if getattr(config, name).enabled)
        )
    return cached[1]


_ENABLED: dict[int, tuple[RulesConfig, frozenset[str]]] = {}  # RulesConfig is frozen


def _reconcile(
    state: PatientState,
    at: float,
    config: RulesConfig,
    rule_names: Iterable[str],
    *,
    full: bool = False,
) -> list[AlertTransition]:
    names = list(rule_names)
    findings: dict[str, Finding] = {}
    judged = _enabled_rules(config) if state.tracked_at(at) else frozenset()
    if judged.isdisjoint(names):
        # Nothing to judge (not tracked, or only disabled rules): nothing holds, nothing is due.
        if full:
            for name in names:
                state.rule_due.pop(name, None)
    else:
        picture = picture_at(state, at, config.pulse_threshold_mg_per_day)
        diagnosis = state.diagnosis
        ctx = RuleContext(picture, config, tracked_since=diagnosis.at if diagnosis else at)
        for name in names:
            ctx.candidates = []
            if name in judged:
                for finding in RULES[name][1](ctx):
                    findings[finding.slot] = finding
                if name in _PHASE_DEPENDENT:
                    ctx.candidates.extend(picture.change_points)
            if full:
                future = [t for t in ctx.candidates if t > at]
                if future:
                    state.rule_due[name] = min(future)
                else:
                    state.rule_due.pop(name, None)
    transitions: list[AlertTransition] = []
    for slot, alert in list(state.open_alerts.items()):
        if alert.rule in names and slot not in findings:
            del state.open_alerts[slot]
            state.last_resolved[slot] = max(at, alert.raised_at)
            transitions.append(_resolved(state.patient_id, alert, at))
    if transitions:
        state.derived.pop("settle_checked", None)  # an order whose alert resolved can settle
    if not findings:
        return transitions
    for slot, finding in sorted(findings.items(), key=lambda item: item[1].since):
        if slot in state.open_alerts:
            continue
        since = min(finding.since, at)
        episode = slot
        last_resolved = state.last_resolved.get(slot)
        if last_resolved is not None and since <= last_resolved:
            # Holding again after its alert was resolved (e.g. a result entered in error): a new
            # episode from the resolution on, never a second "open" under the resolved alert id.
            since = last_resolved
            episode = f"{slot}@{last_resolved:.3f}"
        alert = OpenAlert(
            alert_id=alert_id_for(state.patient_id, finding.rule, episode, since),
            rule=finding.rule,
            raised_at=since,
            summary=finding.summary[:140],
            evidence=finding.evidence,
        )
        state.open_alerts[slot] = alert
        transitions.append(_opened(state.patient_id, alert, finding))
    return transitions


def _opened(patient_id: str, alert: OpenAlert, finding: Finding) -> AlertTransition:
    return _transition(patient_id, alert, None, finding.detail, finding.suggestions)


def _resolved(patient_id: str, alert: OpenAlert, at: float) -> AlertTransition:
    resolved_at = max(at, alert.raised_at)
    resolution = RULES[alert.rule][0].resolution
    detail = f"Resolved on {to_utc(resolved_at):%Y-%m-%d}: {resolution}."
    return _transition(patient_id, alert, resolved_at, detail, [])


def _transition(
    patient_id: str,
    alert: OpenAlert,
    resolved_at: float | None,
    detail: str,
    suggestions: list[str],
) -> AlertTransition:
    info = RULES[alert.rule][0]
    return AlertTransition(
        alert_id=alert.alert_id,
        patient_id=patient_id,
        rule=alert.rule,
        severity=info.severity,
        status="open" if resolved_at is None else "resolved",
        raised_at=to_utc(alert.raised_at),
        resolved_at=None if resolved_at is None else to_utc(resolved_at),
        summary=alert.summary,
        detail=detail,
        evidence=alert.evidence,
        suggestions=suggestions,
        references=list(info.references),
    )
