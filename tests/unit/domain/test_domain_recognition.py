"""Drug recognition: RxNorm ingredient RxCUIs, ATC codes and whole-word names (knowledge.py)."""

from __future__ import annotations

import pytest
from domain_chart import Chart, only_rules, opened, rows

from imnm_common.domain.knowledge import (
    AGENTS,
    PERIOD_DAYS,
    DrugClass,
    mass_in_mg,
    recognise,
)

STATIN = DrugClass.STATIN
GC = DrugClass.GLUCOCORTICOID
PJP = DrugClass.PJP_PROPHYLAXIS
CA = DrugClass.CALCIUM
VITD = DrugClass.VITAMIN_D
BONE = DrugClass.BONE_PROTECTION
SSA = DrugClass.STEROID_SPARING


def classes(rxnorm: str | None = None, atc: str | None = None, name: str | None = None,
            route: str | None = None) -> frozenset[DrugClass]:
    return recognise(rxnorm, atc, name, route).classes


# --------------------------------------------------------------------------------------------
# statins
STATIN_RXCUIS = {
    "lovastatin": "6472",
    "simvastatin": "36567",
    "fluvastatin": "41127",
    "pravastatin": "42463",
    "atorvastatin": "83367",
    "rosuvastatin": "301542",
    "pitavastatin": "861634",
}


@pytest.mark.parametrize(("ingredient", "rxcui"), sorted(STATIN_RXCUIS.items()))
def test_statin_by_ingredient_rxcui(ingredient: str, rxcui: str) -> None:
    recognition = recognise(rxcui, None, None, None)
    assert recognition.classes == {STATIN}
    assert recognition.agents == (ingredient,)


def test_cerivastatin_has_an_rxcui_and_a_name() -> None:
    agent = next(a for a in AGENTS if a.name == "cerivastatin")
    assert agent.rxcuis, "cerivastatin must be recognisable by RxCUI too"
    assert classes(rxnorm=agent.rxcuis[0]) == {STATIN}
    assert classes(name="Cerivastatin 0.3 mg") == {STATIN}


@pytest.mark.parametrize(
    "atc",
    ["C10AA01", "C10AA02", "C10AA03", "C10AA04", "C10AA05", "C10AA06", "C10AA07", "C10AA08",
     "c10aa05", " C10AA05 ", "C10BA02", "C10BA05", "C10BA06", "C10BX03", "C10BX12"],
)
def test_statin_by_atc_code_or_prefix(atc: str) -> None:
    assert classes(atc=atc) == {STATIN}


@pytest.mark.parametrize(
    "atc",
    ["C10AX09",  # ezetimibe
     "C10AB05",  # fenofibrate
     "C10AC01",  # colestyramine
     "C10AX15",  # bempedoic acid
     "C10", "C10B", "C09AA05", "A07AA02"],  # too short / other classes / nystatin
)
def test_non_statin_atc_codes(atc: str) -> None:
    assert STATIN not in classes(atc=atc)


@pytest.mark.parametrize(
    "name",
    [
        "atorvastatin 40 mg tablet", "Atorvastatin Calcium 80 MG Oral Tablet", "SIMVASTATIN 20MG",
        "lovastatin", "pravastatin sodium", "fluvastatin", "rosuvastatin", "pitavastatin",
        "Lipitor", "Zocor 40 mg", "Crestor", "Pravachol", "Mevacor", "Altoprev ER",
        "Lescol XL 80", "Livalo 2 mg", "Zypitamag", "Vytorin 10/40", "Caduet 5/10",
        "Roszet", "Ezallor Sprinkle", "Flolipid oral suspension", "Atorvaliq", "Advicor",
        "Simcor", "Juvisync", "Liptruzet", "Baycol",
        "ezetimibe/simvastatin", "amlodipine-atorvastatin", "niacin/lovastatin",
        "Red Yeast Rice 600 mg capsule", "red-yeast-rice extract", "Monascus purpureus",
        "monacolin K supplement",
    ],
)
def test_statin_by_ingredient_or_brand_name(name: str) -> None:
    assert STATIN in classes(name=name), name


@pytest.mark.parametrize(
    "name",
    [
        "nystatin 100,000 units/mL oral suspension", "Nystatin cream", "imipenem-cilastatin",
        "Primaxin (imipenem and cilastatin)", "somatostatin infusion", "pentostatin",
        "octreotide (somatostatin analogue)", "statin", "statins", "ecostatin", "Mycostatin",
        "ezetimibe", "Zetia", "fenofibrate", "evolocumab", "bempedoic acid", "Nexletol",
        "rice", "yeast", "Lipitorx",  # whole words only
    ],
)
def test_substring_statin_traps_are_not_statins(name: str) -> None:
    assert STATIN not in classes(name=name), name


def test_statin_route_does_not_matter() -> None:
    # there are no topical statins; a statin is a statin whatever the route text says
    assert STATIN in classes(name="atorvastatin", route="topical")


