"""Formulary and laboratory knowledge: which orders and results mean what for IMNM care.

Data, not code: tables of RxNorm ingredient RxCUIs, WHO ATC codes and whole-word names.
Sources: RxNorm (NLM RxNav, ingredient-level RxCUIs), WHO ATC/DDD Index 2025, LOINC 2.78,
prednisone equivalence from standard corticosteroid conversion tables (e.g. Lexicomp /
Liu D et al., Allergy Asthma Clin Immunol 2013;9:30), treatment guidance in
``docs/rules.md`` (derived from the project's clinical source document).

Recognition is deliberately by whole words: "nystatin", "cilastatin", "somatostatin" and
"pentostatin" contain "statin" but are not HMG-CoA reductase inhibitors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from imnm_common.contracts.events import (
    BODY_WEIGHT_LOINCS,
    CREATINE_KINASE_LOINC,
    TACROLIMUS_TROUGH_LOINCS,
)


class DrugClass(StrEnum):
    STATIN = "statin"
    GLUCOCORTICOID = "glucocorticoid"
    PJP_PROPHYLAXIS = "pjp_prophylaxis"
    CALCIUM = "calcium"
    VITAMIN_D = "vitamin_d"
    BONE_PROTECTION = "bone_protection"
    STEROID_SPARING = "steroid_sparing"


@dataclass(frozen=True, slots=True)
class Agent:
    """One ingredient (or fixed combination) and what it counts as."""

    name: str
    classes: frozenset[DrugClass]
    rxcuis: tuple[str, ...] = ()
    atc: tuple[str, ...] = ()  # exact codes or prefixes (a prefix ends without the last digits)
    words: tuple[str, ...] = ()  # lower-case ingredient and brand names, matched as whole words
    prednisone_factor: float | None = None  # mg prednisone per mg of this glucocorticoid
    counts_after_last_dose_days: int | None = None  # long-acting agents: IVIG, rituximab


_S = DrugClass

AGENTS: tuple[Agent, ...] = (
    # --- Statins (HMG-CoA reductase inhibitors), incl. combinations and red yeast rice ---
    Agent("lovastatin", frozenset({_S.STATIN}), ("6472",), ("C10AA02",),
          ("lovastatin", "mevacor", "altoprev", "altocor", "advicor")),
    Agent("simvastatin", frozenset({_S.STATIN}), ("36567",), ("C10AA01",),
          ("simvastatin", "zocor", "flolipid", "vytorin", "simcor", "juvisync", "inegy")),
    Agent("fluvastatin", frozenset({_S.STATIN}), ("41127",), ("C10AA04",),
          ("fluvastatin", "lescol")),
    Agent("pravastatin", frozenset({_S.STATIN}), ("42463",), ("C10AA03",),
          ("pravastatin", "pravachol")),
    Agent("atorvastatin", frozenset({_S.STATIN}), ("83367",), ("C10AA05",),
          ("atorvastatin", "lipitor", "caduet", "liptruzet", "atorvaliq", "torvast")),
    Agent("rosuvastatin", frozenset({_S.STATIN}), ("301542",), ("C10AA07",),
          ("rosuvastatin", "crestor", "ezallor", "roszet")),
    Agent("pitavastatin", frozenset({_S.STATIN}), ("861634",), ("C10AA08",),
          ("pitavastatin", "livalo", "zypitamag", "livazo")),
    Agent("cerivastatin", frozenset({_S.STATIN}), ("596723",), ("C10AA06",),
          ("cerivastatin", "baycol", "lipobay")),
    Agent("red yeast rice (monacolin K)", frozenset({_S.STATIN}), (), (),
          ("red yeast rice", "monascus purpureus", "monacolin", "monacolin k")),
    # Any other statin combination by ATC: C10BA (statin + other lipid agent), C10BX (others).
    Agent("statin combination", frozenset({_S.STATIN}), (), ("C10AA", "C10BA", "C10BX"), ()),
    # --- Systemic glucocorticoids; factor = prednisone mg per mg ---
    Agent("prednisone", frozenset({_S.GLUCOCORTICOID}), ("8640",), ("H02AB07",),
          ("prednisone", "deltasone", "rayos", "predone"), prednisone_factor=1.0),
    Agent("prednisolone", frozenset({_S.GLUCOCORTICOID}), ("8638",), ("H02AB06",),
          ("prednisolone", "orapred", "millipred", "pediapred"), prednisone_factor=1.0),
    Agent("methylprednisolone", frozenset({_S.GLUCOCORTICOID}), ("6902",), ("H02AB04",),
          ("methylprednisolone", "medrol", "solu medrol", "depo medrol", "solumedrol"),
          prednisone_factor=1.25),
    Agent("dexamethasone", frozenset({_S.GLUCOCORTICOID}), ("3264",), ("H02AB02",),
          ("dexamethasone", "decadron", "hemady"), prednisone_factor=5.0 / 0.75),
    Agent("hydrocortisone", frozenset({_S.GLUCOCORTICOID}), ("5492",), ("H02AB09",),
          ("hydrocortisone", "cortef", "solu cortef", "alkindi"), prednisone_factor=0.25),
    Agent("deflazacort", frozenset({_S.GLUCOCORTICOID}), ("22396",), ("H02AB13",),
          ("deflazacort", "emflaza"), prednisone_factor=5.0 / 6.0),  # 6 mg = 5 mg prednisone
    # --- Pneumocystis jirovecii pneumonia prophylaxis ---
    Agent("trimethoprim-sulfamethoxazole", frozenset({_S.PJP_PROPHYLAXIS}), ("10831",),
          ("J01EE01",),
          ("sulfamethoxazole", "co trimoxazole", "cotrimoxazole", "tmp smx", "smx tmp",
           "bactrim", "septra", "sulfatrim")),
    Agent("dapsone", frozenset({_S.PJP_PROPHYLAXIS}), ("3108",), ("J04BA02",), ("dapsone",)),
    Agent("atovaquone", frozenset({_S.PJP_PROPHYLAXIS}), ("60212",), ("P01AX06",),
          ("atovaquone", "mepron")),
    Agent("pentamidine", frozenset({_S.PJP_PROPHYLAXIS}), ("7994",), ("P01CX01",),
          ("pentamidine", "pentam", "nebupent")),
    # --- Calcium and vitamin D (combinations count as both) ---
    Agent("calcium", frozenset({_S.CALCIUM}), ("1897", "47612"), ("A12AA",),
          ("calcium", "calcium carbonate", "calcium citrate", "citracal", "tums")),
    Agent("calcium with vitamin D", frozenset({_S.CALCIUM, _S.VITAMIN_D}), (), ("A12AX",),
          ("os cal", "oscal", "caltrate", "adcal d3", "calcichew d3")),
    Agent("vitamin D", frozenset({_S.VITAMIN_D}), ("2418", "4511", "1894", "11253"), ("A11CC",),
          ("cholecalciferol", "ergocalciferol", "calcitriol", "alfacalcidol", "vitamin d",
           "vitamin d3", "vitamin d2", "colecalciferol", "drisdol", "rocaltrol", "calcifediol")),
    # --- Bone protection ---
    Agent("bisphosphonate / bone agent", frozenset({_S.BONE_PROTECTION}),
          ("46041", "73056", "115264", "77655", "993449", "110634", "1806187", "2167260"),
          ("M05BA", "M05BB", "M05BX04", "M05BX06", "H05AA02", "H05AA04"),
          ("alendronate", "alendronic acid", "risedronate", "ibandronate", "zoledronic acid",
           "zoledronate", "denosumab", "teriparatide", "abaloparatide", "romosozumab",
           "fosamax", "binosto", "actonel", "atelvia", "boniva", "reclast", "aclasta", "zometa",
           "prolia", "xgeva", "forteo", "tymlos", "evenity")),
    # --- Steroid-sparing immunotherapy ---
    Agent("methotrexate", frozenset({_S.STEROID_SPARING}), ("6851",), ("L04AX03", "L01BA01"),
          ("methotrexate", "trexall", "otrexup", "rasuvo", "xatmep", "jylamvo", "metoject")),
    Agent("azathioprine", frozenset({_S.STEROID_SPARING}), ("1256",), ("L04AX01",),
          ("azathioprine", "imuran", "azasan")),
    Agent("mycophenolate", frozenset({_S.STEROID_SPARING}), ("68149", "7145"), ("L04AA06",),
          ("mycophenolate", "mycophenolate mofetil", "mycophenolic acid", "cellcept",
           "myfortic")),
    Agent("tacrolimus", frozenset({_S.STEROID_SPARING}), ("42316",), ("L04AD02",),
          ("tacrolimus", "prograf", "envarsus", "astagraf")),
    Agent("cyclosporine", frozenset({_S.STEROID_SPARING}), ("3008",), ("L04AD01",),
          ("cyclosporine", "ciclosporin", "neoral", "sandimmune", "gengraf")),
    Agent("cyclophosphamide", frozenset({_S.STEROID_SPARING}), ("3002",), ("L01AA01",),
          ("cyclophosphamide", "cytoxan", "endoxan")),
    Agent("rituximab", frozenset({_S.STEROID_SPARING}), ("121191",), ("L01FA01",),
          ("rituximab", "rituxan", "truxima", "ruxience", "riabni", "mabthera"),
          counts_after_last_dose_days=183),
    Agent("IVIG", frozenset({_S.STEROID_SPARING}), ("5657",), ("J06BA02",),
          ("ivig", "immune globulin", "immunoglobulin", "gamunex", "gamunex c", "privigen",
           "octagam", "gammagard", "gammaked", "flebogamma", "panzyga", "bivigam", "asceniv",
           "gammaplex"),
          counts_after_last_dose_days=56),
)

# Routes and dose forms whose glucocorticoid or immunosuppressant does not act systemically
# (hydrocortisone cream, tacrolimus ointment, cyclosporine eye drops, dapsone gel).
NON_SYSTEMIC_WORDS: frozenset[str] = frozenset({
    "topical", "cutaneous", "transdermal", "ophthalmic", "otic", "nasal", "intranasal",
    "inhalation", "inhaled", "inhaler", "cream", "ointment", "lotion", "gel", "foam", "enema",
    "rectal", "suppository", "eye", "drops", "shampoo", "mouthwash", "dental",
})
# Inhaled pentamidine is a standard PJP prophylaxis even though inhalation is not systemic.
INHALED_WORDS: frozenset[str] = frozenset({
    "inhalation", "inhaled", "inhaler", "nebulised", "nebulized", "aerosolised", "aerosolized",
})
# "atorvastatin calcium", "leucovorin calcium", "calcium folinate": the salt of another drug,
# not a calcium supplement (matched on the normalised name, before the whole-word search).
_CALCIUM_SALT = re.compile(
    r"\b(?:(?:atorvastatin|rosuvastatin|pitavastatin|leucovorin|levoleucovorin|mupirocin)"
    r" calcium|calcium (?:folinate|levofolinate|polycarbophil))\b"
)


# --- LOINC codes (LOINC 2.78) ---
LOINC_CREATINE_KINASE = CREATINE_KINASE_LOINC
LOINC_TACROLIMUS = TACROLIMUS_TROUGH_LOINCS
LOINC_ALDOLASE = "1761-6"
LOINC_HMGCR_ANTIBODY = "93493-5"
LOINC_SRP_ANTIBODY = "33921-8"
ANTIBODY_BY_LOINC = {LOINC_HMGCR_ANTIBODY: "anti-HMGCR", LOINC_SRP_ANTIBODY: "anti-SRP"}
LOINC_BODY_WEIGHT = BODY_WEIGHT_LOINCS  # the weight weight-based doses are converted with
POSITIVE_WORDS = frozenset({"positive", "pos", "detected", "reactive", "present"})

PULSE_THRESHOLD_MG_PER_DAY = 250.0  # >= this prednisone-equivalent is a pulse


@dataclass(frozen=True, slots=True)
class Recognition:
    classes: frozenset[DrugClass]
    agents: tuple[str, ...]
    prednisone_factor: float | None
    counts_after_last_dose_days: int | None
    systemic: bool


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


@lru_cache(maxsize=1)
def _indexes() -> tuple[dict[str, list[Agent]], list[tuple[str, Agent]], re.Pattern[str],
                        dict[str, list[Agent]]]:
    by_rxcui: dict[str, list[Agent]] = {}
    atc_codes: list[tuple[str, Agent]] = []
    by_word: dict[str, list[Agent]] = {}
    for agent in AGENTS:
        for rxcui in agent.rxcuis:
            by_rxcui.setdefault(rxcui, []).append(agent)
        atc_codes.extend((code, agent) for code in agent.atc)
        for word in agent.words:
            by_word.setdefault(_normalise(word), []).append(agent)
    # Longest first so "mycophenolate mofetil" wins over "mycophenolate" in the alternation.
    words = sorted(by_word, key=len, reverse=True)
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b")
    return by_rxcui, atc_codes, pattern, by_word


@lru_cache(maxsize=4096)
def recognise(
    rxnorm: str | None, atc: str | None, name: str | None, route: str | None
) -> Recognition:
    """Classify an ordered medication by every identifier it carries (union: safety first)."""
    by_rxcui, atc_codes, pattern, by_word = _indexes()
    found: list[Agent] = []
    if rxnorm:
        found.extend(by_rxcui.get(rxnorm.strip(), ()))
    if atc:
        code = atc.strip().upper()
        found.extend(agent for prefix, agent in atc_codes if code.startswith(prefix))
    normalised_name = _CALCIUM_SALT.sub(
        lambda salt: salt.group(0).replace("calcium", "salt"), _normalise(name) if name else ""
    )
    if normalised_name:
        for match in pattern.finditer(normalised_name):
            found.extend(by_word[match.group(0)])
    context = set(_normalise(f"{route or ''} {name or ''}").split())
    systemic = not (context & NON_SYSTEMIC_WORDS)
    classes: set[DrugClass] = set()
    agents: list[str] = []
    factor: float | None = None
    window: int | None = None
    for agent in found:
        if agent.name not in agents:
            agents.append(agent.name)
        classes |= agent.classes
        if factor is None and agent.prednisone_factor is not None:
            factor = agent.prednisone_factor
        if agent.counts_after_last_dose_days is not None:
            window = max(window or 0, agent.counts_after_last_dose_days)
    if not systemic:
        # A topical steroid or immunosuppressant neither needs prophylaxis nor spares steroids;
        # statins have no topical forms, so a statin stays a statin whatever the route says.
        classes -= {DrugClass.GLUCOCORTICOID, DrugClass.STEROID_SPARING}
        # Dapsone gel prevents no pneumonia; inhaled pentamidine does.
        if not (context & INHALED_WORDS and "pentamidine" in agents):
            classes.discard(DrugClass.PJP_PROPHYLAXIS)
    return Recognition(frozenset(classes), tuple(agents), factor, window, systemic)


def mass_in_mg(value: float, unit: str) -> float | None:
    """A dose in mg, or None when the unit is not a mass (tablets, mL: strength unknown)."""
    factor = _MASS_UNITS.get(unit.strip().lower())
    return None if factor is None else value * factor


_MASS_UNITS = {"mg": 1.0, "g": 1000.0, "mcg": 0.001, "ug": 0.001, "µg": 0.001, "ng": 1e-6}


def mass_per_kg_in_mg(value: float, unit: str) -> float | None:
    """A weight-based dose ("1 mg/kg") in mg per kg of body weight, or None for any other unit.
    UCUM writes it ``mg/kg``; a daily amount (``mg/kg/d``) is split off by :func:`per_day_unit`
    first."""
    mass, slash, per = unit.strip().lower().partition("/")
    factor = _MASS_UNITS.get(mass) if slash and per == "kg" else None
    return None if factor is None else value * factor


def per_day_unit(unit: str) -> str | None:
    """The amount unit of a daily amount ("mg/d", "mg/kg/d", "mg/kg/day" -> "mg", "mg/kg"), or
    None when the unit is not per day. The source's own induction dose is written "prednisone 1
    mg/kg/day": a daily total, whatever the frequency says about how it is divided."""
    amount, slash, per = unit.strip().lower().rpartition("/")
    return amount if slash and amount and per in _PER_DAY else None


_PER_DAY = frozenset({"d", "day", "(24.h)"})

PERIOD_DAYS = {"h": 1.0 / 24.0, "d": 1.0, "wk": 7.0, "mo": 30.0}
