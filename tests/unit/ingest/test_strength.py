"""Which product names state a strength the converters may turn a dose in tablets into mg with:
only one strength, per a dose form the name says (or per mL), never a combination."""

from __future__ import annotations

import pytest

from imnm_ingest.domain.strength import (
    Strength,
    dose_in_mg,
    strength_from_ratio,
    strength_from_units,
    strength_in_names,
)


@pytest.mark.parametrize(
    ("name", "strength"),
    [
        ("predniSONE 20 MG Oral Tablet", Strength(20.0, 1.0, "tablet")),
        ("predniSONE 20 MG Oral Tablet [Deltasone]", Strength(20.0, 1.0, "tablet")),
        ("methotrexate 2.5 MG Oral Tablet", Strength(2.5, 1.0, "tablet")),
        ("tacrolimus 1 MG Oral Capsule", Strength(1.0, 1.0, "capsule")),
        ("prednisone 5 mg tab", Strength(5.0, 1.0, "tablet")),
        ("prednisoLONE 3 MG/ML Oral Solution", Strength(3.0, 1.0, "mL")),
        ("dexamethasone 0.5 G Oral Tablet", Strength(500.0, 1.0, "tablet")),
        # no single strength per a known form
        ("calcium carbonate 1250 MG / cholecalciferol 200 UNT Oral Tablet", None),
        ("1 ML methotrexate 25 MG/ML Injection", None),
        ("dexamethasone 0.5 MG/5ML Oral Solution", None),
        ("methylprednisolone sodium succinate 1000 MG Injection", None),
        ("prednisone 20mg", None),
        ("prednisone", None),
        ("vitamin D3 1.25 mg capsule", None),  # a digit before the strength: not one drug name
    ],
)
def test_the_strength_a_name_states(name: str, strength: Strength | None) -> None:
    assert strength_in_names([name]) == strength


def test_names_that_disagree_state_no_strength() -> None:
    five = "predniSONE 5 MG Oral Tablet"
    assert strength_in_names([five, "prednisone 5 mg tab"]) == Strength(5.0, 1.0, "tablet")
    assert strength_in_names([five, "predniSONE 20 MG Oral Tablet"]) is None


def test_a_dose_is_converted_only_in_the_unit_its_strength_is_per() -> None:
    per_tablet = strength_from_units(20, "MG", "TAB")
    assert dose_in_mg(3, "{tbl}", per_tablet) == 60.0
    assert dose_in_mg(3, "mL", per_tablet) is None
    assert dose_in_mg(3, "capsule", per_tablet) is None
    per_5_ml = strength_from_units(15, "mg/5 mL", "mL")
    assert dose_in_mg(7.5, "ML", per_5_ml) == 22.5
    assert strength_from_units(15, "MG", "ML") is None  # per what volume?
    assert strength_from_ratio(0, "mg", 1, "TAB") is None
    assert strength_from_ratio(5, "mg", 0, "TAB") is None
    assert strength_from_ratio(5, "meq", 1, "TAB") is None