def test_union_of_identifiers_safety_first() -> None:
    # a wrong name does not hide a statin RxCUI, and vice versa
    assert STATIN in classes(rxnorm="83367", name="vitamin C")
    assert STATIN in classes(rxnorm="999999", name="Crestor 10 mg")
    assert STATIN in classes(atc="C10AA07", name="unknown product")


def test_rxnorm_is_ingredient_level_only() -> None:
    # clinical-drug (SCD) RxCUIs are not in the table: a known limitation (docs/rules.md)
    assert classes(rxnorm="617312") == frozenset()  # atorvastatin 10 MG Oral Tablet (SCD)


# --------------------------------------------------------------------------------------------
# glucocorticoids
@pytest.mark.parametrize(
    ("name", "factor"),
    [
        ("prednisone", 1.0), ("Deltasone", 1.0), ("prednisolone", 1.0), ("Orapred ODT", 1.0),
        ("methylprednisolone", 1.25), ("Solu-Medrol", 1.25), ("Medrol dose pack", 1.25),
        ("dexamethasone", 5.0 / 0.75), ("Decadron", 5.0 / 0.75),
        ("hydrocortisone", 0.25), ("Cortef", 0.25),
        ("deflazacort", 5.0 / 6.0), ("Emflaza", 5.0 / 6.0),
    ],
)
def test_glucocorticoid_prednisone_factor(name: str, factor: float) -> None:
    recognition = recognise(None, None, name, "oral")
    assert recognition.classes == {GC}
    assert recognition.prednisone_factor == pytest.approx(factor, rel=1e-3)


def test_methylprednisolone_is_not_also_prednisolone() -> None:
    recognition = recognise(None, None, "methylprednisolone sodium succinate", None)
    assert recognition.agents == ("methylprednisolone",)
    assert recognition.prednisone_factor == 1.25


@pytest.mark.parametrize(("rxcui", "atc"), [("8640", "H02AB07"), ("8638", "H02AB06"),
                                            ("6902", "H02AB04"), ("3264", "H02AB02"),
                                            ("5492", "H02AB09"), ("22396", "H02AB13")])
def test_glucocorticoid_by_rxcui_and_atc(rxcui: str, atc: str) -> None:
    assert classes(rxnorm=rxcui) == {GC}
    assert classes(atc=atc) == {GC}


@pytest.mark.parametrize(
    ("name", "route"),
    [
        ("hydrocortisone 1% cream", None), ("hydrocortisone", "topical"),
        ("hydrocortisone rectal foam", None), ("prednisolone acetate 1% eye drops", None),
        ("dexamethasone ophthalmic", None), ("methylprednisolone", "cutaneous"),
        ("dexamethasone otic", None), ("prednisolone enema", None),
    ],
)
def test_non_systemic_glucocorticoid_is_not_exposure(name: str, route: str | None) -> None:
    recognition = recognise(None, None, name, route)
    assert GC not in recognition.classes
    assert recognition.systemic is False


@pytest.mark.parametrize(
    ("name", "route"),
    [("tacrolimus 0.1% ointment", None), ("tacrolimus", "topical"),
     ("cyclosporine ophthalmic emulsion", None), ("Protopic ointment (tacrolimus)", None)],
)
def test_non_systemic_immunosuppressant_does_not_spare_steroids(name: str, route: str | None
                                                                ) -> None:
    assert SSA not in classes(name=name, route=route)


def test_topical_dapsone_is_not_pjp_prophylaxis() -> None:
    assert PJP not in classes(name="dapsone 7.5% gel", route="topical")
    assert PJP not in classes(name="Aczone (dapsone) gel")
    assert PJP in classes(name="dapsone 100 mg tablet", route="oral")


def test_inhaled_pentamidine_is_pjp_prophylaxis() -> None:
    assert PJP in classes(name="pentamidine 300 mg", route="inhalation")
    assert PJP in classes(name="pentamidine isethionate inhaled")
    assert PJP in classes(name="NebuPent")


