"""The IMNM alert rules: each a function from the clinical picture to findings.

A finding says "this condition holds now" for one slot (a rule, or a rule and an order). The engine
opens an alert when a slot first holds and resolves it when it stops holding: level-triggered, so a
replay from any point and a live stream agree. Rule documentation for clinicians: docs/rules.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

from imnm_common.domain.config import (
    MonitoringConfig,
    RulesConfig,
    SustainedGlucocorticoidConfig,
)
from imnm_common.domain.knowledge import DrugClass
from imnm_common.domain.picture import (
    ClinicalPicture,
    bridged_run_start,
    dose_at,
    therapy_intervals,
    weight_at,
)
from imnm_common.domain.state import (
    DAY,
    LabValue,
    MedicationOrder,
    MuscleScore,
    OrderVersion,
    TaperPhase,
)

SEED = "IMNM treatment guidance (project clinical source: shared/seeds/imnm-treatment.txt)"


@dataclass(frozen=True, slots=True)
class RuleInfo:
    rule: str
    severity: str
    references: tuple[str, ...]
    resolution: str
    immediate: bool = False  # judged on every event, not only when an instant closes


@dataclass(slots=True)
class Finding:
    slot: str
    rule: str
    since: float
    summary: str
    detail: str
    evidence: list[str]
    suggestions: list[str]


@dataclass(slots=True)
class RuleContext:
    picture: ClinicalPicture
    config: RulesConfig
    tracked_since: float
    candidates: list[float] = field(default_factory=list)  # future re-evaluation times

    def due(self, when: float) -> None:
        if when > self.picture.at:
            self.candidates.append(when)


def day(ts: float) -> str:
    return _utc_day(int(ts // DAY))


@lru_cache(maxsize=4096)
def _utc_day(days_since_epoch: int) -> str:
    # Alert texts quote a handful of dates again and again; strftime is the costly part.
    return date.fromordinal(_EPOCH_ORDINAL + days_since_epoch).isoformat()


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def mg(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def proven_above(result: LabValue, limit: float) -> bool:
    """Every value the result allows is above ``limit`` (a bound proves only one side)."""
    comparator = result.comparator
    if comparator is None or comparator == ">=":
        return result.value > limit
    if comparator == ">":
        return result.value >= limit
    return False  # "<", "<=": no lower bound


def proven_below(result: LabValue, limit: float) -> bool:
    """Every value the result allows is below ``limit``."""
    comparator = result.comparator
    if comparator is None or comparator == "<=":
        return result.value < limit
    if comparator == "<":
        return result.value <= limit
    return False  # ">", ">=": no upper bound


def shown(result: LabValue) -> str:
    """The result as the laboratory reported it: "2000", ">2000"."""
    return f"{result.comparator or ''}{result.value:g}"


def _order_evidence(orders: list[MedicationOrder], at: float) -> list[str]:
    ids: list[str] = []
    for order in orders:
        version = order.version_at(at)
        if version is not None:
            ids.append(version.event_id)
    return ids


def _weight_basis(p: ClinicalPicture, orders: list[MedicationOrder]) -> tuple[str, list[str]]:
    """Which body weights the weight-based (mg/kg) doses in force were converted with: a
    sentence for the detail and the weight results' event ids for the evidence."""
    used: dict[str, LabValue] = {}
    for order in orders:
        version = order.version_at(p.at)
        if (
            version is not None
            and version.mg_per_kg_per_day is not None
            and version.prednisone_equivalent_mg_per_day is not None
        ):
            weight = weight_at(p.state.body_weights, version.at)
            if weight is not None:
                used[weight.event_id] = weight
    if not used:
        return "", []
    weights = " and ".join(f"{mg(w.value)} kg on {day(w.at)}" for w in used.values())
    return f" Weight-based doses are converted with the body weight of {weights}.", list(used)


def left_force_last(orders: list[MedicationOrder], at: float) -> float | None:
    """Latest time any of these orders stopped counting (for "became due when X stopped")."""
    latest = None
    for order in orders:
        was_in_force = False
        for version in order.versions:
            if version.at > at:
                break
            if was_in_force and not version.in_force:
                latest = version.at if latest is None else max(latest, version.at)
            was_in_force = version.in_force
        if order.counts_after_last_dose_days:  # IVIG, rituximab: when the post-dose window closed
            for _, end in therapy_intervals(order, at):
                if end <= at:
                    latest = end if latest is None else max(latest, end)
    return latest


