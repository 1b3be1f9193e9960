"""Rule thresholds: every number a rule compares is here, with the seed's defaults.

Loaded from a YAML or JSON file (``--rules-config``); unknown keys are errors so a typo in a
threshold never silently falls back to the default.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True


class StatinActiveConfig(_RuleConfig):
    pass


class SustainedGlucocorticoidConfig(_RuleConfig):
    """Glucocorticoid >= ``min_mg_per_day`` prednisone-equivalent for >= ``min_days``."""

    min_mg_per_day: float = Field(gt=0)
    min_days: float = Field(gt=0)
    max_gap_hours: float = Field(default=24.0, ge=0)


class PjpProphylaxisConfig(SustainedGlucocorticoidConfig):
    min_mg_per_day: float = Field(default=20.0, gt=0)
    min_days: float = Field(default=28.0, gt=0)


class CalciumVitaminDConfig(SustainedGlucocorticoidConfig):
    min_mg_per_day: float = Field(default=2.5, gt=0)
    min_days: float = Field(default=14.0, gt=0)


class BoneProtectionConfig(SustainedGlucocorticoidConfig):
    min_mg_per_day: float = Field(default=7.5, gt=0)
    min_days: float = Field(default=90.0, gt=0)


class SteroidSparingConfig(SustainedGlucocorticoidConfig):
    min_mg_per_day: float = Field(default=20.0, gt=0)
    min_days: float = Field(default=28.0, gt=0)


class MonitoringConfig(_RuleConfig):
    induction_taper_days: float = Field(gt=0)
    maintenance_days: float = Field(gt=0)


class CkMonitoringConfig(MonitoringConfig):
    induction_taper_days: float = Field(default=28.0, gt=0)
    maintenance_days: float = Field(default=90.0, gt=0)


class MuscleAssessmentConfig(MonitoringConfig):
    induction_taper_days: float = Field(default=90.0, gt=0)
    maintenance_days: float = Field(default=90.0, gt=0)


class TaperTooFastConfig(_RuleConfig):
    max_reduction_fraction: float = Field(default=0.20, gt=0, lt=1)
    min_reduction_mg: float = Field(default=2.5, ge=0)
    window_days: float = Field(default=28.0, gt=0)


class TaperRelapseRiskConfig(_RuleConfig):
    default_ck_upper_limit: float = Field(default=200.0, gt=0)
    ck_rise_factor: float = Field(default=1.5, gt=1)
    mmt8_drop_fraction: float = Field(default=0.10, gt=0, lt=1)


class MethotrexateDailyConfig(_RuleConfig):
    min_period_days: float = Field(default=7.0, gt=0)


class MethotrexateDoseConfig(_RuleConfig):
    # The seed's IMNM range is 15-25 mg once weekly: one dose above the top of it is checked.
    max_mg_per_week: float = Field(default=25.0, gt=0)


class BodyWeightMissingConfig(_RuleConfig):
    # A weight is usually recorded within hours of admission or of the visit.
    grace_hours: float = Field(default=24.0, ge=0)


class TacrolimusTroughConfig(_RuleConfig):
    low_ng_per_ml: float = Field(default=5.0, ge=0)
    high_ng_per_ml: float = Field(default=10.0, gt=0)


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    statin_active: StatinActiveConfig = StatinActiveConfig()
    pjp_prophylaxis_missing: PjpProphylaxisConfig = PjpProphylaxisConfig()
    calcium_vitamin_d_missing: CalciumVitaminDConfig = CalciumVitaminDConfig()
    bone_protection_review: BoneProtectionConfig = BoneProtectionConfig()
    steroid_sparing_agent_missing: SteroidSparingConfig = SteroidSparingConfig()
    ck_monitoring_overdue: CkMonitoringConfig = CkMonitoringConfig()
    muscle_assessment_overdue: MuscleAssessmentConfig = MuscleAssessmentConfig()
    taper_too_fast: TaperTooFastConfig = TaperTooFastConfig()
    taper_relapse_risk: TaperRelapseRiskConfig = TaperRelapseRiskConfig()
    methotrexate_daily_dosing: MethotrexateDailyConfig = MethotrexateDailyConfig()
    tacrolimus_trough_out_of_range: TacrolimusTroughConfig = TacrolimusTroughConfig()
    methotrexate_dose_above_range: MethotrexateDoseConfig = MethotrexateDoseConfig()
    body_weight_missing: BodyWeightMissingConfig = BodyWeightMissingConfig()
    pulse_threshold_mg_per_day: float = Field(default=250.0, gt=0)
    seen_event_ids_kept: int = Field(default=16, ge=0)
    lab_history_days: float = Field(default=400.0, gt=0)
    # Orders that stopped counting this long before the patient's latest event are summarised
    # (engine.settle_orders): state stays bounded for patients treated for years. At least 30
    # days: an order event dated before the horizon is stale, and back-filled orders days late
    # are ordinary.
    order_history_days: float = Field(default=400.0, ge=30)


DEFAULT_RULES_CONFIG = RulesConfig()