# --------------------------------------------------------------------------------------------
# protective and steroid-sparing agents
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("trimethoprim-sulfamethoxazole 80/400", {PJP}), ("sulfamethoxazole/trimethoprim DS",
                                                         {PJP}),
        ("co-trimoxazole", {PJP}), ("Cotrimoxazole", {PJP}), ("TMP-SMX", {PJP}),
        ("SMX-TMP", {PJP}), ("Bactrim DS", {PJP}), ("Septra", {PJP}), ("dapsone", {PJP}),
        ("atovaquone suspension", {PJP}), ("Mepron", {PJP}), ("pentamidine", {PJP}),
        ("calcium carbonate 1250 mg", {CA}), ("Tums", {CA}), ("calcium citrate", {CA}),
        ("cholecalciferol 1000 IU", {VITD}), ("vitamin D3", {VITD}), ("ergocalciferol", {VITD}),
        ("Vitamin D 50,000 units", {VITD}), ("calcitriol", {VITD}),
        ("calcium carbonate / vitamin D3", {CA, VITD}), ("Os-Cal 500 + D", {CA, VITD}),
        ("Caltrate 600+D", {CA, VITD}), ("Adcal-D3", {CA, VITD}),
        ("alendronate 70 mg weekly", {BONE}), ("Fosamax", {BONE}), ("risedronate", {BONE}),
        ("ibandronate", {BONE}), ("zoledronic acid 5 mg IV", {BONE}), ("Reclast", {BONE}),
        ("denosumab", {BONE}), ("Prolia", {BONE}), ("teriparatide", {BONE}),
        ("abaloparatide", {BONE}), ("romosozumab", {BONE}), ("Evenity", {BONE}),
        ("methotrexate", {SSA}), ("azathioprine", {SSA}), ("Imuran", {SSA}),
        ("mycophenolate mofetil", {SSA}), ("CellCept", {SSA}), ("mycophenolic acid", {SSA}),
        ("tacrolimus", {SSA}), ("Prograf", {SSA}), ("cyclosporine", {SSA}), ("Neoral", {SSA}),
        ("ciclosporin", {SSA}), ("cyclophosphamide", {SSA}), ("rituximab", {SSA}),
        ("Rituxan", {SSA}), ("Truxima", {SSA}), ("IVIG", {SSA}),
        ("immune globulin intravenous 10%", {SSA}), ("Privigen", {SSA}), ("Gamunex-C", {SSA}),
    ],
)
def test_protective_and_steroid_sparing_names(name: str, expected: set[DrugClass]) -> None:
    assert classes(name=name) == expected, name


@pytest.mark.parametrize(
    "name",
    ["atorvastatin calcium 40 mg tablet", "rosuvastatin calcium", "pitavastatin calcium",
     "leucovorin calcium 15 mg", "calcium folinate"],
)
def test_calcium_salt_of_another_drug_is_not_a_calcium_supplement(name: str) -> None:
    assert CA not in classes(name=name), name


@pytest.mark.parametrize(
    ("name", "days"), [("rituximab", 183), ("Rituxan", 183), ("IVIG", 56), ("Privigen", 56),
                       ("methotrexate", None), ("mycophenolate", None)],
)
def test_post_dose_window(name: str, days: int | None) -> None:
    assert recognise(None, None, name, None).counts_after_last_dose_days == days


@pytest.mark.parametrize("name", ["trimethoprim", "folic acid", "amoxicillin", "omeprazole",
                                  "calcipotriene", "hydroxychloroquine"])
def test_unrelated_drugs_have_no_class(name: str) -> None:
    assert classes(name=name) == frozenset()


def test_every_agent_name_and_word_is_recognised() -> None:
    for agent in AGENTS:
        for word in agent.words:
            assert agent.classes <= classes(name=word), (agent.name, word)


# --------------------------------------------------------------------------------------------
# units
@pytest.mark.parametrize(
    ("value", "unit", "mg"),
    [(60, "mg", 60.0), (1, "g", 1000.0), (1, "G", 1000.0), (500, "mcg", 0.5), (500, "ug", 0.5),
     (500, "µg", 0.5), (5e6, "ng", 5.0), (2, "tablet", None), (5, "mL", None),
     (1, "unit", None)],
)
def test_mass_in_mg(value: float, unit: str, mg: float | None) -> None:
    result = mass_in_mg(value, unit)
    assert result == (None if mg is None else pytest.approx(mg))


def test_period_days() -> None:
    assert PERIOD_DAYS == {"h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0}


# --------------------------------------------------------------------------------------------
# recognition end to end: which orders raise the statin alert
@pytest.mark.parametrize(
    ("name", "rxnorm", "atc", "alerts"),
    [
        ("Lipitor 40 mg", None, None, True),
        (None, "36567", None, True),
        (None, None, "C10BA02", True),
        ("Red yeast rice", None, None, True),
        ("nystatin oral suspension", None, None, False),
        ("imipenem-cilastatin 500 mg", None, None, False),
        ("somatostatin", None, None, False),
        ("pentostatin", None, None, False),
    ],
)
def test_statin_alert_end_to_end(name: str | None, rxnorm: str | None, atc: str | None,
                                 alerts: bool) -> None:
    c = Chart()
    c.dx(0)
    c.rx("o1", 1, name, rxnorm=rxnorm, atc=atc, dose=1, unit="tablet")
    transitions = c.run(2, only_rules("statin_active"))
    assert bool(opened(transitions, "statin_active")) is alerts


def test_topical_hydrocortisone_and_tacrolimus_do_not_drive_glucocorticoid_rules() -> None:
    c = Chart()
    c.dx(0)
    c.rx("cream", 0, "hydrocortisone 2.5% cream", dose=500, route="topical")
    c.rx("oint", 0, "tacrolimus 0.1% ointment", dose=1, unit="g")
    assert rows(c.run(120)) == []