# ---------------------------------------------------------------------------------------------
# 1. statin_active
def statin_active(ctx: RuleContext) -> list[Finding]:
    p = ctx.picture
    state = p.state
    findings = []
    for order in p.orders_in_force(DrugClass.STATIN):
        since = max(order.in_force_since(p.at) or p.at, ctx.tracked_since)
        version = order.version_at(p.at)
        assert version is not None
        context = []
        if state.statin_associated:
            context.append("this patient's IMNM is documented as statin-associated")
        if state.antibody == "anti-HMGCR":
            context.append("anti-HMGCR antibodies are positive")
        why = f" ({'; '.join(context)})" if context else ""
        dose = version.dose_text or "dose n/a"
        since_day = day(order.in_force_since(p.at) or p.at)
        if order.reported:
            # taken at home, not given here: the patient stops it, and the list must say so
            summary = f"Statin on the medication list ({order.label}) in a patient with IMNM"
            said = (f"The medication list ({order.order_id}) says the patient takes {order.label} "
                    f"({dose}), {version.status} since {since_day}.")
            stop = "Tell the patient to stop the statin now, and mark it stopped on the list"
        else:
            summary = f"Active statin order ({order.label}) in a patient with IMNM"
            said = (f"Order {order.order_id} for {order.label} ({dose}) is {version.status} "
                    f"since {since_day}.")
            stop = "Discontinue the statin now and do not re-challenge"
        findings.append(
            Finding(
                slot=f"statin_active:{order.order_id}",
                rule="statin_active",
                since=since,
                summary=summary,
                detail=(
                    f"{said} Statins can trigger and sustain anti-HMGCR necrotizing myopathy{why}; "
                    "statin therapy must be discontinued immediately and permanently."
                ),
                evidence=[version.event_id, *_diagnosis_evidence(ctx)],
                suggestions=[
                    stop,
                    "Record statin intolerance (HMGCR myopathy) as an allergy/contraindication",
                    "If lipid lowering is needed, discuss non-statin options with the prescriber",
                ],
            )
        )
    return findings


def _diagnosis_evidence(ctx: RuleContext) -> list[str]:
    d = ctx.picture.state.diagnosis
    return [d.event_id] if d else []


# ---------------------------------------------------------------------------------------------
# 2-5. sustained glucocorticoid exposure without a protective agent
@dataclass(frozen=True, slots=True)
class _MissingCover:
    rule: str
    summary: str
    missing: Callable[[ClinicalPicture], tuple[list[str], float | None]]
    why: str
    suggestions: tuple[str, ...]


def _missing(
    *classes: DrugClass, counting: bool = False
) -> Callable[[ClinicalPicture], tuple[list[str], float | None]]:
    """The classes absent now, and the latest time any order of them stopped counting."""

    def check(p: ClinicalPicture) -> tuple[list[str], float | None]:
        absent: list[str] = []
        orders: list[MedicationOrder] = []
        for cls in classes:
            present = p.orders_counting(cls) if counting else p.orders_in_force(cls)
            if not present:
                absent.append(cls.value.replace("_", " "))
            orders.extend(p.state.orders_of(cls))
        if not absent:
            return absent, None
        stopped = [left_force_last(orders, p.at)]
        if p.state.settled is not None:
            settled_stops = p.state.settled.stopped_counting_at
            stopped.extend(settled_stops.get(cls) for cls in classes)
        return absent, max((at for at in stopped if at is not None), default=None)

    return check


