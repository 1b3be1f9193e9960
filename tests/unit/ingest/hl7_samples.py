"""Realistic HL7 v2.5.1 messages (ER7) for the converter tests; segments joined by ``\\r``."""

from __future__ import annotations


def er7(*segments: str, separator: str = "\r") -> str:
    return separator.join(segments) + separator


MSH_LAB = "MSH|^~\\&|LABSYS|GENHOSP|IMNM|GENHOSP|{sent}||ORU^R01^ORU_R01|{control}|P|2.5.1"
MSH_PHARM = "MSH|^~\\&|PHARMSYS|GENHOSP|IMNM|GENHOSP|{sent}||{type}|{control}|P|2.5.1"
PID = "PID|1||4455667^^^GENHOSP^PI~MRN-1001^^^GENHOSP^MR||Doe^Jane^^^^^L||19640212|F"
PV1 = "PV1|1|O|RHEUM^^^GENHOSP"

# Creatine kinase 9400 U/L, collected 2025-01-03 09:00 Eastern, sent with offsets.
ORU_CK = er7(
    MSH_LAB.format(sent="20250103101500-0500", control="LAB-0001"),
    PID,
    PV1,
    "ORC|RE|PLC-7781^EPIC|FIL-5531^LABSYS",
    "OBR|1|PLC-7781^EPIC|FIL-5531^LABSYS|2157-6^Creatine kinase^LN|||20250103090000-0500"
    "|||||||||||||||20250103101000-0500|||F",
    "OBX|1|NM|2157-6^Creatine kinase [Enzymatic activity/volume] in Serum or Plasma^LN"
    "||9400|U/L^U/L^UCUM|24-195|HH|||F|||20250103090000-0500",
)

# The same result corrected an hour later: same OBR filler and LOINC, new message.
ORU_CK_CORRECTED = er7(
    MSH_LAB.format(sent="20250103111500-0500", control="LAB-0002"),
    PID,
    "ORC|RE|PLC-7781^EPIC|FIL-5531^LABSYS",
    "OBR|1|PLC-7781^EPIC|FIL-5531^LABSYS|2157-6^Creatine kinase^LN|||20250103090000-0500"
    "|||||||||||||||20250103111000-0500|||C",
    "OBX|1|NM|2157-6^Creatine kinase^LN||8400|U/L|24-195|HH|||C|||20250103090000-0500",
)

# No offsets anywhere: read in the site's zone.
ORU_CK_LOCAL = er7(
    MSH_LAB.format(sent="20250703101500", control="LAB-0003"),
    PID,
    "OBR|1||FIL-6000^LABSYS|2157-6^Creatine kinase^LN|||20250703083000",
    "OBX|1|NM|2157-6^Creatine kinase^LN||1200|U/L|<200|H|||F|||202507030830",
)

# A chemistry panel: LOINC-coded results, a locally coded one, a comment line; the
# aldolase carries its LOINC only as the alternate code (CWE.4-6).
ORU_PANEL = er7(
    MSH_LAB.format(sent="20250110080000+0000", control="LAB-0100"),
    PID,
    "OBR|1|PLC-9|FIL-9|24323-8^Comprehensive metabolic panel^LN|||20250110073000+0000",
    "OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L|3.9-5.5|N|||F",
    "OBX|2|NM|KPOT^Potassium^99LAB||4.1|mmol/L|3.5-5.1|N|||F",
    "OBX|3|ST|COMMENT^Comment^L||Sample slightly haemolysed||||||F",
    "OBX|4|NM|ALD^Aldolase^99LAB^1761-6^Aldolase [Enzymatic activity/volume]^LN"
    "||12.5|U/L|0-0.9|H|||F",
    "OBX|5|NM|2157-6^Creatine kinase^LN||||||||I",
    "OBX|6|NM|1920-8^AST^LN||||||||X",
)

