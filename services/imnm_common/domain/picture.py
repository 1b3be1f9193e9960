"""The clinical picture of one patient at one instant, derived from state on demand.

Everything here is recomputed from the order versions rather than stored, so a late event or a
same-instant stop-and-replace can never leave a stale course peak or phase behind.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from imnm_common.domain.knowledge import DrugClass
from imnm_common.domain.state import (
    DAY,
    DOSED_STATUSES,
    LabValue,
    MedicationOrder,
    PatientState,
    TaperPhase,
)

T = TypeVar("T")


class cached_value(Generic[T]):
    """``functools.cached_property`` without its per-instance lock (Python 3.11 takes one on
    every first access; a picture is never shared between threads)."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> cached_value[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object | None, owner: type) -> T | cached_value[T]:
        if instance is None:
            return self
        value = self.compute(instance)
        instance.__dict__[self.name] = value  # found before this descriptor from now on
        return value


DoseStep = tuple[float, float]  # (from time, prednisone-equivalent mg/day from then on)
_EPSILON_MG = 1e-6


def dose_steps(state: PatientState, until: float) -> list[DoseStep]:
    """Total glucocorticoid dose as a step function of time, up to ``until``."""
    cached = state.derived.get("steps")
    if cached is not None and until >= cached[0]:
        steps: list[DoseStep] = cached[1]
        return steps
    orders = state.orders_of(DrugClass.GLUCOCORTICOID)
    latest = max((o.latest.at for o in orders), default=float("-inf"))
    settled = state.settled.glucocorticoid_steps if state.settled else []
    if until >= latest:
        steps = summed_dose_steps(orders, until, settled)
        state.derived["steps"] = (latest, steps)  # shared: callers treat steps as read-only
        return steps
    return summed_dose_steps(orders, until, settled)


def order_recorded(state: PatientState, order: MedicationOrder, at: float) -> None:
    """Keep what is derived from the order history true after ``order`` got a version at ``at``.

    Derived values (in ``state.derived``): "by_class" orders per drug class, "steps" the dose step
    function with the latest glucocorticoid version time it covers, "intervals" therapy intervals
    per order, "treatment_spans", "latest_version_at", "instants", "picture" (picture_at) and
    "settle_checked" (engine.settle_orders: the horizon at which nothing was left to settle).
    A version at or after every earlier one (the usual, in-order case) only appends to the dose
    steps; a late version rebuilds them.
    """
    derived = state.derived
    if len(order.versions) == 1:
        derived.pop("by_class", None)  # possibly a new order
    derived.pop("picture", None)
    derived.pop("settle_checked", None)  # this version may stop the order before the horizon
    intervals = derived.get("intervals")
    if intervals is not None:
        intervals.pop(order.order_id, None)
    latest = derived.get("latest_version_at")
    in_order = latest is not None and at >= latest
    if latest is not None:
        derived["latest_version_at"] = max(latest, at)
    instants = derived.get("instants")
    if instants is not None and in_order:
        # A superset is still correct (an extra instant only splits a segment): add what the
        # new version can introduce rather than rebuild the list.
        for bounds in therapy_intervals(order, at):
            for instant in bounds:
                if instant != float("inf"):
                    insort(instants, instant)
        insort(instants, at)
    elif instants is not None:
        del derived["instants"]
    if DrugClass.GLUCOCORTICOID in order.classes or DrugClass.STEROID_SPARING in order.classes:
        derived.pop("treatment_spans", None)
    if DrugClass.GLUCOCORTICOID not in order.classes:
        return
    cached = derived.get("steps")
    if cached is None:
        return
    covered, steps = cached
    if at < covered:
        del derived["steps"]
        return
    steps = [step for step in steps if step[0] < at]  # a new list: pictures may hold the old
    # settled orders count only before the settled horizon, which a version rarely precedes
    total = dose_at(state.settled.glucocorticoid_steps, at) if state.settled else 0.0
    for gc_order in state.orders_of(DrugClass.GLUCOCORTICOID):
        version = gc_order.latest  # at or before ``at``: nothing is later
        if version.in_force:
            total += version.prednisone_equivalent_mg_per_day or 0.0
    if not steps or abs(steps[-1][1] - total) > _EPSILON_MG:
        steps.append((at, total))
    derived["steps"] = (at, steps)
    if instants is not None and in_order and total <= _EPSILON_MG:
        insort(instants, at + DAY)  # see _instants_of_change: a recent stop


