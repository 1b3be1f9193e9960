"""Reading FHIR datatypes (strings, instants, quantities, concepts) as events.v1 needs them."""

from __future__ import annotations

from datetime import date, datetime

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.quantity import Quantity

from imnm_ingest.domain.conversion import INVALID_FIELD, ConversionRejected

UCUM = "http://unitsofmeasure.org"


def aware_datetime(value: object, element: str) -> datetime:
    """An instant with its offset; a date without a time (or offset) is refused naming
    ``element``."""
    if isinstance(value, datetime):  # fhir.resources only parses one with a UTC offset
        return value
    shown = value.isoformat() if isinstance(value, date) else str(value)
    raise ConversionRejected(
        f"{element}: {shown!r} is a date without a time and UTC offset; events need an instant",
        INVALID_FIELD,
    )


def instant(value: object, element: str) -> str:
    """:func:`aware_datetime` as RFC 3339 text, as events.v1 carries it."""
    return aware_datetime(value, element).isoformat()


def concept_text(concept: CodeableConcept) -> str | None:
    if nonblank(concept.text):
        return nonblank(concept.text)
    for coding in concept.coding or []:
        label = nonblank(coding.display) or nonblank(coding.code)
        if label:
            return label
    return None


def quantity_unit(quantity: Quantity) -> str | None:
    # A UCUM code is the unit, except an annotation ("{tbl}"), for which the human unit is better.
    code = nonblank(quantity.code)
    if quantity.system == UCUM and code and not code.startswith("{"):
        return code
    return nonblank(quantity.unit) or code


def nonblank(value: str | None) -> str | None:
    """``value`` stripped, or None when it is absent or blank."""
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None
