"""Per-patient IMNM treatment state: compact, plain data, serialisable for a faust table.

Times are POSIX seconds (UTC) internally: cheap to compare, cheap to store. Every record is keyed
by what makes re-applying an event a no-op (order versions by time, results by result or event
id), so idempotence does not depend on the bounded ``seen_event_ids`` window alone.

Order versions, results and scores are named tuples: the tracker encodes a state on every
change, and orjson writes these rows as the arrays they are, with no Python code per row. One-off,
the 1,000 states after a year: 66 -> 45 us per encoded table value (best of 15, LZ4 included).
The price: reading a named tuple's field takes ~10 ns more than a slotted dataclass's, and the
replay, which never encodes, ran ~3% slower (interleaved one-off runs), a trade made for the
tracker, which encodes every state it changes.

Times are stored as the floats they are. Writing whole seconds as integers saved two bytes each,
but decoded states then compared integers with floats, which CPython does more slowly: with
integer event times a replay ran ~10% slower (one-off, interleaved A/B runs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, NamedTuple

import orjson


class TaperPhase(StrEnum):
    UNTREATED = "untreated"
    INDUCTION = "induction"
    TAPER = "taper"
    MAINTENANCE = "maintenance"


IN_FORCE_STATUSES = frozenset({"active", "on-hold"})
DOSED_STATUSES = frozenset({"active", "completed"})  # a dose was (or is being) given


class OrderVersion(NamedTuple):
    at: float
    status: str
    event_id: str
    prednisone_equivalent_mg_per_day: float | None = None  # glucocorticoids with a mass dose
    period_days: float | None = None  # days between administrations, for frequency rules
    dose_text: str = ""
    mg_per_dose: float | None = None  # methotrexate with a mass dose, for its dose range
    # A weight-based glucocorticoid dose ("1 mg/kg"): prednisone-equivalent mg/kg/day. The mg/day
    # above is this times the body weight at the version's time (None while none is known).
    mg_per_kg_per_day: float | None = None

    @property
    def in_force(self) -> bool:
        return self.status in IN_FORCE_STATUSES


@dataclass(slots=True)
class MedicationOrder:
    order_id: str
    classes: list[str]
    agents: list[str]
    label: str
    counts_after_last_dose_days: int | None
    versions: list[OrderVersion] = field(default_factory=list)  # ascending ``at``
    # A taper written as one order: the steps still to come, as the versions they become when
    # the clock reaches them (``engine`` moves them into ``versions`` then, as if the pharmacy
    # had changed the order at that instant).
    # A tuple: an empty one is shared, where an empty list per order cost ~9 MiB per 10,000
    # patients (`make bench`), none of whom has a schedule in a generated year.
    schedule: tuple[OrderVersion, ...] = ()  # ascending ``at``
    # The latest version from an order event, once a scheduled step came after it (None: the
    # latest version is that one). A later order event replaces the schedule from its time on.
    ordered_at: float | None = None
    # From a medication list (FHIR MedicationStatement): what the patient is reported to take,
    # not a hospital order. Its alerts say so, and a statin there is stopped by the patient.
    reported: bool = False

    @property
    def latest(self) -> OrderVersion:
        return self.versions[-1]

    @property
    def latest_ordered_at(self) -> float:
        return self.versions[-1].at if self.ordered_at is None else self.ordered_at

    def version_at(self, at: float) -> OrderVersion | None:
        found = None
        for version in self.versions:
            if version.at > at:
                break
            found = version
        return found

    def in_force_at(self, at: float) -> bool:
        version = self.version_at(at)
        return version is not None and version.in_force

    def in_force_since(self, at: float) -> float | None:
        """Start of the in-force run that contains ``at`` (None when not in force)."""
        since = None
        for version in self.versions:
            if version.at > at:
                break
            if not version.in_force:
                since = None
            elif since is None:
                since = version.at
        return since


class LabValue(NamedTuple):
    at: float
    value: float
    event_id: str
    result_id: str | None = None
    reference_high: float | None = None
    # "<", "<=", ">=", ">": ``value`` only bounds the result (a CK above the analyser's range);
    # the rules draw from it only what every value within the bound would give.
    comparator: str | None = None


class MuscleScore(NamedTuple):
    at: float
    score: float
    event_id: str


@dataclass(slots=True)
class OpenAlert:
    """What the resolved transition needs later; the full text went out with the open one."""

    alert_id: str
    rule: str
    raised_at: float
    summary: str
    evidence: list[str]


@dataclass(slots=True)
class Diagnosis:
    at: float
    status: str
    event_id: str


@dataclass(slots=True)
class SettledOrders:
    """What the orders dropped from a long history still say (see ``engine.settle_orders``).

    An order is settled once it stopped counting (in force or in a post-dose window) before
    ``before``; every later judgment reads it only through these three summaries, so dropping it
    changes no finding. History before ``before`` is final: a version dated earlier for an order
    not kept is stale.
    """

    before: float
    # summed prednisone-equivalent mg/day of the settled orders, as dose steps (0 from the end)
    glucocorticoid_steps: list[tuple[float, float]] = field(default_factory=list)
    # merged intervals in which settled glucocorticoid or steroid-sparing orders counted
    therapy_spans: list[tuple[float, float]] = field(default_factory=list)
    # drug class -> the latest time a settled order of that class stopped counting
    stopped_counting_at: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class PatientState:
    patient_id: str
    diagnosis: Diagnosis | None = None
    antibody: str | None = None
    statin_associated: bool | None = None
    orders: dict[str, MedicationOrder] = field(default_factory=dict)
    creatine_kinase: list[LabValue] = field(default_factory=list)
    tacrolimus_troughs: list[LabValue] = field(default_factory=list)
    mmt8_scores: list[MuscleScore] = field(default_factory=list)
    body_weights: list[LabValue] = field(default_factory=list)  # values in kg
    open_alerts: dict[str, OpenAlert] = field(default_factory=dict)  # by slot
    last_resolved: dict[str, float] = field(default_factory=dict)  # by slot: last resolved_at
    seen_event_ids: list[str] = field(default_factory=list)  # bounded, oldest first
    clock: float | None = None  # latest occurred_at applied
    evaluated_at: float | None = None  # last full evaluation
    pending_at: float | None = None  # an instant whose dose-based rules are not judged yet
    rule_due: dict[str, float] = field(default_factory=dict)  # rule -> its next change time
    dirty_rules: list[str] = field(default_factory=list)  # touched by events not judged yet
    settled: SettledOrders | None = None  # summary of orders dropped from ``orders``
    # The rules configuration the state was judged under (engine.rules_fingerprint): a state
    # judged under other thresholds is judged again, every rule, when next advanced.
    judged_under: str | None = None
    # The earliest scheduled dose step of any order (``MedicationOrder.schedule``): read at every
    # ``engine.next_due``, so kept here rather than looked for; follows from the orders.
    next_step_at: float | None = field(default=None, compare=False)
    # Derived from ``orders`` (kept true by picture.order_recorded); never serialised, never
    # compared.
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Readable form (named fields), for people and ``imnm state``."""
        readable = asdict(replace(self, derived={}))  # derived values hold pictures of self
        readable.pop("derived")
        for order in readable["orders"].values():
            order["versions"] = [version._asdict() for version in order["versions"]]
            order["schedule"] = [version._asdict() for version in order["schedule"]]
        for series in ("creatine_kinase", "tacrolimus_troughs", "mmt8_scores", "body_weights"):
            readable[series] = [row._asdict() for row in readable[series]]
        return readable

    # --- serialisation: positional arrays, because field names would dominate the bytes ---
    def to_bytes(self) -> bytes:
        d = self.diagnosis
        return orjson.dumps([
            _FORMAT,
            self.patient_id,
            [d.at, d.status, d.event_id] if d else None,
            self.antibody,
            self.statin_associated,
            [_order_row(o) for o in self.orders.values()],
            self.creatine_kinase,
            self.tacrolimus_troughs,
            self.mmt8_scores,
            {slot: [a.alert_id, a.rule, a.raised_at, a.summary, a.evidence]
             for slot, a in self.open_alerts.items()},
            self.last_resolved,
            self.seen_event_ids,
            [self.clock, self.evaluated_at, self.pending_at],
            self.rule_due,
            self.dirty_rules,
            _settled_to_list(self.settled),
            self.judged_under,
            self.body_weights,
        ], default=tuple)  # the named tuples

    @classmethod
    def from_bytes(cls, data: bytes | str) -> PatientState:
        raw = orjson.loads(data)
        if not isinstance(raw, list) or not raw or raw[0] not in _FORMATS_READ:
            raise ValueError(f"not a PatientState in format {_FORMAT}")
        # older formats end before settled, judged_under, body_weights
        raw += [None] * (_FIELDS - len(raw))
        (_, patient_id, diagnosis, antibody, statin_associated, orders, cks, troughs, scores,
         alerts, last_resolved, seen, times, rule_due, dirty_rules, settled, judged_under,
         weights) = raw
        state = cls(
            patient_id=patient_id,
            diagnosis=Diagnosis(*diagnosis) if diagnosis else None,
            antibody=antibody,
            statin_associated=statin_associated,
            # inline rather than a helper per order: decoding is on the tracker's path
            orders={
                o[0]: MedicationOrder(o[0], o[1], o[2], o[3], o[4], [_version(v) for v in o[5]])
                for o in orders
            },
            creatine_kinase=[_lab_value(r) for r in cks],
            tacrolimus_troughs=[_lab_value(r) for r in troughs],
            mmt8_scores=[_score(m) for m in scores],
            body_weights=[_lab_value(r) for r in weights or ()],
            open_alerts={_current_slot(slot, a): OpenAlert(*a) for slot, a in alerts.items()},
            last_resolved=last_resolved,
            seen_event_ids=seen,
            clock=times[0],
            evaluated_at=times[1],
            pending_at=times[2],
            rule_due=rule_due,
            dirty_rules=dirty_rules,
            settled=_settled_from_list(settled),
            judged_under=judged_under,
        )
        if max(map(len, orders), default=0) > _ORDER_ROW_WITHOUT_SCHEDULE:
            for row in orders:  # the few orders written as a taper or reported
                if len(row) > _ORDER_ROW_WITHOUT_SCHEDULE:
                    order = state.orders[row[0]]
                    order.ordered_at = row[6]
                    order.schedule = tuple(_version(v) for v in row[7])
                    order.reported = len(row) > _ORDER_ROW_WITHOUT_REPORTED and row[8]
            state.note_schedules()
        return state

    def note_schedules(self) -> None:
        """Keep ``next_step_at`` true after an order's schedule changed."""
        self.next_step_at = min(
            (o.schedule[0].at for o in self.orders.values() if o.schedule), default=None
        )

    def tracked_at(self, at: float) -> bool:
        d = self.diagnosis
        return d is not None and d.status == "active" and d.at <= at

    def orders_of(self, drug_class: str) -> list[MedicationOrder]:
        index = self.derived.get("by_class")
        if index is None:
            index = {}
            for order in self.orders.values():
                for cls in order.classes:
                    index.setdefault(cls, []).append(order)
            self.derived["by_class"] = index
        found: list[MedicationOrder] = index.get(drug_class, [])
        return found


