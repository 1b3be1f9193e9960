"""events.v1: the canonical input event, one JSON object per message, keyed by ``patient_id``.

Strict typing on purpose: a hospital feed that sends ``"20"`` for a dose or an epoch number for a
timestamp is misconfigured, and silently coercing it would hide that from the integration team.
Unknown fields are ignored so producers can add fields without breaking us.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple, get_args

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Plausibility ceilings: values above them are almost always unit or keying errors.
CREATINE_KINASE_LOINC = "2157-6"
MAX_PLAUSIBLE_CK_U_PER_L = 1_000_000.0
MAX_MMT8_SCORE = 150.0
# Body weight (LOINC 29463-7 body weight, 3141-9 measured, 8335-2 estimated): weight-based
# glucocorticoid doses (mg/kg) are converted with it, so it needs a mass unit.
BODY_WEIGHT_LOINCS = frozenset({"29463-7", "3141-9", "8335-2"})
KG_PER_WEIGHT_UNIT = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237,
                      "lbs": 0.45359237}
MAX_PLAUSIBLE_BODY_WEIGHT_KG = 700.0


def body_weight_in_kg(value: float, unit: str | None) -> float | None:
    """A body weight in kg, or None when the unit is not one of ``KG_PER_WEIGHT_UNIT``."""
    factor = KG_PER_WEIGHT_UNIT.get(unit.strip().lower()) if unit else None
    return None if factor is None else value * factor


# The rules compare creatine kinase in U/L and tacrolimus troughs in ng/mL; labs also report
# them in other units, which a number alone cannot tell apart: Nordic labs give CK in ukat/L
# (1 ukat/L = 60 U/L), so CK 5 ukat/L, 300 U/L and above the upper limit, read as 5 U/L looked
# low; some labs give tacrolimus in nmol/L (804 g/mol: 1 nmol/L = 0.804 ng/mL).
TACROLIMUS_TROUGH_LOINCS = frozenset({"11253-2", "77348-1", "74097-7"})
class RuleUnit(NamedTuple):
    unit: str  # as UCUM spells it, and nearly every result
    told: str  # the units it is read in, as a refusal names them
    factors: dict[str, float]  # lower-cased unit -> factor to ``unit``; micro as the micro
    # sign or the Greek mu


_CK = RuleUnit("U/L", "U/L, IU/L, ukat/L or nkat/L", {
    "u/l": 1.0, "iu/l": 1.0, "[iu]/l": 1.0, "ukat/l": 60.0, "\u00b5kat/l": 60.0,
    "\u03bckat/l": 60.0, "nkat/l": 0.06})
_TACROLIMUS = RuleUnit("ng/mL", "ng/mL, ug/L, mcg/L or nmol/L", {
    "ng/ml": 1.0, "ug/l": 1.0, "\u00b5g/l": 1.0, "\u03bcg/l": 1.0, "mcg/l": 1.0,
    "nmol/l": 0.804})
RULE_UNITS: dict[str, RuleUnit] = {
    CREATINE_KINASE_LOINC: _CK, **dict.fromkeys(TACROLIMUS_TROUGH_LOINCS, _TACROLIMUS),
}


def factor_to_rule_unit(loinc: str, unit: str | None) -> float | None:
    """What a result's value is multiplied by to be in the unit the rules compare it in (see
    ``RULE_UNITS``): 1 for another test or a result without a unit (read as in the rules' unit),
    None for a unit the test is not reported in."""
    known = RULE_UNITS.get(loinc)
    if known is None or not unit or unit == known.unit:
        return 1.0
    return known.factors.get(unit.strip().lower())

# LabResultEvent field rules, shared with the converters.
LOINC_PATTERN = r"^[0-9]{1,7}-[0-9]$"
MAX_VALUE_TEXT = 256
Comparator = Literal["<", "<=", ">=", ">"]  # FHIR R4 Quantity.comparator
COMPARATORS = frozenset(get_args(Comparator))


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _Envelope(_Strict):
    event_id: str = Field(min_length=1, max_length=128, description="Unique per clinical event.")
    patient_id: str = Field(min_length=1, max_length=64, description="The patient's MRN.")
    occurred_at: AwareDatetime = Field(
        description="Clinical time (specimen collected, order signed or changed, exam done); "
        "RFC 3339 with an offset. Events may arrive late and out of order."
    )
    source: str | None = Field(default=None, max_length=256)


class DiagnosisEvent(_Envelope):
    event_type: Literal["diagnosis"]
    condition: str = Field(min_length=1, max_length=128, description='"IMNM" is tracked.')
    antibody: Literal["anti-HMGCR", "anti-SRP", "seronegative", "unknown"] | None = None
    statin_associated: bool | None = None
    status: Literal["active", "resolved", "entered-in-error"] = "active"


class LabResultEvent(_Envelope):
    event_type: Literal["lab_result"]
    loinc: str = Field(min_length=3, max_length=16, pattern=LOINC_PATTERN)
    value: float | None = Field(default=None, ge=0)
    comparator: Comparator | None = Field(
        default=None,
        description="The result is a bound, not a measurement: the true value is `comparator` "
        '`value` (FHIR Quantity.comparator; HL7 v2 SN). A creatine kinase reported as ">2000" '
        "above the analyser's range is value 2000 with comparator \">\". Requires value.",
    )
    value_text: str | None = Field(default=None, min_length=1, max_length=MAX_VALUE_TEXT)
    unit: str | None = Field(
        default=None, max_length=32,
        description="UCUM unit, e.g. U/L. A body weight (LOINC 29463-7, 3141-9, 8335-2) needs "
        "kg, g or [lb_av]: weight-based (mg/kg) glucocorticoid doses are converted with it. "
        "Creatine kinase (2157-6) is read in U/L, IU/L, ukat/L or nkat/L, a tacrolimus trough "
        "(11253-2, 77348-1, 74097-7) in ng/mL, ug/L, mcg/L or nmol/L; another unit is refused, "
        "and without one the value is taken to be in U/L or ng/mL.",
    )
    reference_high: float | None = Field(default=None, ge=0)
    result_id: str | None = Field(default=None, min_length=1, max_length=128)
    status: Literal["final", "corrected", "preliminary", "cancelled", "entered-in-error"] = "final"

    @model_validator(mode="after")
    def _value_present_and_plausible(self) -> LabResultEvent:
        if self.value is None and self.value_text is None and self.status != "entered-in-error":
            raise ValueError("value: one of value or value_text is required")
        if self.comparator is not None and self.value is None:
            raise ValueError("comparator: a comparator needs the value it bounds")
        factor = factor_to_rule_unit(self.loinc, self.unit)
        if factor is None:
            raise ValueError(
                f"unit: {self.unit!r} is not a unit this test is reported in "
                f"({RULE_UNITS[self.loinc].told})"
            )
        if (
            self.loinc == CREATINE_KINASE_LOINC
            and self.value is not None
            and self.value * factor > MAX_PLAUSIBLE_CK_U_PER_L
        ):
            raise ValueError(
                f"value: creatine kinase {self.value:g} {self.unit or 'U/L'} is implausible "
                f"(above {MAX_PLAUSIBLE_CK_U_PER_L:,.0f} U/L)"
            )
        if (
            self.loinc in BODY_WEIGHT_LOINCS
            and self.value is not None
            and self.status not in {"entered-in-error", "cancelled"}  # a value that never was
        ):
            self._check_body_weight(self.value)
        return self

    def _check_body_weight(self, value: float) -> None:
        kg = body_weight_in_kg(value, self.unit)
        if kg is None:
            raise ValueError(
                f"unit: a body weight needs a mass unit (kg, g or [lb_av]), not {self.unit!r}"
            )
        if self.comparator is not None:
            raise ValueError("comparator: a body weight is a measurement, not a bound")
        if not 0 < kg <= MAX_PLAUSIBLE_BODY_WEIGHT_KG:
            raise ValueError(
                f"value: a body weight of {kg:g} kg is implausible "
                f"(0 to {MAX_PLAUSIBLE_BODY_WEIGHT_KG:g} kg)"
            )


class Medication(_Strict):
    rxnorm: str | None = Field(default=None, min_length=1, max_length=16, pattern=r"^[0-9]+$")
    atc: str | None = Field(default=None, min_length=1, max_length=7)
    name: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _identified(self) -> Medication:
        if self.rxnorm is None and self.atc is None and self.name is None:
            raise ValueError("at least one of rxnorm, atc or name is required")
        return self


class Dose(_Strict):
    value: float = Field(gt=0)
    unit: str = Field(
        min_length=1, max_length=16,
        description="mg, g, mcg, tablet, mL, unit, ...; mg/kg, g/kg, mcg/kg for a weight-based "
        "dose (glucocorticoids: converted with the patient's body weight result); mg/d, "
        "mg/kg/d for a daily total, which the frequency only divides. A dose in "
        "tablets or mL has no known mass: send it in mg when the product's strength is known",
    )


class Frequency(_Strict):
    """FHIR Timing.repeat: ``times`` administrations per ``period`` ``unit``."""

    times: int = Field(ge=1, le=1000)
    period: float = Field(gt=0)
    unit: Literal["h", "d", "wk", "mo"]


# A taper written as one order (FHIR dosageInstruction steps): more steps than a year of weekly
# reductions is a feed error, not a taper.
MAX_DOSE_STEPS = 52


class ScheduledDose(_Strict):
    """A later step of the same order: from ``starts_at`` on, its dose and frequency."""

    starts_at: AwareDatetime = Field(description="When the step begins; RFC 3339 with an offset.")
    dose: Dose | None = None
    frequency: Frequency | None = None


class MedicationOrderEvent(_Envelope):
    event_type: Literal["medication_order"]
    order_id: str = Field(min_length=1, max_length=128)
    status: Literal[
        "active",
        "on-hold",
        "cancelled",
        "completed",
        "entered-in-error",
        "stopped",
        "draft",
        "unknown",
    ]
    medication: Medication
    dose: Dose | None = None
    frequency: Frequency | None = None
    route: str | None = Field(default=None, max_length=64)
    starts_at: AwareDatetime | None = Field(
        default=None,
        description="When the first dose is due, for an order written ahead of its start "
        "(\"start prednisone 40 mg on Monday\"): a glucocorticoid counts from then, not from "
        "occurred_at. Other orders count from occurred_at: a statin or methotrexate hazard is "
        "stopped before its first dose, and ordered prophylaxis is no missing prophylaxis. At "
        "or before occurred_at: as if absent.",
    )
    dose_schedule: list[ScheduledDose] | None = Field(
        default=None, max_length=MAX_DOSE_STEPS,
        description="Later steps of this order, as a taper written in one order: `dose` and "
        "`frequency` hold from occurred_at (or starts_at) until the first step, each step until "
        "the next. Steps start after occurred_at and starts_at, in ascending starts_at. A later "
        "version of the order replaces the whole schedule from its own occurred_at on.",
    )
    ends_at: AwareDatetime | None = Field(
        default=None,
        description="When the order's last dose is given (a course for a fixed time): from "
        "then on the order is completed. After occurred_at and after every step's starts_at.",
    )
    reported: bool | None = Field(
        default=None,
        description="true: a medication the patient is reported to take (a medication list: "
        "FHIR MedicationStatement), not a hospital order. It counts as an order does for the "
        "statin, prophylaxis and steroid-sparing rules, but a reported glucocorticoid is not "
        "counted: the inpatient order that continues it would count the dose twice. Absent "
        "or false: a hospital order.",
    )

    # Field validators run only for a field that is present: most orders carry neither field,
    # and validating every order event is the replay's ceiling.
    @field_validator("dose_schedule")
    @classmethod
    def _steps_in_time_order(
        cls, steps: list[ScheduledDose] | None, info: ValidationInfo
    ) -> list[ScheduledDose] | None:
        previous = _latest(info.data.get("occurred_at"), info.data.get("starts_at"))
        for index, step in enumerate(steps or ()):
            if previous is not None and step.starts_at <= previous:
                raise ValueError(
                    f"dose_schedule.{index}.starts_at: a step starts after occurred_at, after "
                    "starts_at and after the step before it"
                )
            previous = step.starts_at
        return steps

    @field_validator("ends_at")
    @classmethod
    def _ends_after_the_steps(
        cls, ends_at: datetime | None, info: ValidationInfo
    ) -> datetime | None:
        # the steps, when valid, are in time order after occurred_at: the last starts latest
        steps = info.data.get("dose_schedule")
        latest = (steps[-1].starts_at if steps
                  else _latest(info.data.get("occurred_at"), info.data.get("starts_at")))
        if ends_at is not None and latest is not None and ends_at <= latest:
            raise ValueError(
                "ends_at: the order ends after occurred_at, after starts_at and after its last "
                "step"
            )
        return ends_at


def _latest(*moments: datetime | None) -> datetime | None:
    return max((moment for moment in moments if moment is not None), default=None)


class MuscleAssessmentEvent(_Envelope):
    event_type: Literal["muscle_assessment"]
    instrument: Literal["MMT8"]
    score: float = Field(ge=0, le=MAX_MMT8_SCORE, description="MMT-8 total, 0-150.")


CanonicalEvent = Annotated[
    DiagnosisEvent | LabResultEvent | MedicationOrderEvent | MuscleAssessmentEvent,
    Field(discriminator="event_type"),
]

_EVENT_ADAPTER: TypeAdapter[CanonicalEvent] = TypeAdapter(CanonicalEvent)


class EventRejected(ValueError):
    """An input message that is not a valid events.v1 event; ``reason`` names the field."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code  # a short, label-safe category for metrics


def _reason_from(error: ValidationError) -> EventRejected:
    first = error.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    # The discriminator tag is part of pydantic's location; people think in field names.
    if loc and loc[0] in {
        "diagnosis",
        "lab_result",
        "medication_order",
        "muscle_assessment",
    }:
        loc = loc[1:]
    kind = first["type"]
    message = first["msg"].removeprefix("Value error, ")
    if kind == "json_invalid":
        return EventRejected(f"malformed JSON: {first['ctx'].get('error', message)}", "bad_json")
    if kind in {"model_type", "model_attributes_type", "dict_type"} and not loc:
        return EventRejected("event must be a JSON object", "not_an_object")
    if kind == "union_tag_not_found":
        return EventRejected("event_type: field required", "missing_field")
    if kind == "union_tag_invalid":
        return EventRejected(
            f"event_type: unknown event type {first.get('ctx', {}).get('tag')!r}; expected one of "
            "diagnosis, lab_result, medication_order, muscle_assessment",
            "unknown_event_type",
        )
    field = ".".join(loc)
    if kind == "missing":
        return EventRejected(f"{field}: field required", "missing_field")
    if kind == "timezone_aware":
        return EventRejected(f"{field}: timestamp must carry a UTC offset", "bad_timestamp")
    if kind.startswith("datetime"):
        return EventRejected(f"{field}: not an RFC 3339 timestamp ({message})", "bad_timestamp")
    if kind == "value_error":
        # Our own validators already prefix the field ("value: ...").
        text = f"{field}: {message}" if field and not message.startswith(field) else message
        code = "implausible_value" if "implausible" in message else "invalid_value"
        return EventRejected(text, code)
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        return EventRejected(f"{field}: {message}", "out_of_range")
    return EventRejected(f"{field}: {message}" if field else message, "schema_violation")


def parse_event(raw: bytes | str) -> CanonicalEvent:
    """Parse and validate one JSON message; raise :class:`EventRejected` with a reason."""
    try:
        return _EVENT_ADAPTER.validate_json(raw)
    except ValidationError as error:
        raise _reason_from(error) from None


def parse_event_object(obj: Any) -> CanonicalEvent:
    """Validate an already-decoded JSON value with exactly the rules of :func:`parse_event`."""
    if not isinstance(obj, dict):
        raise EventRejected("event must be a JSON object", "not_an_object")
    try:
        encoded = orjson.dumps(obj)
    except TypeError as error:
        raise EventRejected(f"event is not JSON: {error}", "schema_violation") from None
    return parse_event(encoded)


def event_json_schema() -> dict[str, Any]:
    return _EVENT_ADAPTER.json_schema()
