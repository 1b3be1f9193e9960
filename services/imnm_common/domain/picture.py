"""The clinical picture of one patient at one instant, derived from state on demand.

Everything here is recomputed from the order versions rather than stored, so a late event or a
same-instant stop-and-replace can never leave a stale course peak or phase behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from imnm_common.domain.knowledge import DrugClass
from imnm_common.domain.state import DAY, DOSED_STATUSES, MedicationOrder, PatientState, TaperPhase

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
    if until >= latest:
        steps = _dose_steps(orders, until)
        state.derived["steps"] = (latest, steps)  # shared: callers treat steps as read-only
        return steps
    return _dose_steps(orders, until)


def _dose_steps(orders: list[MedicationOrder], until: float) -> list[DoseStep]:
    times = sorted({v.at for o in orders for v in o.versions if v.at <= until})
    steps: list[DoseStep] = []
    for at in times:
        total = 0.0
        for order in orders:
            version = order.version_at(at)
            if version is not None and version.in_force:
                total += version.prednisone_equivalent_mg_per_day or 0.0
        if not steps or abs(steps[-1][1] - total) > _EPSILON_MG:
            steps.append((at, total))
    return steps


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


@dataclass
class ClinicalPicture:
    state: PatientState
    at: float
    pulse_threshold: float
    max_gap: float = DAY
    change_points: list[float] = field(default_factory=list)  # future times the phase may change

    @cached_property
    def steps(self) -> list[DoseStep]:
        return dose_steps(self.state, self.at)

    @cached_property
    def prednisone_equivalent_mg_per_day(self) -> float:
        return dose_at(self.steps, self.at)

    def is_pulse(self, mg: float) -> bool:
        return mg >= self.pulse_threshold

    @cached_property
    def course_start(self) -> float | None:
        """Start of the current glucocorticoid course (dose > 0, short gaps bridged)."""
        return bridged_run_start(self.steps, lambda mg: mg > _EPSILON_MG, self.at, self.max_gap)

    @cached_property
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

    @cached_property
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

    @cached_property
    def steroid_sparing_counting(self) -> list[MedicationOrder]:
        return self.orders_counting(DrugClass.STEROID_SPARING)

    @cached_property
    def glucocorticoid_without_dose(self) -> list[MedicationOrder]:
        """Glucocorticoid orders in force whose dose is not a known mass."""
        return [
            o
            for o in self.orders_in_force(DrugClass.GLUCOCORTICOID)
            if (v := o.version_at(self.at)) is not None
            and v.prednisone_equivalent_mg_per_day is None
        ]

    @cached_property
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

    @cached_property
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
        complete = all(self.at >= o.latest.at for o in orders)
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
        merged = merge_intervals(spans)
        if complete:
            self.state.derived["treatment_spans"] = merged
        return merged

    def note_change_points(self) -> None:
        """Future instants where the phase can change without a new event."""
        if self.recently_stopped_at is not None:
            self.change_points.append(self.recently_stopped_at + self.max_gap)
        for order in self.state.orders_of(DrugClass.STEROID_SPARING):
            for _, end in self.intervals(order):
                if end != float("inf") and end > self.at:
                    self.change_points.append(end)
