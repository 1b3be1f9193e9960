"""A dose written in tablets, capsules or millilitres, with its product's strength, as a mass.

Pharmacy systems order "2 tablets" of a "5 mg" product (HL7 v2 give amount and units with the
give strength, FHIR ``doseQuantity`` with the Medication's ingredient strength). The rules judge
glucocorticoid and methotrexate doses by mass, so a dose in dose-form units would count as an
order of unknown size (no Pneumocystis, bone or taper judgement at all). The converters turn it
into mg here, where the product's strength is in the message, and only when the strength is
unambiguously per the unit the dose is written in: a wrong mass is worse than an unknown one,
so anything else keeps the dose as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from imnm_common.domain.knowledge import mass_in_mg

# Units that count dose forms or measure a liquid, as HL7 tables (TAB, CAP), UCUM annotations
# ({tbl}) and plain text write them, mapped to one name so a dose and a strength can be compared.
_DOSE_FORM_UNITS = {
    **dict.fromkeys(
        ("tab", "tabs", "tablet", "tablets", "{tab}", "{tbl}", "{tablet}", "{tablets}"), "tablet"
    ),
    **dict.fromkeys(
        ("cap", "caps", "capsule", "capsules", "{cap}", "{capsule}", "{capsules}"), "capsule"
    ),
    **dict.fromkeys(("ml", "millilitre", "milliliter"), "mL"),
}
_COUNTED = frozenset({"tablet", "capsule"})

# "MG", "MG/ML", "MG/5ML", "mg/5 mL": a mass, optionally per an amount of a dose-form unit.
_STRENGTH_UNIT = re.compile(r"^\s*([^/\s]+)\s*(?:/\s*(\d+(?:\.\d+)?)?\s*([^/\s]+))?\s*$")


# A clinical drug's name that states one strength, as RxNorm writes them ("predniSONE 20 MG Oral
# Tablet", "prednisoLONE 3 MG/ML Oral Solution", "... Tablet [Deltasone]") and as most local
# names follow: no digit or slash before the strength, none after it, so a combination
# ("... 1250 MG / cholecalciferol 200 UNT ...") or a quantified drug ("1 ML methotrexate 25
# MG/ML Injection") never matches.
_NAMED_STRENGTH = re.compile(
    r"^[^\d/]*?(?<![\w.])(\d+(?:\.\d+)?)\s*(mg|mcg|g)(?:\s*/\s*(ml))?\b([^\d/]*)$",
    re.IGNORECASE,
)
_FORM_WORDS = (("tablet", re.compile(r"\b(?:tablets?|tabs?)\b", re.IGNORECASE)),
               ("capsule", re.compile(r"\b(?:capsules?|caps?)\b", re.IGNORECASE)))


@dataclass(frozen=True, slots=True)
class Strength:
    """``mg`` of the ingredient in ``per_amount`` of ``per_unit`` (a normalised dose-form unit)."""

    mg: float
    per_amount: float
    per_unit: str


def dose_form_unit(unit: str) -> str | None:
    return _DOSE_FORM_UNITS.get(unit.strip().lower())


def strength_from_ratio(
    mass: float, mass_unit: str, per_amount: float, per_unit: str | None
) -> Strength | None:
    """A FHIR Ratio (numerator a mass, denominator an amount of a dose-form unit)."""
    mg = mass_in_mg(mass, mass_unit)
    if mg is None or mg <= 0 or per_amount <= 0 or per_unit is None:
        return None
    form = dose_form_unit(per_unit)
    return None if form is None else Strength(mg, per_amount, form)


def strength_in_names(names: Iterable[str]) -> Strength | None:
    """The strength the product's names state (a give code's text, a coding's display), when
    they state exactly one: per tablet or capsule when the name says which, per mL for a
    strength written per mL."""
    found = {strength for name in names if (strength := _strength_in_name(name)) is not None}
    return found.pop() if len(found) == 1 else None


def _strength_in_name(name: str) -> Strength | None:
    match = _NAMED_STRENGTH.match(name.strip())
    if match is None:
        return None
    value, mass_unit, per_ml, form_words = match.groups()
    if per_ml:
        return strength_from_ratio(float(value), mass_unit, 1.0, "mL")
    form = next((form for form, words in _FORM_WORDS if words.search(form_words)), None)
    return None if form is None else strength_from_ratio(float(value), mass_unit, 1.0, form)


def strength_from_units(value: float, units: str, dose_unit: str) -> Strength | None:
    """An HL7 v2 give strength: "5" "MG" is per one give unit (a tablet or capsule); a compound
    unit ("MG/ML", "MG/5ML") names what it is per."""
    match = _STRENGTH_UNIT.match(units)
    if match is None or value <= 0:
        return None
    mass_unit, per_amount, per_unit = match.groups()
    if per_unit is None:
        # A bare mass is per one give unit, which must then be a countable form: per mL it
        # would have to be written MG/ML, and "15 MG" for a syrup more likely means per 5 mL.
        form = dose_form_unit(dose_unit)
        if form not in _COUNTED:
            return None
        return strength_from_ratio(value, mass_unit, 1.0, dose_unit)
    return strength_from_ratio(value, mass_unit, float(per_amount or 1), per_unit)


def dose_in_mg(amount: float, unit: str, strength: Strength | None) -> float | None:
    """``amount`` ``unit`` as mg of the ingredient, or None when the strength is not per that
    unit (2 tablets of a strength per mL, say)."""
    if strength is None or dose_form_unit(unit) != strength.per_unit:
        return None
    return round(amount * strength.mg / strength.per_amount, 6)


def dose_as_written_or_mg(amount: float, unit: str, strength: Strength | None) -> dict[str, Any]:
    """The events.v1 dose: in mg when the strength converts it, else as written."""
    mg = dose_in_mg(amount, unit, strength)
    return {"value": amount, "unit": unit} if mg is None else {"value": mg, "unit": "mg"}
