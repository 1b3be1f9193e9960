"""Rules 2-5: sustained glucocorticoid exposure without a protective agent.

2 pjp_prophylaxis_missing (>= 20 mg/day for >= 28 days), 3 calcium_vitamin_d_missing
(>= 2.5 for >= 14), 4 bone_protection_review (>= 7.5 for >= 90), 5 steroid_sparing_agent_missing
(>= 20 for >= 28, steroid-sparing agents incl. the IVIG/rituximab post-dose windows).
"""

from __future__ import annotations

import pytest
from domain_chart import Chart, of_rule, only_rules, opened, rows

from imnm_common.domain.config import DEFAULT_RULES_CONFIG, RulesConfig

PJP = "pjp_prophylaxis_missing"
CAD = "calcium_vitamin_d_missing"
BONE = "bone_protection_review"
SSA = "steroid_sparing_agent_missing"

# rule -> (threshold mg/day, days, a dose just under the threshold, a protective order name)
SPEC = {
    PJP: (20.0, 28.0, 19.9, "trimethoprim-sulfamethoxazole 400/80 mg"),
    CAD: (2.5, 14.0, 2.4, "calcium carbonate 600 mg + vitamin D3 400 IU"),
    BONE: (7.5, 90.0, 7.4, "alendronate 70 mg"),
    SSA: (20.0, 28.0, 19.9, "mycophenolate mofetil"),
}
ALL = sorted(SPEC)


def cfg(rule: str) -> RulesConfig:
    return only_rules(rule)


@pytest.mark.parametrize("rule", ALL)
def test_fires_exactly_when_due(rule: str) -> None:
    threshold, days, _, _ = SPEC[rule]
    c = Chart()
    c.dx(0)
    c.pred("p", 0, threshold)
    assert c.run(days - 1, cfg(rule)) == []  # e.g. day 27 of 28
    assert c.run(days - 0.001, cfg(rule)) == []
    [t] = c.run(days, cfg(rule))
    assert rows([t]) == [(rule, "open", days, None)]
    # the same alert (same id) whenever the stream is finished later
    [later] = c.run(days + 30, cfg(rule))
    assert later.alert_id == t.alert_id and later.raised_at == t.raised_at


@pytest.mark.parametrize("rule", ALL)
def test_just_under_threshold_never_fires(rule: str) -> None:
    _, days, under, _ = SPEC[rule]
    c = Chart()
    c.dx(0)
    c.pred("p", 0, under)
    assert c.run(days * 3, cfg(rule)) == []


@pytest.mark.parametrize("rule", [PJP, SSA])
def test_twenty_mg_boundary_with_other_glucocorticoids(rule: str) -> None:
    # 16 mg methylprednisolone, 3 mg dexamethasone, 80 mg hydrocortisone, 24 mg deflazacort
    # are each exactly 20 mg prednisone-equivalent
    for name, dose in (("methylprednisolone", 16), ("dexamethasone", 3),
                       ("hydrocortisone", 80), ("deflazacort", 24)):
        c = Chart()
        c.dx(0)
        c.rx("g", 0, name, dose=dose)
        assert rows(c.run(28, cfg(rule))) == [(rule, "open", 28.0, None)], name
    # 10 mg every 12 hours
    c = Chart()
    c.dx(0)
    c.rx("g", 0, "prednisolone", dose=10, times=1, period=12, per="h")
    assert rows(c.run(28, cfg(rule))) == [(rule, "open", 28.0, None)]


def test_several_orders_add_up_to_the_threshold() -> None:
    c = Chart()
    c.dx(0)
    c.pred("a", 0, 10)
    c.pred("b", 5, 10)
    assert rows(c.run(40, cfg(PJP))) == [(PJP, "open", 33.0, None)]


@pytest.mark.parametrize("rule", ALL)
def test_resolves_when_the_protective_agent_starts(rule: str) -> None:
    threshold, days, _, cover = SPEC[rule]
    c = Chart()
    c.dx(0)
    c.pred("p", 0, threshold)
    c.rx("cover", days + 3, cover, dose=1, unit="tablet")
    transitions = c.run(days + 10, cfg(rule))
    assert rows(transitions) == [
        (rule, "open", days, None),
        (rule, "resolved", days, days + 3),
    ]
    assert transitions[0].alert_id == transitions[1].alert_id


@pytest.mark.parametrize("rule", ALL)
def test_resolves_when_the_dose_falls_below_the_threshold(rule: str) -> None:
    threshold, days, under, _ = SPEC[rule]
    c = Chart()
    c.dx(0)
    c.pred("p", 0, threshold * 2)
    c.pred("p", days + 5, under)
    assert rows(c.run(days * 3, cfg(rule))) == [
        (rule, "open", days, None),
        (rule, "resolved", days, days + 5),
    ]