_COVER = {
    "pjp_prophylaxis_missing": _MissingCover(
        "pjp_prophylaxis_missing",
        "No Pneumocystis prophylaxis on high-dose glucocorticoid",
        _missing(DrugClass.PJP_PROPHYLAXIS),
        "Pneumocystis jirovecii pneumonia prophylaxis is indicated on high-dose glucocorticoids",
        (
            "Start trimethoprim-sulfamethoxazole prophylaxis (e.g. 1 single-strength tablet daily "
            "or 1 double-strength tablet three times weekly)",
            "If sulfonamide-allergic: dapsone, atovaquone or inhaled pentamidine",
        ),
    ),
    "calcium_vitamin_d_missing": _MissingCover(
        "calcium_vitamin_d_missing",
        "Calcium/vitamin D supplementation missing on glucocorticoid",
        _missing(DrugClass.CALCIUM, DrugClass.VITAMIN_D),
        "calcium and vitamin D supplementation is part of glucocorticoid bone protection",
        ("Add calcium and vitamin D supplements (e.g. calcium carbonate with cholecalciferol)",),
    ),
    "bone_protection_review": _MissingCover(
        "bone_protection_review",
        "Bone protection review due on long-term glucocorticoid",
        _missing(DrugClass.BONE_PROTECTION),
        "long-term glucocorticoids cause osteoporosis and fractures; consider bisphosphonates",
        (
            "Assess fracture risk (FRAX with glucocorticoid adjustment, bone densitometry)",
            "Consider a bisphosphonate (e.g. alendronate) or an alternative bone agent",
        ),
    ),
    "steroid_sparing_agent_missing": _MissingCover(
        "steroid_sparing_agent_missing",
        "No steroid-sparing agent alongside high-dose glucocorticoid",
        _missing(DrugClass.STEROID_SPARING, counting=True),
        "IMNM is treated with glucocorticoids combined with a steroid-sparing agent from the "
        "start; monotherapy is frequently insufficient",
        (
            "Start a steroid-sparing agent: methotrexate 15-25 mg weekly, azathioprine "
            "2-3 mg/kg/day or mycophenolate mofetil 2-3 g/day",
            "Consider early IVIG (anti-HMGCR) or rituximab (anti-SRP) per antibody status",
        ),
    ),
}


def _sustained_rule(rule: str) -> Callable[[RuleContext], list[Finding]]:
    cover = _COVER[rule]

    def evaluate(ctx: RuleContext) -> list[Finding]:
        cfg: SustainedGlucocorticoidConfig = getattr(ctx.config, rule)
        p = ctx.picture
        threshold = cfg.min_mg_per_day
        if p.prednisone_equivalent_mg_per_day < threshold:
            return []  # the common case, decided without walking the dose history
        run_start = bridged_run_start(
            p.steps, lambda mg_day: mg_day >= threshold, p.at, cfg.max_gap_hours * 3600.0
        )
        if run_start is None:
            return []
        due_at = run_start + cfg.min_days * DAY
        if p.at < due_at:
            ctx.due(due_at)
            return []
        absent, stopped = cover.missing(p)
        if not absent:
            return []
        # After a short (bridged) gap the condition holds again only from the restart: a new
        # episode, so a new alert id rather than a re-open of the resolved one.
        restarted = bridged_run_start(p.steps, lambda mg_day: mg_day >= threshold, p.at, 0.0)
        since = max(due_at, ctx.tracked_since, stopped or due_at, restarted or due_at)
        dose = p.prednisone_equivalent_mg_per_day
        gc_orders = p.orders_in_force(DrugClass.GLUCOCORTICOID)
        days_on = (p.at - run_start) / DAY
        weight_note, weight_evidence = _weight_basis(p, gc_orders)
        return [
            Finding(
                slot=rule,
                rule=rule,
                since=since,
                summary=cover.summary,
                detail=(
                    f"Glucocorticoid {mg(dose)} mg/day prednisone-equivalent now, at or above "
                    f"{mg(threshold)} mg/day continuously since {day(run_start)} "
                    f"({days_on:.0f} days; threshold {cfg.min_days:g} days), with no "
                    f"{' and no '.join(absent)} in force: {cover.why}.{weight_note}"
                ),
                evidence=_order_evidence(gc_orders, p.at) + weight_evidence,
                suggestions=list(cover.suggestions),
            )
        ]

    return evaluate