def orders_removed(state: PatientState, gone: set[str]) -> None:
    """Keep what is derived from the order history true after the orders ``gone`` were settled
    (``engine.settle_orders``). The dose steps, treatment spans, instants of change and the
    picture are the same functions of time as before (that is what settling preserves), so only
    what is kept per order goes."""
    derived = state.derived
    derived.pop("by_class", None)
    intervals = derived.get("intervals")
    if intervals is not None:
        for order_id in gone:
            intervals.pop(order_id, None)
    if "latest_version_at" in derived:
        _latest_version_at(state)  # kept rather than dropped: order_recorded reads it


def summed_dose_steps(
    orders: list[MedicationOrder], until: float, settled: list[DoseStep]
) -> list[DoseStep]:
    """The steps of ``orders`` plus ``settled`` (the summed steps of orders no longer kept)."""
    times = sorted(
        {v.at for o in orders for v in o.versions if v.at <= until}
        | {at for at, _ in settled if at <= until}
    )
    steps: list[DoseStep] = []
    for at in times:
        total = dose_at(settled, at) if settled else 0.0
        for order in orders:
            version = order.version_at(at)
            if version is not None and version.in_force:
                total += version.prednisone_equivalent_mg_per_day or 0.0
        if not steps or abs(steps[-1][1] - total) > _EPSILON_MG:
            steps.append((at, total))
    return steps


def weight_at(weights: list[LabValue], at: float) -> LabValue | None:
    """The body weight a dose ordered at ``at`` is converted with: the latest measured at or
    before it, else the first one after it (a patient weighed the day after the order)."""
    found = None
    for weight in weights:
        if weight.at > at:
            return weight if found is None else found
        found = weight
    return found


def dose_at(steps: list[DoseStep], at: float) -> float:
    dose = 0.0
    for start, mg in steps:
        if start > at:
            break
        dose = mg
    return dose


def bridged_run_start(
    steps: list[DoseStep], holds: Callable[[float], bool], at: float, max_gap: float
) -> float | None:
    """Start of the run of ``holds(dose)`` containing ``at``, ignoring gaps shorter than
    ``max_gap`` (a missed overnight refill is not a new course). None if it does not hold now."""
    index = len(steps) - 1
    while index >= 0 and steps[index][0] > at:
        index -= 1
    if index < 0 or not holds(steps[index][1]):
        return None
    start = steps[index][0]
    i = index - 1
    while i >= 0:
        if holds(steps[i][1]):
            start = steps[i][0]
            i -= 1
            continue
        j = i
        while j >= 0 and not holds(steps[j][1]):
            j -= 1
        gap_start = steps[j + 1][0]
        if j < 0 or start - gap_start >= max_gap:
            break
        i = j
    return start