DAY = 86_400.0
_FORMAT = 8
# Format 7: no reported medications (an order row ends at its schedule); still read.
_FORMAT_WITHOUT_REPORTED = 7
# Format 6: orders without a dose schedule (their rows end at the versions, as a format 7 row
# does when the order has none); still read.
_FORMAT_WITHOUT_SCHEDULES = 6
# Format 5: seven-field order versions, no body weights; still read.
_FORMAT_WITHOUT_WEIGHTS = 5
# Format 4: five-field lab rows, six-field order versions, no judged_under; still read.
_FORMAT_WITHOUT_COMPARATOR = 4
_FORMAT_WITHOUT_SETTLED = 3  # written before orders were settled; still read
_FIELDS = 18  # of a format 8 value
_FORMATS_READ = frozenset({
    _FORMAT, _FORMAT_WITHOUT_REPORTED, _FORMAT_WITHOUT_SCHEDULES, _FORMAT_WITHOUT_WEIGHTS,
    _FORMAT_WITHOUT_COMPARATOR,
    _FORMAT_WITHOUT_SETTLED,
})


_score = MuscleScore._make


# Rows of older formats end before ``mg_per_dose``, ``mg_per_kg_per_day`` and ``comparator``:
# the defaults fill in.
def _version(row: list[Any]) -> OrderVersion:
    return OrderVersion(*row)