# Anti-HMGCR antibody reported as text and as a coded answer.
ORU_HMGCR = er7(
    MSH_LAB.format(sent="20250105120000+0100", control="LAB-0200"),
    PID,
    "OBR|1|PLC-20|FIL-20|93493-5^HMGCR Ab^LN|||20250104090000+0100",
    "OBX|1|ST|93493-5^HMG-CoA reductase Ab [Presence] in Serum^LN||Positive||Negative|A|||F",
    "OBX|2|CWE|33921-8^SRP Ab^LN||260415000^Not detected^SCT||||||F",
)


def oru_status(status: str, control: str = "LAB-0300") -> str:
    return er7(
        MSH_LAB.format(sent="20250110080000+0000", control=control),
        PID,
        "OBR|1|PLC-30|FIL-30|2157-6^Creatine kinase^LN|||20250110073000+0000",
        f"OBX|1|NM|2157-6^Creatine kinase^LN||950|U/L|24-195|H|||{status}",
    )


def rde(
    control: str, order_control: str, transaction: str, give: str, amount: str, units: str,
    repeat: str, route: str, order_status: str = "", placer: str = "ORD-501",
    strength: str = "", strength_units: str = "",
) -> str:
    # RXE-25/26, the give strength, after RXE-11 and 13 empty fields
    give_strength = "|" * 14 + f"{strength}|{strength_units}" if strength or strength_units else ""
    return er7(
        MSH_PHARM.format(sent=transaction, type="RDE^O11^RDE_O11", control=control),
        PID,
        PV1,
        f"ORC|{order_control}|{placer}^EPIC|PH-{placer}^PHARMSYS||{order_status}||||{transaction}"
        "|||1234^Welby^Marcus^^^^MD",
        f"TQ1|1||{repeat}||||20250106",  # TQ1-7: the start date
        f"RXE||{give}|{amount}||{units}|TAB^Tablet^HL70292|||||30{give_strength}",
        f"RXR|{route}",
    )


RDE_PREDNISONE_NW = rde(
    "PH-0001", "NW", "20250106093000-0500", "8640^prednisone 20 MG Oral Tablet^RXNORM", "60",
    "mg^milligram^UCUM", "QD^Once daily^HL70335", "PO^Oral^HL70162",
)
RDE_PREDNISONE_DC = rde(
    "PH-0002", "DC", "20250301140000-0500", "8640^prednisone 20 MG Oral Tablet^RXNORM", "60",
    "mg^milligram^UCUM", "QD^Once daily^HL70335", "PO^Oral^HL70162", order_status="DC",
)
RDE_MTX_WEEKLY = rde(
    "PH-0010", "NW", "20250107100000+0000", "6851^methotrexate 2.5 MG Oral Tablet^RXNORM",
    "15", "mg", "QW", "PO", placer="ORD-MTX-1",
)
RDE_MTX_DAILY = rde(
    "PH-0011", "NW", "20250107100000+0000", "6851^methotrexate 2.5 MG Oral Tablet^RXNORM",
    "15", "mg", "QD", "PO", placer="ORD-MTX-2",
)
# Tacrolimus coded by ATC (alternate coding: RxNorm), twice a day.
RDE_TACROLIMUS_BID = rde(
    "PH-0020", "NW", "20250108080000+0000",
    "L04AD02^Tacrolimus^WHO-ATC^42316^tacrolimus 1 MG Oral Capsule^RXNORM", "2", "mg",
    "BID^Twice a day^HL70335", "PO", placer="ORD-TAC-1",
)
RDE_ATORVASTATIN = rde(
    "PH-0030", "NW", "20250110090000-0500", "83367^atorvastatin 40 MG Oral Tablet^RXNORM",
    "40", "mg", "QHS", "PO", placer="ORD-ATV-1",
)

# OMP^O09 (CPOE to pharmacy): the requested give code, amount and units in RXO.
OMP_MYCOPHENOLATE = er7(
    MSH_PHARM.format(sent="20250112101010+0000", type="OMP^O09^OMP_O09", control="CPOE-77"),
    PID,
    "ORC|NW|CPOE-ORD-9^EPIC|||||||20250112101000+0000",
    "TQ1|1||Q12H",
    "RXO|^mycophenolate mofetil 500 MG Oral Tablet|1000||mg^milligram^UCUM",
    "RXR|PO^Oral^HL70162",
)