def merge_intervals(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def therapy_intervals(order: MedicationOrder, until: float) -> list[tuple[float, float]]:
    """When an order counts as therapy: in force, plus the post-dose window of IVIG/rituximab."""
    spans: list[tuple[float, float]] = []
    run_start: float | None = None
    for version in order.versions:
        if version.at > until:
            break
        if version.status == "entered-in-error":
            return []  # never happened
        if version.in_force and run_start is None:
            run_start = version.at
        elif not version.in_force and run_start is not None:
            spans.append((run_start, version.at))
            run_start = None
        if order.counts_after_last_dose_days and version.status in DOSED_STATUSES:
            spans.append((version.at, version.at + order.counts_after_last_dose_days * DAY))
    if run_start is not None:
        spans.append((run_start, float("inf")))
    return merge_intervals(spans)


def picture_at(state: PatientState, at: float, pulse_threshold: float) -> ClinicalPicture:
    """The picture at ``at``, reusing what was derived for an earlier instant of the same segment.

    The picture is a step function of time: every derived value changes only at an order version,
    a dose step, the end of a bridged gap or of a post-dose window (``_instants_of_change``).
    Between two such instants it is the same picture, so the rules judged at every lab result of
    a quiet month share one derivation. Only when no order version lies after ``at`` (a late
    event sees a truncated history, derived afresh).
    """
    picture = ClinicalPicture(state, at, pulse_threshold)
    derived = state.derived
    latest = derived.get("latest_version_at")
    if latest is None:
        latest = _latest_version_at(state)
    if at < latest:
        return picture
    memo = derived.get("picture")
    if memo is not None:
        start, end, threshold, previous = memo
        if start <= at < end and threshold == pulse_threshold:
            # cached values live in the instance dict; the fields are set anew.
            for name, value in previous.__dict__.items():
                if name not in _PICTURE_FIELDS:
                    picture.__dict__[name] = value
            derived["picture"] = (start, end, threshold, picture)
            return picture
    instants = derived.get("instants")
    if instants is None:
        instants = derived["instants"] = _instants_of_change(state, picture)
    index = bisect_right(instants, at)
    start = instants[index - 1] if index else float("-inf")
    end = instants[index] if index < len(instants) else float("inf")
    derived["picture"] = (start, end, pulse_threshold, picture)
    return picture


def _latest_version_at(state: PatientState) -> float:
    latest = max((o.latest.at for o in state.orders.values()), default=float("-inf"))
    state.derived["latest_version_at"] = latest
    return latest


def _instants_of_change(state: PatientState, picture: ClinicalPicture) -> list[float]:
    """Every instant at which a picture derived from the complete order history can change."""
    instants: set[float] = set()
    for order in state.orders.values():
        instants.update(v.at for v in order.versions)
        for start, end in picture.intervals(order):
            instants.add(start)
            instants.add(end)
    for start, mg_per_day in picture.steps:
        instants.add(start)
        if mg_per_day <= _EPSILON_MG:
            instants.add(start + DAY)  # a stop is "recent" for one bridged gap (max_gap)
    if state.settled is not None:
        # Settled orders changed the picture only before this: no segment spans it.
        instants.add(state.settled.before)
    instants.discard(float("inf"))
    return sorted(instants)


@dataclass
class ClinicalPicture:
    state: PatientState
    at: float
    pulse_threshold: float
    max_gap: float = DAY

    @cached_value
    def steps(self) -> list[DoseStep]:
        return dose_steps(self.state, self.at)

    @cached_value
    def prednisone_equivalent_mg_per_day(self) -> float:
        return dose_at(self.steps, self.at)

    def is_pulse(self, mg: float) -> bool:
        return mg >= self.pulse_threshold

    @cached_value
    def course_start(self) -> float | None:
        """Start of the current glucocorticoid course (dose > 0, short gaps bridged)."""
        return bridged_run_start(self.steps, lambda mg: mg > _EPSILON_MG, self.at, self.max_gap)

    @cached_value
    def recently_stopped_at(self) -> float | None:
        """When the dose fell to zero, if that was less than ``max_gap`` ago (still one course)."""
        if self.prednisone_equivalent_mg_per_day > _EPSILON_MG or not self.steps:
            return None
        last_start = max(start for start, _ in self.steps if start <= self.at)
        if self.at - last_start < self.max_gap and any(mg > 0 for _, mg in self.steps):
            return last_start
        return None

    def _course_segments(self) -> list[DoseStep]:
        start = self.course_start
        if start is None and self.recently_stopped_at is not None:
            start = bridged_run_start(
                self.steps, lambda mg: mg > _EPSILON_MG, self.recently_stopped_at - 1e-3,
                self.max_gap,
            )
        if start is None:
            return []
        return [(s, mg) for s, mg in self.steps if s >= start and s <= self.at]

    @cached_value
    def _course_phases(self) -> tuple[float | None, TaperPhase | None, float | None]:
        """(course peak, glucocorticoid phase now, start of the current taper)."""
        peak: float | None = None
        phase: TaperPhase | None = None
        taper_start: float | None = None
        for start, mg in self._course_segments():
            if mg <= _EPSILON_MG:
                continue  # a bridged gap keeps the phase it interrupts
            if self.is_pulse(mg):
                phase = TaperPhase.INDUCTION
                taper_start = None
                continue
            if peak is None or mg >= peak - _EPSILON_MG:
                peak = mg if peak is None else max(peak, mg)
                phase = TaperPhase.INDUCTION
                taper_start = None
            else:
                if phase is not TaperPhase.TAPER:
                    taper_start = start
                phase = TaperPhase.TAPER
        return peak, phase, taper_start

    @property
    def course_peak_mg_per_day(self) -> float | None:
        return self._course_phases[0]

    @property
    def taper_started_at(self) -> float | None:
        return self._course_phases[2] if self.phase is TaperPhase.TAPER else None

    def intervals(self, order: MedicationOrder) -> list[tuple[float, float]]:
        """``therapy_intervals`` of an order, cached in the state while its versions last."""
        if self.at < order.latest.at:
            return therapy_intervals(order, self.at)
        cache: dict[str, list[tuple[float, float]]] = self.state.derived.setdefault(
            "intervals", {}
        )
        spans = cache.get(order.order_id)
        if spans is None:
            spans = cache[order.order_id] = therapy_intervals(order, self.at)
        return spans

    def orders_counting(self, drug_class: DrugClass) -> list[MedicationOrder]:
        return [
            o
            for o in self.state.orders_of(drug_class)
            if any(s <= self.at < e for s, e in self.intervals(o))
        ]

    def orders_in_force(self, drug_class: DrugClass) -> list[MedicationOrder]:
        return [o for o in self.state.orders_of(drug_class) if o.in_force_at(self.at)]

    @cached_value
    def steroid_sparing_counting(self) -> list[MedicationOrder]:
        return self.orders_counting(DrugClass.STEROID_SPARING)

    @cached_value
    def glucocorticoid_without_dose(self) -> list[MedicationOrder]:
        """Glucocorticoid orders in force whose dose is not a known mass."""
        return [
            o
            for o in self.orders_in_force(DrugClass.GLUCOCORTICOID)
            if (v := o.version_at(self.at)) is not None
            and v.prednisone_equivalent_mg_per_day is None
        ]

    @cached_value
    def phase(self) -> TaperPhase:
        gc_phase = self._course_phases[1]
        on_glucocorticoid = (
            self.prednisone_equivalent_mg_per_day > _EPSILON_MG
            or self.recently_stopped_at is not None
        )
        if on_glucocorticoid and gc_phase is not None:
            return gc_phase
        if self.glucocorticoid_without_dose:
            # Exposure of unknown size (dose in tablets, mL or absent): treated, and judged as
            # strictly as induction, but there is no peak to taper from.
            return TaperPhase.INDUCTION
        if self.steroid_sparing_counting:
            return TaperPhase.MAINTENANCE
        return TaperPhase.UNTREATED

    @cached_value
    def treatment_started_at(self) -> float | None:
        """Start of the current uninterrupted immunotherapy (glucocorticoid or steroid-sparing)."""
        if self.phase is TaperPhase.UNTREATED:
            return None
        for start, end in self._treatment_spans():
            if start <= self.at < end:
                return start
        return None

    def _treatment_spans(self) -> list[tuple[float, float]]:
        orders = self.state.orders_of(DrugClass.GLUCOCORTICOID) + self.state.orders_of(
            DrugClass.STEROID_SPARING
        )
        # "latest_version_at", where known, is at or after every order's latest version
        latest = self.state.derived.get("latest_version_at")
        complete = (latest is not None and self.at >= latest) or all(
            self.at >= o.latest.at for o in orders
        )
        if complete and "treatment_spans" in self.state.derived:
            cached: list[tuple[float, float]] = self.state.derived["treatment_spans"]
            return cached
        spans: list[tuple[float, float]] = []
        run: float | None = None
        for start, mg in self.steps:
            if mg > _EPSILON_MG and run is None:
                run = start
            elif mg <= _EPSILON_MG and run is not None:
                spans.append((run, start + self.max_gap))
                run = None
        if run is not None:
            spans.append((run, float("inf")))
        for order in self.state.orders_of(DrugClass.STEROID_SPARING):
            spans.extend(self.intervals(order))
        for order in self.state.orders_of(DrugClass.GLUCOCORTICOID):
            spans.extend(self.intervals(order))  # incl. doses of unknown size
        if self.state.settled is not None:
            spans.extend(self.state.settled.therapy_spans)
        merged = merge_intervals(spans)
        if complete:
            self.state.derived["treatment_spans"] = merged
        return merged

    @cached_value
    def change_points(self) -> list[float]:
        """Future instants where the phase can change without a new event."""
        points = []
        if self.recently_stopped_at is not None:
            points.append(self.recently_stopped_at + self.max_gap)
        for order in self.state.orders_of(DrugClass.STEROID_SPARING):
            for _, end in self.intervals(order):
                if end != float("inf") and end > self.at:
                    points.append(end)
        return points


_PICTURE_FIELDS = frozenset({"state", "at", "pulse_threshold", "max_gap"})