# ---------------------------------------------------------------------------------------------
# 6-7. monitoring overdue
def _monitoring_rule(
    rule: str, what: str, suggestion: str
) -> Callable[[RuleContext], list[Finding]]:
    def evaluate(ctx: RuleContext) -> list[Finding]:
        cfg: MonitoringConfig = getattr(ctx.config, rule)
        p = ctx.picture
        treated_since = p.treatment_started_at
        if treated_since is None:
            return []
        series = p.state.creatine_kinase if rule == "ck_monitoring_overdue" else p.state.mmt8_scores
        last = _latest_until(series, p.at)
        reference = max(treated_since, last[0]) if last else treated_since
        limit_days = (
            cfg.maintenance_days if p.phase is TaperPhase.MAINTENANCE else cfg.induction_taper_days
        )
        due_at = reference + limit_days * DAY
        for days in (cfg.induction_taper_days, cfg.maintenance_days):
            ctx.due(reference + days * DAY)
        if p.at < due_at:
            return []
        since = max(due_at, ctx.tracked_since)
        if p.phase is not TaperPhase.MAINTENANCE and p.course_start is not None:
            # The induction/taper limit applies only since the glucocorticoid course began.
            since = max(since, p.course_start)
        last_text = f"the last on {day(last[0])}" if last else "none on record"
        return [
            Finding(
                slot=rule,
                rule=rule,
                since=since,
                summary=f"{what} overdue ({p.phase.value} phase)",
                detail=(
                    f"No {what} for {(p.at - reference) / DAY:.0f} days ({last_text}; treatment "
                    f"since {day(treated_since)}). In the {p.phase.value} phase it is due every "
                    f"{limit_days:g} days to judge disease activity and guide the taper."
                ),
                evidence=[last[1]] if last else [],
                suggestions=[suggestion],
            )
        ]

    return evaluate


def _latest_until(series: Sequence[LabValue | MuscleScore], at: float) -> tuple[float, str] | None:
    """(time, event id) of the latest result at or before ``at`` (the largest event id among
    results of that same time). The series are kept in time order."""
    latest: tuple[float, str] | None = None
    for result in reversed(series):
        if result.at > at:
            continue
        if latest is not None and result.at < latest[0]:
            break
        if latest is None or result.event_id > latest[1]:
            latest = (result.at, result.event_id)
    return latest


# ---------------------------------------------------------------------------------------------
# 8. taper_too_fast
def taper_too_fast(ctx: RuleContext) -> list[Finding]:
    cfg = ctx.config.taper_too_fast
    p = ctx.picture
    dose = p.prednisone_equivalent_mg_per_day
    window_start = p.at - cfg.window_days * DAY
    steps = p.steps
    reference: tuple[float, float] | None = None  # (mg, from)
    for index, (start, mg_day) in enumerate(steps):
        end = steps[index + 1][0] if index + 1 < len(steps) else float("inf")
        if end <= window_start or p.is_pulse(mg_day):
            continue
        if mg_day > dose:
            ctx.due(end + cfg.window_days * DAY)  # when this higher dose leaves the window
        if reference is None or mg_day > reference[0]:
            reference = (mg_day, start)
    if dose <= 0 or p.is_pulse(dose) or reference is None:
        return []
    ref_mg, ref_from = reference
    reduction = ref_mg - dose
    if not (dose < ref_mg * (1 - cfg.max_reduction_fraction) and reduction > cfg.min_reduction_mg):
        return []
    changed_at = max(start for start, _ in steps if start <= p.at)
    gc_orders = p.orders_in_force(DrugClass.GLUCOCORTICOID)
    weight_note, weight_evidence = _weight_basis(p, gc_orders)
    return [
        Finding(
            slot="taper_too_fast",
            rule="taper_too_fast",
            since=max(changed_at, ctx.tracked_since),
            summary=f"Glucocorticoid taper too fast: {mg(ref_mg)} to {mg(dose)} mg/day",
            detail=(
                f"Prednisone-equivalent dose reduced to {mg(dose)} mg/day on {day(changed_at)}, "
                f"{reduction / ref_mg:.0%} ({mg(reduction)} mg) below {mg(ref_mg)} mg/day, the "
                f"highest non-pulse dose of the previous {cfg.window_days:g} days (from "
                f"{day(ref_from)}). Recommended: reduce by 10-20% every 4 weeks; relapse is "
                f"common during tapering.{weight_note}"
            ),
            evidence=_order_evidence(gc_orders, p.at) + weight_evidence,
            suggestions=[
                f"Confirm the intended dose; a 20% step from {mg(ref_mg)} mg/day is "
                f"{mg(ref_mg * 0.8)} mg/day",
                "Monitor CK and muscle strength closely during the taper",
            ],
        )
    ]