@pytest.mark.parametrize("rule", ALL)
def test_no_alert_when_covered_from_the_start(rule: str) -> None:
    threshold, days, _, cover = SPEC[rule]
    c = Chart()
    c.dx(0)
    c.rx("cover", -1, cover, dose=1, unit="tablet")
    c.pred("p", 0, threshold * 3)
    assert c.run(days * 3, cfg(rule)) == []


@pytest.mark.parametrize("rule", [PJP, CAD, BONE])
def test_cover_stopped_after_due_raises_at_the_stop(rule: str) -> None:
    threshold, days, _, cover = SPEC[rule]
    c = Chart()
    c.dx(0)
    c.rx("cover", 0, cover, dose=1, unit="tablet")
    c.pred("p", 0, threshold)
    c.rx("cover", days + 7, cover, dose=1, unit="tablet", status="stopped")
    assert rows(c.run(days + 20, cfg(rule))) == [(rule, "open", days + 7, None)]


def test_on_hold_prophylaxis_still_counts() -> None:
    c = Chart()
    c.dx(0)
    c.rx("tmp", 0, "Bactrim DS", dose=1, unit="tablet")
    c.rx("tmp", 10, "Bactrim DS", dose=1, unit="tablet", status="on-hold")
    c.pred("p", 0, 40)
    assert c.run(60, cfg(PJP)) == []


def test_prophylaxis_ordered_at_the_due_instant_prevents_the_alert() -> None:
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 20)
    c.rx("tmp", 28, "Septra", dose=1, unit="tablet")
    assert c.run(40, cfg(PJP)) == []


@pytest.mark.parametrize(
    ("gap_hours", "due_day"), [(23, 28.0), (23.99, 28.0), (24, 29.0 + 10 / 24 - 10 / 24)],
)
def test_gaps_shorter_than_24_hours_are_ignored(gap_hours: float, due_day: float) -> None:
    stop_day = 10.0
    restart = stop_day + gap_hours / 24
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 30)
    c.stop("p", stop_day)
    c.pred("p", restart, 30)
    expected = 28.0 if gap_hours < 24 else restart + 28
    assert rows(c.run(60, cfg(PJP))) == [(PJP, "open", pytest.approx(expected), None)]
    del due_day


def test_dose_dipping_below_threshold_for_more_than_a_day_restarts_the_count() -> None:
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 30)
    c.pred("p", 20, 15)
    c.pred("p", 22, 30)
    assert rows(c.run(60, cfg(PJP))) == [(PJP, "open", 50.0, None)]


def test_short_gap_after_the_alert_reopens_as_a_new_episode() -> None:
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 20)
    c.stop("p", 30)
    c.pred("p", 30.5, 20)
    transitions = c.run(40, cfg(PJP))
    assert rows(transitions) == [
        (PJP, "open", 28.0, None),
        (PJP, "resolved", 28.0, 30.0),
        (PJP, "open", 30.5, None),
    ]
    # subscribers de-duplicate on (alert_id, status): a new episode needs a new id
    assert transitions[2].alert_id != transitions[0].alert_id


def test_course_before_diagnosis_alerts_at_diagnosis() -> None:
    c = Chart()
    c.pred("p", -60, 40)
    c.dx(0)
    transitions = c.run(1, only_rules(PJP, CAD, SSA, BONE))
    assert sorted(rows(transitions)) == sorted([
        (PJP, "open", 0.0, None), (CAD, "open", 0.0, None), (SSA, "open", 0.0, None),
    ])
    assert rows(c.run(31, cfg(BONE))) == [(BONE, "open", 30.0, None)]


def test_untracked_patient_has_no_sustained_alerts() -> None:
    c = Chart()
    c.pred("p", 0, 60)
    assert c.run(200) == []


def test_pjp_detail_and_suggestions() -> None:
    c = Chart()
    c.dx(0)
    first = c.pred("p", 0, 40)
    c.pred("p", 10, 30)
    second = c.pred("p", 20, 25)
    [t] = c.run(28, cfg(PJP))
    assert t.severity == "warning"
    assert t.summary == "No Pneumocystis prophylaxis on high-dose glucocorticoid"
    assert t.detail == (
        "Glucocorticoid 25 mg/day prednisone-equivalent now, at or above 20 mg/day continuously "
        "since 2025-01-01 (28 days; threshold 28 days), with no pjp prophylaxis in force: "
        "Pneumocystis jirovecii pneumonia prophylaxis is indicated on high-dose glucocorticoids."
    )
    assert t.evidence == [second["event_id"]]
    assert first["event_id"] not in t.evidence
    assert "trimethoprim-sulfamethoxazole" in t.suggestions[0]
    assert any(">= 20 mg/day for >= 4 weeks" in r for r in t.references)