def _lab_value(row: list[Any]) -> LabValue:
    return LabValue(*row)


_ORDER_ROW_WITHOUT_SCHEDULE = 6  # order_id, classes, agents, label, counts after, versions
_ORDER_ROW_WITHOUT_REPORTED = 8  # ... then ordered_at and the schedule


def _order_row(order: MedicationOrder) -> list[Any]:
    row: list[Any] = [order.order_id, order.classes, order.agents, order.label,
                      order.counts_after_last_dose_days, order.versions]
    if order.schedule or order.ordered_at is not None or order.reported:
        # Only orders written as a taper (or reported) carry these: every other order's row
        # stays as short as in format 6, and every table write copies every row.
        row += [order.ordered_at, order.schedule]
        if order.reported:
            row.append(True)
    return row


_TACROLIMUS_SLOT_BEFORE_SIDES = "tacrolimus_trough_out_of_range"


def _current_slot(slot: str, alert: list[Any]) -> str:
    """The slot an open alert has under today's rules. The tacrolimus alert has one slot per side
    of the range since 2026-12-01; an alert opened before keeps its id under the slot its summary
    ("Tacrolimus trough low: ...") names, rather than being resolved and raised again."""
    if slot != _TACROLIMUS_SLOT_BEFORE_SIDES:
        return slot
    summary = alert[3]  # OpenAlert: alert_id, rule, raised_at, summary, evidence
    return f"{slot}:{'low' if summary.startswith('Tacrolimus trough low') else 'high'}"


def _settled_to_list(settled: SettledOrders | None) -> list[Any] | None:
    if settled is None:
        return None
    return [
        settled.before,
        settled.glucocorticoid_steps,
        settled.therapy_spans,
        settled.stopped_counting_at,
    ]


def _settled_from_list(raw: list[Any] | None) -> SettledOrders | None:
    if raw is None:
        return None
    before, steps, spans, stopped = raw
    return SettledOrders(
        before=before,
        glucocorticoid_steps=[(at, mg) for at, mg in steps],
        therapy_spans=[(start, end) for start, end in spans],
        stopped_counting_at=stopped,
    )