# ---------------------------------------------------------------------------------------------
# 9. taper_relapse_risk
def _dose_not_raised_since(steps: list[tuple[float, float]], result_at: float, at: float
                           ) -> float:
    """When the dose last came back to at most its level at ``result_at``: a raise resolves the
    finding, undoing the raise makes it hold again from then (a new episode, a new alert id)."""
    limit = dose_at(steps, result_at) + 1e-6
    since, raised = result_at, False
    for start, mg_day in steps:
        if start <= result_at or start > at:
            continue
        if mg_day > limit:
            raised = True
        elif raised:
            since, raised = start, False
    return since


def taper_relapse_risk(ctx: RuleContext) -> list[Finding]:
    cfg = ctx.config.taper_relapse_risk
    p = ctx.picture
    taper_start = p.taper_started_at
    if taper_start is None:
        return []
    dose = p.prednisone_equivalent_mg_per_day
    reasons: list[str] = []
    evidence: list[str] = []
    since: float | None = None
    cks = [r for r in p.state.creatine_kinase if taper_start <= r.at <= p.at]
    # A result reported as a lower bound (">2000") cannot be the lowest: its value is unknown
    # from above. One reported as an upper bound ("<20") can, by that bound.
    bounded = [r for r in cks if r.comparator not in (">", ">=")]
    if cks and bounded:
        latest = max(cks, key=lambda r: r.at)
        lowest = min(bounded, key=lambda r: r.value)
        upper = latest.reference_high or cfg.default_ck_upper_limit
        if (
            proven_above(latest, upper)
            and proven_above(latest, cfg.ck_rise_factor * lowest.value)
            and dose <= dose_at(p.steps, latest.at) + 1e-6
        ):
            ratio = f"{latest.value / lowest.value:.1f}x" if lowest.value > 0 else "above"
            if latest.comparator or lowest.comparator:
                ratio = f"at least {ratio}"  # the bounds leave the true ratio larger
            reasons.append(
                f"CK {shown(latest)} U/L on {day(latest.at)} is above the upper limit "
                f"({upper:g}) and {ratio} the lowest CK since the "
                f"taper began ({shown(lowest)} U/L on {day(lowest.at)})"
            )
            evidence += [lowest.event_id, latest.event_id]
            since = _dose_not_raised_since(p.steps, latest.at, p.at)
    scores = [s for s in p.state.mmt8_scores if taper_start <= s.at <= p.at]
    if scores:
        latest_score = max(scores, key=lambda s: s.at)
        best = max(scores, key=lambda s: s.score)
        if (
            latest_score.score < best.score
            and latest_score.score <= (1 - cfg.mmt8_drop_fraction) * best.score + 1e-9
            and dose <= dose_at(p.steps, latest_score.at) + 1e-6
        ):
            reasons.append(
                f"MMT-8 {latest_score.score:g} on {day(latest_score.at)} is "
                f"{1 - latest_score.score / best.score:.0%} below the best since the taper "
                f"began ({best.score:g} on {day(best.at)})"
            )
            evidence += [best.event_id, latest_score.event_id]
            score_since = _dose_not_raised_since(p.steps, latest_score.at, p.at)
            since = score_since if since is None else min(since, score_since)
    if not reasons or since is None:
        return []
    return [
        Finding(
            slot="taper_relapse_risk",
            rule="taper_relapse_risk",
            since=max(since, ctx.tracked_since),
            summary="Possible IMNM relapse during glucocorticoid taper",
            detail=(
                f"In taper since {day(taper_start)} at {mg(dose)} mg/day prednisone-equivalent: "
                + "; ".join(reasons)
                + ". Relapse is common during tapering. Corticosteroid-induced myopathy (normal "
                "CK) can mimic a flare."
            ),
            evidence=evidence,
            suggestions=[
                "Review disease activity; consider a temporary glucocorticoid dose increase",
                "Review the steroid-sparing regimen (add or switch agent, IVIG, rituximab)",
                "If CK is normal and weakness is proximal, consider steroid myopathy",
            ],
        )
    ]