def test_calcium_and_vitamin_d_are_both_needed() -> None:
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 5)
    c.rx("ca", 0, "calcium carbonate 1250 mg", dose=1250)
    c.rx("d", 20, "cholecalciferol 1000 IU", dose=1, unit="tablet")
    transitions = c.run(30, cfg(CAD))
    assert rows(transitions) == [(CAD, "open", 14.0, None), (CAD, "resolved", 14.0, 20.0)]
    assert "with no vitamin d in force" in transitions[0].detail


def test_calcium_vitamin_d_detail_when_both_missing() -> None:
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 5)
    [t] = c.run(14, cfg(CAD))
    assert "with no calcium and no vitamin d in force" in t.detail
    assert t.severity == "info"


def test_statin_calcium_salt_is_not_calcium_cover() -> None:
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 5)
    c.rx("vd", 0, "vitamin D3", dose=1, unit="tablet")
    c.rx("s", 0, "atorvastatin calcium 40 mg", dose=40)
    assert rows(c.run(14, cfg(CAD))) == [(CAD, "open", 14.0, None)]


@pytest.mark.parametrize(
    ("agent", "window"), [("IVIG 2 g/kg", 56), ("rituximab 1000 mg", 183)],
)
def test_steroid_sparing_window_after_last_dose(agent: str, window: int) -> None:
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 40)
    c.rx("x", 0, agent, dose=1000)
    c.rx("x", 2, agent, dose=1000, status="completed")
    # counts until 2 + window days; the alert opens the moment the window closes
    transitions = c.run(2 + window + 5, cfg(SSA))
    assert rows(transitions) == [(SSA, "open", 2.0 + window, None)]


def test_steroid_sparing_agent_counts_only_while_in_force() -> None:
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 40)
    c.rx("x", 0, "azathioprine", dose=150)
    c.rx("x", 40, "azathioprine", dose=150, status="completed")
    c.rx("y", 50, "methotrexate", dose=20, period=1, per="wk")
    assert rows(c.run(60, cfg(SSA))) == [(SSA, "open", 40.0, None), (SSA, "resolved", 40.0, 50.0)]


def test_topical_tacrolimus_is_not_a_steroid_sparing_agent() -> None:
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 40)
    c.rx("x", 0, "tacrolimus 0.1% ointment", dose=1, unit="g")
    assert rows(c.run(28, cfg(SSA))) == [(SSA, "open", 28.0, None)]


def test_topical_dapsone_is_not_pjp_cover() -> None:
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 40)
    c.rx("x", 0, "dapsone 7.5% gel", dose=1, unit="g", route="topical")
    assert rows(c.run(28, cfg(PJP))) == [(PJP, "open", 28.0, None)]


def test_pulses_count_as_exposure() -> None:
    c = Chart()
    c.dx(0)
    c.rx("mp", 0, "methylprednisolone", dose=1000)
    c.stop("mp", 3, "methylprednisolone")
    c.pred("p", 3, 60)
    assert rows(c.run(28, cfg(PJP))) == [(PJP, "open", 28.0, None)]


def test_tablet_doses_do_not_reach_any_threshold() -> None:
    c = Chart()
    c.dx(0)
    c.rx("p", 0, "prednisone 20 mg tablet", dose=3, unit="tablet")
    assert c.run(200, only_rules(PJP, CAD, BONE, SSA)) == []


@pytest.mark.parametrize("rule", ALL)
def test_rule_disabled(rule: str) -> None:
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 60)
    enabled = [r for r in ALL if r != rule]
    assert of_rule(c.run(200, only_rules(*enabled)), rule) == []
    assert opened(c.run(200, only_rules(rule)), rule)


def test_thresholds_from_config() -> None:
    config = DEFAULT_RULES_CONFIG.model_copy(update={
        PJP: DEFAULT_RULES_CONFIG.pjp_prophylaxis_missing.model_copy(
            update={"min_mg_per_day": 15, "min_days": 21, "max_gap_hours": 48}),
        CAD: DEFAULT_RULES_CONFIG.calcium_vitamin_d_missing.model_copy(update={"enabled": False}),
        BONE: DEFAULT_RULES_CONFIG.bone_protection_review.model_copy(update={"enabled": False}),
        SSA: DEFAULT_RULES_CONFIG.steroid_sparing_agent_missing.model_copy(
            update={"enabled": False}),
    })
    config = config.model_copy(update={
        name: getattr(config, name).model_copy(update={"enabled": False})
        for name in ("statin_active", "ck_monitoring_overdue", "muscle_assessment_overdue",
                     "taper_too_fast", "taper_relapse_risk", "methotrexate_daily_dosing",
                     "tacrolimus_trough_out_of_range")
    })
    c = Chart()
    c.dx(0)
    c.pred("p", 0, 15)
    c.stop("p", 5)
    c.pred("p", 6.5, 15)  # a 36-hour gap, bridged with max_gap_hours=48
    [t] = c.run(30, config)
    assert rows([t]) == [(PJP, "open", 21.0, None)]
    assert "threshold 21 days" in t.detail