# ---------------------------------------------------------------------------------------------
# 10. methotrexate_daily_dosing
def _methotrexate_holding(
    p: ClinicalPicture, holds: Callable[[OrderVersion], bool]
) -> Iterator[tuple[MedicationOrder, OrderVersion, float]]:
    """Methotrexate orders in force whose current version ``holds``: the order, that version
    and the start of the order's uninterrupted run of in-force versions that hold."""
    for order in p.orders_in_force(DrugClass.STEROID_SPARING):
        if "methotrexate" not in order.agents:
            continue
        version = order.version_at(p.at)
        if version is None or not holds(version):
            continue
        since = version.at
        for older in reversed(order.versions[: order.versions.index(version)]):
            if not older.in_force or not holds(older):
                break
            since = older.at
        yield order, version, since


def methotrexate_daily_dosing(ctx: RuleContext) -> list[Finding]:
    cfg = ctx.config.methotrexate_daily_dosing

    def more_often_than_weekly(version: OrderVersion) -> bool:
        return version.period_days is not None and version.period_days < cfg.min_period_days

    findings = []
    for order, version, since in _methotrexate_holding(ctx.picture, more_often_than_weekly):
        findings.append(
            Finding(
                slot=f"methotrexate_daily_dosing:{order.order_id}",
                rule="methotrexate_daily_dosing",
                since=max(since, ctx.tracked_since),
                summary=f"Methotrexate ordered more often than weekly ({version.dose_text})",
                detail=(
                    f"Order {order.order_id} ({order.label}, {version.dose_text}) gives a dose "
                    f"every {version.period_days:g} day(s). Methotrexate for IMNM is given once "
                    "weekly (15-25 mg weekly); daily dosing causes fatal bone-marrow, mucosal and "
                    "liver toxicity."
                ),
                evidence=[version.event_id],
                suggestions=[
                    "Hold and verify the order with the prescriber: methotrexate is ONCE WEEKLY",
                    "Prescribe folic acid alongside weekly methotrexate",
                ],
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------
# 11. tacrolimus_trough_out_of_range
def tacrolimus_trough_out_of_range(ctx: RuleContext) -> list[Finding]:
    cfg = ctx.config.tacrolimus_trough_out_of_range
    p = ctx.picture
    troughs = [t for t in p.state.tacrolimus_troughs if t.at <= p.at]
    if not troughs:
        return []
    latest = max(troughs, key=lambda t: t.at)
    # A bound ("<2" below the assay's range) is out of range only if every value it allows is.
    if proven_below(latest, cfg.low_ng_per_ml):
        direction = "low"
    elif proven_above(latest, cfg.high_ng_per_ml):
        direction = "high"
    else:
        return []
    return [
        Finding(
            # One slot per direction: a trough that swings from low to high must not leave the
            # "low" alert open, whose advice (raise the dose) has become the opposite of right.
            slot=f"tacrolimus_trough_out_of_range:{direction}",
            rule="tacrolimus_trough_out_of_range",
            since=max(latest.at, ctx.tracked_since),
            summary=f"Tacrolimus trough {direction}: {shown(latest)} ng/mL (target "
            f"{cfg.low_ng_per_ml:g}-{cfg.high_ng_per_ml:g})",
            detail=(
                f"Tacrolimus trough {shown(latest)} ng/mL on {day(latest.at)} is outside the "
                f"target range {cfg.low_ng_per_ml:g}-{cfg.high_ng_per_ml:g} ng/mL for refractory "
                "IMNM: "
                + (
                    "under-immunosuppression risks relapse."
                    if direction == "low"
                    else "nephrotoxicity, neurotoxicity and infection risk rise."
                )
            ),
            evidence=[latest.event_id],
            suggestions=[
                "Confirm it was a true trough (drawn before the morning dose)",
                "Adjust the tacrolimus dose and repeat the level",
            ],
        )
    ]


# ---------------------------------------------------------------------------------------------
# 12. methotrexate_dose_above_range
def methotrexate_dose_above_range(ctx: RuleContext) -> list[Finding]:
    cfg = ctx.config.methotrexate_dose_above_range
    daily = ctx.config.methotrexate_daily_dosing

    def above_range(version: OrderVersion) -> bool:
        # Doses more often than weekly are methotrexate_daily_dosing's (one alert for one
        # wrong order, not two); without a frequency the dose alone is judged.
        return (
            version.mg_per_dose is not None
            and version.mg_per_dose > cfg.max_mg_per_week
            and (version.period_days is None or version.period_days >= daily.min_period_days)
        )

    findings = []
    for order, version, since in _methotrexate_holding(ctx.picture, above_range):
        dose = mg(version.mg_per_dose or 0.0)
        findings.append(
            Finding(
                slot=f"methotrexate_dose_above_range:{order.order_id}",
                rule="methotrexate_dose_above_range",
                since=max(since, ctx.tracked_since),
                summary=f"Methotrexate {dose} mg per dose, above {mg(cfg.max_mg_per_week)} mg "
                "weekly",
                detail=(
                    f"Order {order.order_id} ({order.label}, {version.dose_text}) gives "
                    f"{dose} mg of methotrexate in one dose, more than the "
                    f"{mg(cfg.max_mg_per_week)} mg a week at the top of the IMNM range "
                    "(15-25 mg once weekly). A slipped decimal (75 mg for 7.5 mg) is the "
                    "classic cause; an overdose causes fatal bone-marrow, mucosal and liver "
                    "toxicity."
                ),
                evidence=[version.event_id],
                suggestions=[
                    "Hold and verify the dose with the prescriber before the next dose",
                    "Check the units and the decimal point of the ordered dose",
                    "Prescribe folic acid alongside weekly methotrexate",
                ],
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------
# 13. body_weight_missing
def _weight_based_run(order: MedicationOrder, at: float) -> tuple[float, OrderVersion] | None:
    """The start of the order's uninterrupted in-force run of weight-based versions up to
    ``at``, and its version at ``at``; None when that version is not one of them."""
    since: float | None = None
    current: OrderVersion | None = None
    for version in order.versions:
        if version.at > at:
            break
        current = version
        if version.in_force and version.mg_per_kg_per_day is not None:
            since = version.at if since is None else since
        else:
            since = None
    return None if since is None or current is None else (since, current)


def body_weight_missing(ctx: RuleContext) -> list[Finding]:
    """A glucocorticoid ordered in mg/kg with no body weight to convert it: its dose is unknown,
    so the dose rules (2-5, 8, 9) cannot judge it."""
    p = ctx.picture
    if p.state.body_weights:
        return []  # every weight-based version converts (with the nearest weight)
    grace = ctx.config.body_weight_missing.grace_hours * 3600.0
    waiting: list[tuple[MedicationOrder, OrderVersion, float]] = []
    # Without a weight, every weight-based version in force is a dose of unknown size.
    for order in p.glucocorticoid_without_dose:
        run = _weight_based_run(order, p.at)
        if run is None:
            continue  # a dose in tablets or mL: not for a weight to fix
        since, version = run
        if p.at < since + grace:
            ctx.due(since + grace)
            continue
        waiting.append((order, version, since + grace))
    if not waiting:
        return []
    doses = "; ".join(
        f"order {order.order_id}, {version.mg_per_kg_per_day:.3g} mg/kg/day "
        f"prednisone-equivalent since {day(due - grace)}"
        for order, version, due in waiting
    )
    return [
        Finding(
            slot="body_weight_missing",
            rule="body_weight_missing",
            since=max(min(due for _, _, due in waiting), ctx.tracked_since),
            summary="Weight-based glucocorticoid dose without a body weight",
            detail=(
                f"Glucocorticoid ordered per kg of body weight ({doses}) and no body weight "
                "result is on record, so its dose in mg/day is unknown: the Pneumocystis, "
                "calcium/vitamin D, bone protection, steroid-sparing and taper rules cannot "
                "judge it."
            ),
            evidence=[version.event_id for _, version, _ in waiting],
            suggestions=[
                "Record the patient's body weight (LOINC 29463-7)",
                "Or order the glucocorticoid as a mass dose (mg)",
            ],
        )
    ]


RULES: dict[str, tuple[RuleInfo, Callable[[RuleContext], list[Finding]]]] = {
    "statin_active": (
        RuleInfo("statin_active", "critical",
                 (f"{SEED}: statin-associated IMNM, discontinue statin immediately and "
                  "permanently",),
                 "the statin order, or the statin on the medication list, is no longer active or "
                 "on hold",
                 immediate=True),
        statin_active,
    ),
    "pjp_prophylaxis_missing": (
        RuleInfo("pjp_prophylaxis_missing", "warning",
                 (f"{SEED}: PJP prophylaxis with trimethoprim-sulfamethoxazole if >= 20 mg/day "
                  "for >= 4 weeks",),
                 "PJP prophylaxis is in force or the dose fell below the threshold"),
        _sustained_rule("pjp_prophylaxis_missing"),
    ),
    "calcium_vitamin_d_missing": (
        RuleInfo("calcium_vitamin_d_missing", "info",
                 (f"{SEED}: secondary prevention of corticosteroid adverse effects, calcium and "
                  "vitamin D supplementation",),
                 "calcium and vitamin D are in force or the glucocorticoid stopped"),
        _sustained_rule("calcium_vitamin_d_missing"),
    ),
    "bone_protection_review": (
        RuleInfo("bone_protection_review", "info",
                 (f"{SEED}: consider bisphosphonates for osteoporosis prevention",
                  "ACR 2022 Guideline for the Prevention and Treatment of Glucocorticoid-Induced "
                  "Osteoporosis"),
                 "a bone protection agent is in force or the dose fell below the threshold"),
        _sustained_rule("bone_protection_review"),
    ),
    "steroid_sparing_agent_missing": (
        RuleInfo("steroid_sparing_agent_missing", "warning",
                 (f"{SEED}: high-dose corticosteroids with concurrent initiation of a "
                  "steroid-sparing agent",),
                 "a steroid-sparing agent now counts or the dose fell below the threshold"),
        _sustained_rule("steroid_sparing_agent_missing"),
    ),
    "ck_monitoring_overdue": (
        RuleInfo("ck_monitoring_overdue", "warning",
                 (f"{SEED}: disease activity monitoring with creatine kinase levels",),
                 "a creatine kinase result arrived or treatment ended"),
        _monitoring_rule("ck_monitoring_overdue", "creatine kinase result",
                         "Order a creatine kinase level"),
    ),
    "muscle_assessment_overdue": (
        RuleInfo("muscle_assessment_overdue", "info",
                 (f"{SEED}: disease activity monitoring with manual muscle testing",),
                 "an MMT-8 assessment was recorded or treatment ended"),
        _monitoring_rule("muscle_assessment_overdue", "manual muscle test (MMT-8)",
                         "Schedule a manual muscle testing (MMT-8) assessment"),
    ),
    "taper_too_fast": (
        RuleInfo("taper_too_fast", "warning",
                 (f"{SEED}: attempt steroid taper after stabilisation, reduce by 10-20% every "
                  "4 weeks; premature tapering causes relapse",),
                 "the dose was raised or the reduction is now spread over the taper window"),
        taper_too_fast,
    ),
    "taper_relapse_risk": (
        RuleInfo("taper_relapse_risk", "warning",
                 (f"{SEED}: relapse is common during tapering; increase corticosteroid dose "
                  "temporarily; corticosteroid myopathy can mimic flare",),
                 "a later result no longer meets the criteria, the dose was raised or the taper "
                 "ended"),
        taper_relapse_risk,
    ),
    "methotrexate_daily_dosing": (
        RuleInfo("methotrexate_daily_dosing", "critical",
                 (f"{SEED}: methotrexate 15-25 mg weekly",
                  "ISMP: oral methotrexate daily-dosing errors (high-alert medication)"),
                 "the methotrexate order is weekly now or no longer in force", immediate=True),
        methotrexate_daily_dosing,
    ),
    "tacrolimus_trough_out_of_range": (
        RuleInfo("tacrolimus_trough_out_of_range", "warning",
                 (f"{SEED}: tacrolimus target trough 5-10 ng/mL",),
                 "a later trough is within range or out of range the other way",
                 immediate=True),
        tacrolimus_trough_out_of_range,
    ),
    "methotrexate_dose_above_range": (
        RuleInfo("methotrexate_dose_above_range", "critical",
                 (f"{SEED}: methotrexate 15-25 mg weekly",
                  "ISMP: methotrexate is a high-alert medication; verify doses outside the "
                  "usual range"),
                 "the methotrexate dose is within the weekly range now or the order is no "
                 "longer in force", immediate=True),
        methotrexate_dose_above_range,
    ),
    "body_weight_missing": (
        RuleInfo("body_weight_missing", "warning",
                 (f"{SEED}: high-dose corticosteroids (prednisone 1 mg/kg/day up to 60-80 mg "
                  "daily)",),
                 "a body weight result arrived or no weight-based glucocorticoid order is in "
                 "force"),
        body_weight_missing,
    ),
}
