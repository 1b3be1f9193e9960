"""HL7 v2 (ER7) -> events.v1: lab results (ORU^R01) and pharmacy orders (v2.5+: RDE^O11,
OMP^O09, RDS^O13; v2.3/2.4: RDE^O01, RDS^O01, and ORM^O01 orders with an RXO).

Pure: no I/O, no clock. One raw message becomes zero or more canonical events, or is rejected
as a whole with :class:`ConversionRejected` whose reason names the segment-field
(``PID-3: no patient identifier``, ``OBX-14: not an HL7 timestamp '2025-13-01'``).

Identity, so redelivery and corrections behave:

* lab ``event_id`` ``hl7v2:{MSH-10}:{OBR-1}:{OBX-1}`` - unique per message and OBX; a redelivered
  message is a duplicate the tracker drops;
* lab ``result_id`` ``hl7v2:{OBR-3 filler or OBR-2 placer}:{LOINC}[:{OBX-4}]`` - the same across
  the preliminary, final and corrected versions of one result, so a correction replaces it;
* order ``order_id`` ORC-2 placer (else ORC-3 filler) - shared by the new order and its later
  discontinue / hold / cancel messages; ``event_id`` ``hl7v2:{MSH-10}:{order_id}``.

HL7 timestamps without an offset are read in the site's time zone (``local_tz``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, NamedTuple

import hl7

from imnm_common.contracts.events import (
    COMPARATORS,
    LOINC_PATTERN,
    MAX_VALUE_TEXT,
    CanonicalEvent,
)
from imnm_common.domain.state import IN_FORCE_STATUSES
from imnm_ingest.domain.conversion import (
    INVALID_FIELD,
    MISSING_FIELD,
    NOT_PARSEABLE,
    UNSUPPORTED,
    ConversionRejected,
    administrations_a_day,
    canonical,
    daily_frequency,
    days_between_administrations,
    put_present,
)
from imnm_ingest.domain.strength import (
    Strength,
    dose_as_written_or_mg,
    dose_form_unit,
    strength_from_units,
    strength_in_names,
)

LAB_MESSAGES = frozenset({"ORU^R01"})
PHARMACY_MESSAGES = frozenset({"RDE^O11", "OMP^O09", "RDS^O13", "RDE^O01", "RDS^O01", "ORM^O01"})
# Messages whose orders are requested (RXO) rather than pharmacy-encoded (RXE).
_REQUESTED_ORDER_MESSAGES = frozenset({"OMP^O09", "ORM^O01"})
# ORM^O01 is the general order message of v2.3/2.4: lab, radiology, diet and nursing orders use
# it too (OBR, ODS, ...). Only an order group with a pharmacy segment is a medication order.
_PHARMACY_ORDER_SEGMENTS = frozenset({"RXO", "RXE"})
SUPPORTED_MESSAGES = LAB_MESSAGES | PHARMACY_MESSAGES

_LOINC_SYSTEMS = frozenset({"LN", "LOINC", "2.16.840.1.113883.6.1"})
_RXNORM_SYSTEMS = frozenset({"RXNORM", "RXN", "2.16.840.1.113883.6.88"})
_ATC_SYSTEMS = frozenset({"ATC", "WHO-ATC", "WHOATC", "2.16.840.1.113883.6.73"})
_LOINC_CODE = re.compile(LOINC_PATTERN)
_ATC_CODE = re.compile(r"^[A-Z](?:[0-9]{2}(?:[A-Z](?:[A-Z](?:[0-9]{2})?)?)?)?$")

# OBX-2 value types.
_NUMERIC_TYPES = frozenset({"NM"})
_CODED_TYPES = frozenset({"CWE", "CE", "CNE", "CF"})
_TEXT_TYPES = frozenset({"ST", "TX", "FT", "IS", "ID"})

# OBX-11 observation result status (HL7 table 0085) -> events.v1 status; None: no result here.
_RESULT_STATUS: dict[str, str | None] = {
    "F": "final",
    "C": "corrected",
    "U": "final",  # status changed to final without retransmitting the value
    "P": "preliminary",
    "R": "preliminary",  # results entered, not verified
    "S": "preliminary",  # partial results
    "I": "preliminary",  # specimen in lab, results pending
    "X": "cancelled",  # results cannot be obtained
    "W": "entered-in-error",  # post original as wrong
    "D": "entered-in-error",  # deletes the OBX record
    "N": None,  # not asked
    "O": None,  # order detail description only, no result
}

# ORC-1 order control (HL7 table 0119) -> events.v1 status; "" means: read ORC-5.
_ORDER_CONTROL = {
    "NW": "active", "OK": "active", "SN": "active", "XO": "active", "XX": "active",
    "XR": "active", "RL": "active", "OR": "active", "RP": "active",
    "RE": "active",  # RDS^O13: a dispense (observations to follow) of an order in force
    "DC": "stopped", "OD": "stopped", "DR": "stopped",
    "CA": "cancelled", "OC": "cancelled", "CR": "cancelled",
    "HD": "on-hold", "OH": "on-hold", "HR": "on-hold",
    "SC": "",  # status changed: ORC-5 says to what
}
# ORC-5 order status (HL7 table 0038): these override the order control where present.
_ORDER_STATUS_OVERRIDES = {"CM": "completed", "CA": "cancelled", "DC": "stopped", "HD": "on-hold"}
_ORDER_STATUS_IN_PROCESS = frozenset({"IP", "SC", "A"})

# HL7 table 0162 routes that are not systemic, sent as a bare code: the recogniser reads words
# ("topical", "ophthalmic"), so the code alone would make tacrolimus ointment look systemic.
_NON_SYSTEMIC_ROUTE_CODES = {
    "AP": "apply externally, topical", "TP": "topical", "TD": "transdermal",
    "OP": "ophthalmic", "IO": "intraocular, eye", "OT": "otic", "NS": "nasal",
    "IN": "intranasal", "IH": "inhalation", "PR": "rectal", "DT": "dental",
}

_DTM = re.compile(
    r"^(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?$",
    re.ASCII,
)
_HL7_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$", re.ASCII)
_REFERENCE_HIGH = re.compile(
    r"^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)\s*(?:-|\u2013|to)\s*|<=?\s*|\u2264\s*)(\d+(?:\.\d*)?|\.\d+)$",
    re.IGNORECASE | re.ASCII,
)
_REPEAT_FIXED: dict[str, tuple[int, float, str]] = {
    "QD": (1, 1, "d"), "DAILY": (1, 1, "d"), "QDAY": (1, 1, "d"), "Q24H": (1, 1, "d"),
    "QAM": (1, 1, "d"), "QPM": (1, 1, "d"), "QHS": (1, 1, "d"),
    "BID": (2, 1, "d"), "TID": (3, 1, "d"), "QID": (4, 1, "d"),
    "QOD": (1, 2, "d"),
    "QW": (1, 1, "wk"), "QWK": (1, 1, "wk"), "WEEKLY": (1, 1, "wk"),
    "QM": (1, 1, "mo"), "QMO": (1, 1, "mo"), "MONTHLY": (1, 1, "mo"),
}
# Q<n>H hours, Q<n>D days, Q<n>W / Q<n>WK weeks, Q<n>L months (HL7 table 0335), <n>ID n a day.
_REPEAT_EVERY = re.compile(r"^Q(\d{1,4})(H|D|W|WK|L)$", re.ASCII)
_REPEAT_TIMES_A_DAY = re.compile(r"^(\d{1,3})ID$", re.ASCII)
_REPEAT_UNITS = {"H": "h", "D": "d", "W": "wk", "WK": "wk", "L": "mo"}


def _short(raw: str, limit: int = 40) -> str:
    return repr(raw if len(raw) <= limit else raw[:limit] + "...")


class _Segment:
    """One parsed segment; values by HL7 position (1-based), unescaped and stripped."""

    __slots__ = ("name", "raw")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.name = str(raw[0]).strip().upper() if len(raw) else ""

    def get(self, field: int, component: int = 1, sub: int = 1, rep: int = 1) -> str:
        try:
            value = self.raw.extract_field(1, field, rep, component, sub)
        except (IndexError, ValueError, TypeError, AttributeError):
            # python-hl7 raises these when the path is deeper than the value (a leaf field
            # asked for a subcomponent) or an escape sequence is malformed: not present.
            return ""
        return str(value).replace("\r", "\n").strip()

    def repetitions(self, field: int) -> int:
        if field >= len(self.raw):
            return 0
        value = self.raw[field]
        if len(value) and all(isinstance(part, hl7.Repetition) for part in value):
            return len(value)
        return 1


def _decode(message: bytes | str) -> str:
    if isinstance(message, str):
        return message
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError:
        return message.decode("latin-1")  # HL7's traditional 8859/1; every byte decodes


def _parse(message: bytes | str) -> list[_Segment]:
    text = _decode(message)
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\x0b\x1c\r \t")
    if text[:3] in ("FHS", "BHS"):
        raise ConversionRejected(
            f"{text[:3]}: HL7 batch files are not converted; send one message at a time",
            UNSUPPORTED,
        )
    if not text.startswith("MSH"):
        raise ConversionRejected("MSH: not an HL7 v2 message (no MSH segment first)",
                                 NOT_PARSEABLE)
    separator = text[3:4]
    end = text.find(separator, 4) if separator else -1
    encoding = text[4:end] if end >= 0 else ""
    delimiters = separator + encoding
    if (
        end < 0
        or not 4 <= len(encoding) <= 5  # v2.7+ adds the truncation character
        or len(set(delimiters)) != len(delimiters)
        or any(c.isalnum() or c.isspace() for c in delimiters)
    ):
        raise ConversionRejected(
            f"MSH-2: unusable field separator and encoding characters {_short(text[3:12])}",
            NOT_PARSEABLE,
        )
    try:
        parsed = hl7.parse(text)
    except Exception as error:  # the library's own failure modes are not documented
        raise ConversionRejected(
            f"MSH: not parseable as HL7 ER7 ({error})", NOT_PARSEABLE
        ) from None
    segments = [_Segment(raw) for raw in parsed]
    if sum(1 for segment in segments if segment.name == "MSH") > 1:
        raise ConversionRejected(
            "MSH: more than one message in the input; send one message at a time", UNSUPPORTED
        )
    return segments


def _timestamp(raw: str, field: str, local_tz: tzinfo, where: str = "") -> str:
    """An HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]) as RFC 3339 with an offset."""
    at = _instant(raw, field, local_tz, where)
    utc_offset = at.utcoffset()
    if utc_offset is None:
        raise ValueError(f"local_tz {local_tz!r} gives no UTC offset")  # the caller's bug
    if utc_offset % timedelta(minutes=1):
        # Local mean time (-04:56:02 for New York before 1883): RFC 3339 offsets are whole
        # minutes, so state the same instant in UTC.
        at = at.astimezone(UTC)
    return at.isoformat()


def _instant(raw: str, field: str, local_tz: tzinfo, where: str = "") -> datetime:
    """An HL7 DTM as a datetime; not one is refused naming ``field``."""
    at = _datetime(raw, local_tz)
    if at is None:
        raise ConversionRejected(
            f"{field}: not an HL7 timestamp {_short(raw)}{where}", INVALID_FIELD
        )
    return at


def _datetime(raw: str, local_tz: tzinfo) -> datetime | None:
    """An HL7 DTM as a datetime (in ``local_tz`` without an offset); None if it is not one."""
    match = _DTM.match(raw)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        zone: tzinfo = local_tz
        if sign is not None:
            if int(off_m) >= 60:
                return None
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            zone = timezone(-offset if sign == "-" else offset)
        return datetime(
            int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
            int(second or 0), int((fraction or "0").ljust(6, "0")), tzinfo=zone,
        )
    except (ValueError, OverflowError):
        return None


def _is_date_alone(raw: str) -> bool:
    """A DTM without its hour (a valid one: :func:`_datetime` read it)."""
    match = _DTM.match(raw)
    return match is not None and match.group(4) is None


def _number(raw: str) -> float | None:
    if not _HL7_NUMBER.match(raw):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def _patient_id(pid: _Segment) -> str:
    first = ""
    for rep in range(1, pid.repetitions(3) + 1):
        identifier = pid.get(3, 1, rep=rep)
        if not identifier:
            continue
        if pid.get(3, 5, rep=rep).upper() == "MR":
            return identifier
        first = first or identifier
    if not first:
        raise ConversionRejected("PID-3: no patient identifier", MISSING_FIELD)
    return first


class _Header:
    __slots__ = ("control_id", "message_type", "sent_at", "source")

    def __init__(self, msh: _Segment) -> None:
        code, trigger = msh.get(9, 1).upper(), msh.get(9, 2).upper()
        if not code:
            raise ConversionRejected("MSH-9: no message type", MISSING_FIELD)
        self.message_type = f"{code}^{trigger}" if trigger else code
        if self.message_type not in SUPPORTED_MESSAGES:
            raise ConversionRejected(
                f"MSH-9: message type {_short(self.message_type)} is not converted (supported: "
                f"{', '.join(sorted(SUPPORTED_MESSAGES))})",
                UNSUPPORTED,
            )
        self.control_id = msh.get(10)
        if not self.control_id:
            raise ConversionRejected("MSH-10: no message control id", MISSING_FIELD)
        application = msh.get(3, 1) or msh.get(3, 2)
        self.source = f"hl7v2:{application}" if application else "hl7v2"
        self.sent_at = msh.get(7, 1)


def events_from_hl7v2(message: bytes | str, *, local_tz: tzinfo = UTC) -> list[CanonicalEvent]:
    """Convert one ER7 message (MLLP framing and \\r, \\n or \\r\\n separators tolerated)."""
    segments = _parse(message)
    header = _Header(segments[0])
    pid = next((segment for segment in segments if segment.name == "PID"), None)
    if pid is None:
        raise ConversionRejected("PID-3: no patient identifier (no PID segment)", MISSING_FIELD)
    if header.message_type in LAB_MESSAGES:
        # ORU^R01 may carry several patients: each PID is read where its results follow.
        objects = list(_lab_results(header, segments, local_tz))
    else:
        objects = list(_medication_orders(header, pid, segments, local_tz))
    return canonical(objects, where=f"{header.message_type} {header.control_id}")


# --- ORU^R01 ---------------------------------------------------------------------------------
class _Request(NamedTuple):
    """What an OBX reads from its OBR: set id, order number (filler, else placer), collection
    time (OBR-7); read once per OBR."""

    set_id: str = "1"
    order: str = ""
    collected: str = ""

    @classmethod
    def of(cls, obr: _Segment) -> _Request:
        return cls(obr.get(1) or "1", obr.get(3, 1) or obr.get(2, 1), obr.get(7, 1))


def _lab_results(
    header: _Header, segments: list[_Segment], local_tz: tzinfo
) -> Iterator[dict[str, Any]]:
    patient_id: str | None = None
    request = _Request()  # results before any OBR
    position = 0
    for segment in segments[1:]:
        if segment.name == "PID":  # ORU^R01 may carry several patients, each with its results
            patient_id = _patient_id(segment)
        elif segment.name == "OBR":
            request, position = _Request.of(segment), 0
        elif segment.name == "OBX":
            position += 1
            if patient_id is None:
                raise ConversionRejected("PID-3: no patient identifier before OBX", MISSING_FIELD)
            event = _lab_result(header, patient_id, request, segment, position, local_tz)
            if event is not None:
                yield event


def _loinc(obx: _Segment, where: str) -> str | None:
    for code_at, system_at in ((1, 3), (4, 6)):
        code = obx.get(3, code_at)
        if code and obx.get(3, system_at).upper() in _LOINC_SYSTEMS:
            if not _LOINC_CODE.match(code):
                raise ConversionRejected(
                    f"OBX-3: not a LOINC code {_short(code)}{where}", INVALID_FIELD
                )
            return code
    return None


def _lab_result(
    header: _Header, patient_id: str, request: _Request, obx: _Segment, position: int,
    local_tz: tzinfo,
) -> dict[str, Any] | None:
    obr_set = request.set_id
    obx_set = obx.get(1) or str(position)
    where = f" (OBR {obr_set}, OBX {obx_set})"
    loinc = _loinc(obx, where)
    if loinc is None:
        return None  # panels carry results we do not track, coded locally or in other systems
    flag = obx.get(11).upper()
    if flag and flag not in _RESULT_STATUS:
        raise ConversionRejected(
            f"OBX-11: unknown result status {_short(flag)}{where}", INVALID_FIELD
        )
    status = _RESULT_STATUS[flag] if flag else "final"
    if status is None:
        return None
    value, value_text, comparator = _observation_value(obx, where)
    if value is None and value_text is None and status != "entered-in-error":
        return None  # pending, cancelled or unsupported value type: nothing to record
    event: dict[str, Any] = {
        "event_id": f"hl7v2:{header.control_id}:{obr_set}:{obx_set}",
        "patient_id": patient_id,
        "event_type": "lab_result",
        "occurred_at": _lab_time(header, request.collected, obx, where, local_tz),
        "source": header.source,
        "loinc": loinc,
        "status": status,
        "result_id": _result_id(header, request.order, obx, loinc),
    }
    put_present(event, value=value, comparator=comparator, value_text=value_text,
                unit=obx.get(6, 1) or obx.get(6, 2) or None,
                reference_high=_reference_high(obx.get(7, 1)))
    return event


def _observation_value(
    obx: _Segment, where: str
) -> tuple[float | None, str | None, str | None]:
    """(value, value_text, comparator) of an OBX."""
    value_type = obx.get(2).upper()
    if value_type in _NUMERIC_TYPES:
        return *_numeric(obx.get(5), value_type, where), None
    if value_type == "SN":  # structured numeric: comparator ^ num1 ^ separator ^ num2
        comparator, first, separator, second = (obx.get(5, i) for i in (1, 2, 3, 4))
        if first and not separator and not second:
            if comparator in ("", "="):
                return *_numeric(first, value_type, where), None
            if comparator in COMPARATORS:  # ">^2000": above the analyser's range
                value, _ = _numeric(first, value_type, where)
                if value is not None:
                    return value, None, comparator
        # "<>", ranges ("^10^-^20"), ratios and negative bounds: kept as they were reported
        text = f"{comparator}{first}{separator}{second}".strip()
        return None, _clip(text) if text else None, None
    if value_type in _CODED_TYPES:
        parts = [
            obx.get(5, 2, rep=rep) or obx.get(5, 1, rep=rep)
            for rep in range(1, obx.repetitions(5) + 1)
        ]
        text = "; ".join(part for part in parts if part)
        return None, _clip(text) if text else None, None
    if value_type in _TEXT_TYPES:
        lines = [obx.get(5, 1, rep=rep) for rep in range(1, obx.repetitions(5) + 1)]
        text = "\n".join(line for line in lines if line)
        return None, _clip(text) if text else None, None
    return None, None, None  # ED, RP, DT, TS, CQ, ...: nothing events.v1 can carry



def _numeric(raw: str, value_type: str, where: str) -> tuple[float | None, str | None]:
    if not raw:
        return None, None
    number = _number(raw)
    if number is None:
        raise ConversionRejected(
            f"OBX-5: not a number {_short(raw)} for value type {value_type}{where}",
            INVALID_FIELD,
        )
    # events.v1 values are >= 0; a negative result (base excess) is kept as text.
    return (number, None) if number >= 0 else (None, raw)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_VALUE_TEXT else text[: MAX_VALUE_TEXT - 1] + "…"


def _reference_high(raw: str) -> float | None:
    match = _REFERENCE_HIGH.match(raw.strip())
    return _number(match.group(1)) if match else None


def _lab_time(
    header: _Header, collected: str, obx: _Segment, where: str, local_tz: tzinfo
) -> str:
    observed = obx.get(14, 1)
    if observed:
        return _timestamp(observed, "OBX-14", local_tz, where)
    if collected:
        return _timestamp(collected, "OBR-7", local_tz, where)
    if header.sent_at:
        return _timestamp(header.sent_at, "MSH-7", local_tz)
    raise ConversionRejected(
        f"OBX-14: no observation time (nor OBR-7 or MSH-7){where}", MISSING_FIELD
    )


def _result_id(header: _Header, order: str, obx: _Segment, loinc: str) -> str:
    result_id = f"hl7v2:{order or header.control_id}:{loinc}"
    sub_id = obx.get(4)
    return f"{result_id}:{sub_id}" if sub_id else result_id


# --- RDE^O11, OMP^O09, RDS^O13; RDE^O01, RDS^O01, ORM^O01 -----------------------------------
def _medication_orders(
    header: _Header, pid: _Segment, segments: list[_Segment], local_tz: tzinfo
) -> Iterator[dict[str, Any]]:
    patient_id = _patient_id(pid)
    groups: list[list[_Segment]] = []
    for segment in segments[1:]:
        if segment.name == "ORC":
            groups.append([segment])
        elif groups:
            groups[-1].append(segment)
    if not groups:
        raise ConversionRejected("ORC: no order in the message", MISSING_FIELD)
    for group in groups:
        if header.message_type == "ORM^O01" and len(group) > 1 and not any(
            segment.name in _PHARMACY_ORDER_SEGMENTS for segment in group
        ):
            continue  # an order for something other than a medication
        yield _medication_order(header, patient_id, group, local_tz)


def _medication_order(
    header: _Header, patient_id: str, group: list[_Segment], local_tz: tzinfo
) -> dict[str, Any]:
    orc = group[0]
    order_id = orc.get(2, 1) or orc.get(3, 1)
    if not order_id:
        raise ConversionRejected("ORC-2: no placer (nor ORC-3 filler) order number",
                                 MISSING_FIELD)
    where = f" (order {_short(order_id)})"
    first: dict[str, _Segment] = {}
    for segment in group[1:]:
        first.setdefault(segment.name, segment)
    event: dict[str, Any] = {
        "event_id": f"hl7v2:{header.control_id}:{order_id}",
        "patient_id": patient_id,
        "event_type": "medication_order",
        "occurred_at": _order_time(header, orc, local_tz),
        "source": header.source,
        "order_id": order_id,
        "status": _order_status(orc, where),
    }
    # RXE (pharmacy-encoded) wins over RXO (as requested); OMP^O09 carries only RXO.
    rxe, rxo = first.get("RXE"), first.get("RXO")
    give: _Segment
    if rxe is not None and (rxo is None or any(rxe.get(2, i) for i in (1, 2, 4, 5))):
        give, at = rxe, _RXE_FIELDS
    elif rxo is not None:
        give, at = rxo, _RXO_FIELDS
    else:
        wanted = "RXO" if header.message_type in _REQUESTED_ORDER_MESSAGES else "RXE"
        raise ConversionRejected(f"{wanted}: no {wanted} segment for the order{where}",
                                 MISSING_FIELD)
    event["medication"] = _medication(give, at.code, where)
    rxr = first.get("RXR")
    frequency = _order_frequency(group, orc, rxe)
    put_present(event, dose=_dose(give, at, where), frequency=frequency,
                route=(_route(rxr) if rxr is not None else None) or None)
    if event["status"] in IN_FORCE_STATUSES:  # a stopped order's planned course says no more
        timings = _course_timings(group, orc, rxe, where)
        put_present(
            event,
            starts_at=_course_start(timings, event["occurred_at"], local_tz, where),
            ends_at=_course_end(timings, event["occurred_at"], frequency, local_tz, where),
        )
    return event


def _order_time(header: _Header, orc: _Segment, local_tz: tzinfo) -> str:
    transaction = orc.get(9, 1)
    if transaction:
        return _timestamp(transaction, "ORC-9", local_tz)
    if header.sent_at:
        return _timestamp(header.sent_at, "MSH-7", local_tz)
    raise ConversionRejected("ORC-9: no transaction time (nor MSH-7)", MISSING_FIELD)


def _order_status(orc: _Segment, where: str) -> str:
    control = orc.get(1).upper()
    if not control:
        raise ConversionRejected(f"ORC-1: no order control code{where}", MISSING_FIELD)
    if control not in _ORDER_CONTROL:
        raise ConversionRejected(
            f"ORC-1: unknown order control {_short(control)}{where}", INVALID_FIELD
        )
    order_status = orc.get(5).upper()
    if order_status in _ORDER_STATUS_OVERRIDES:
        return _ORDER_STATUS_OVERRIDES[order_status]
    status = _ORDER_CONTROL[control]
    if status:
        return status
    if order_status in _ORDER_STATUS_IN_PROCESS:
        return "active"
    raise ConversionRejected(
        f"ORC-5: order status {_short(order_status)} does not say what ORC-1 SC changed to"
        f"{where}",
        INVALID_FIELD if order_status else MISSING_FIELD,
    )


def _medication(give: _Segment, field: int, where: str) -> dict[str, str]:
    rxnorm: str | None = None
    atc: str | None = None
    names: list[str] = []
    for code_at, text_at, system_at in ((1, 2, 3), (4, 5, 6)):
        code = give.get(field, code_at)
        text = give.get(field, text_at)
        system = give.get(field, system_at).upper()
        if text:
            names.append(text)
        if not code:
            continue
        if system in _RXNORM_SYSTEMS:
            if code.isascii() and code.isdigit():
                rxnorm = rxnorm or code
            else:
                names.append(code)
        elif system in _ATC_SYSTEMS:
            if not _ATC_CODE.match(code.upper()):
                raise ConversionRejected(
                    f"{give.name}-{field}: not an ATC code {_short(code)}{where}", INVALID_FIELD
                )
            atc = atc or code.upper()
    medication = {"rxnorm": rxnorm, "atc": atc, "name": names[0] if names else None}
    if not any(medication.values()):
        raise ConversionRejected(
            f"{give.name}-{field}: no RxNorm or ATC code and no drug name{where}",
            MISSING_FIELD,
        )
    return {key: value for key, value in medication.items() if value is not None}


def _dose(give: _Segment, at: _GiveFields, where: str) -> dict[str, Any] | None:
    segment = give.name
    raw = give.get(at.amount, 1)
    if not raw:
        return None
    amount = _number(raw)
    if amount is None or amount < 0:
        raise ConversionRejected(
            f"{segment}-{at.amount}: not a dose amount {_short(raw)}{where}", INVALID_FIELD
        )
    unit = give.get(at.units, 1) or give.get(at.units, 2)
    if amount == 0 or not unit:
        return None  # no usable dose (a discontinue may carry 0); the order still counts
    return dose_as_written_or_mg(amount, unit, _give_strength(give, at, unit, where))


def _give_strength(give: _Segment, at: _GiveFields, dose_unit: str, where: str) -> Strength | None:
    """For a dose in dose-form units ("3 TAB"): the strength per give unit from RXE-25/26
    (RXO-18/19), else the one the give code's text states ("predniSONE 20 MG Oral Tablet": HL7
    sends RXE-25 only when the give code does not imply the strength)."""
    if dose_form_unit(dose_unit) is None:
        return None
    raw = give.get(at.strength, 1)
    if not raw:
        return strength_in_names(give.get(at.code, text) for text in (2, 5))
    value = _number(raw)
    if value is None or value <= 0:
        raise ConversionRejected(
            f"{give.name}-{at.strength}: not a give strength {_short(raw)}{where}", INVALID_FIELD
        )
    units = give.get(at.strength + 1, 1) or give.get(at.strength + 1, 2)
    return strength_from_units(value, units, dose_unit) if units else None


class _GiveFields(NamedTuple):
    """Where an order's give code, amount, units and strength are in RXE or RXO."""

    code: int
    amount: int
    units: int
    strength: int  # and its units in the next field


_RXE_FIELDS = _GiveFields(code=2, amount=3, units=5, strength=25)
_RXO_FIELDS = _GiveFields(code=1, amount=2, units=4, strength=18)


def _order_frequency(
    group: list[_Segment], orc: _Segment, rxe: _Segment | None
) -> dict[str, Any] | None:
    tq1s = [segment for segment in group if segment.name == "TQ1"]
    if len(tq1s) > 1 and all(tq1.get(12, 1).upper() == "A" for tq1 in tq1s[:-1]):
        parallel = _parallel_frequency([_frequency(tq1.get(3, 1)) for tq1 in tq1s])
        if parallel is not None:
            return parallel
    patterns = [tq1.get(3, 1) for tq1 in tq1s]
    if rxe is not None:
        patterns.append(rxe.get(1, 2, 1))  # v2.3/2.4 quantity/timing: interval, repeat pattern
    patterns.append(orc.get(7, 2, 1))
    for pattern in patterns:
        frequency = _frequency(pattern)
        if frequency is not None:
            return frequency
    return None


def _parallel_frequency(given: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """TQ1s joined by TQ1-12 "A" (asynchronous: "do the next specification in parallel with
    this one") give the one amount at each of their times: QAM with QPM is twice a day. Their
    sum, when every pattern is known and the sum is a whole number a period; else None."""
    if any(frequency is None for frequency in given):
        return None
    known = [frequency for frequency in given if frequency is not None]
    first = known[0]
    if all((f["period"], f["unit"]) == (first["period"], first["unit"]) for f in known):
        return {**first, "times": sum(f["times"] for f in known)}
    return daily_frequency(sum(administrations_a_day(f) for f in known))


def _frequency(pattern: str) -> dict[str, Any] | None:
    code = re.sub(r"[\s_-]+", "", pattern.upper())
    fixed = _REPEAT_FIXED.get(code)
    if fixed is not None:
        times, period, unit = fixed
        return {"times": times, "period": float(period), "unit": unit}
    every = _REPEAT_EVERY.match(code)
    if every is not None:
        count = int(every.group(1))
        if count >= 1:
            return {"times": 1, "period": float(count), "unit": _REPEAT_UNITS[every.group(2)]}
    a_day = _REPEAT_TIMES_A_DAY.match(code)
    if a_day is not None and 1 <= int(a_day.group(1)) <= 1000:
        return {"times": int(a_day.group(1)), "period": 1.0, "unit": "d"}
    return None  # PRN, ONCE, meal-related, site-specific: frequency unknown


class _CourseTiming(NamedTuple):
    """Where an order's course is said to start and end, as sent (one source of the three)."""

    start: tuple[str, str]  # (field, raw DTM)
    end: tuple[str, str]
    duration: tuple[str, timedelta | None]
    occurrences: tuple[str, int | None]
    frequency: dict[str, Any] | None  # its own repeat pattern's, for counting administrations


def _course_timings(
    group: list[_Segment], orc: _Segment, rxe: _Segment | None, where: str
) -> list[_CourseTiming]:
    """Every TQ1 (v2.5+) of the order, else the v2.3/2.4 quantity/timing of RXE-1, else of
    ORC-7 (start ^4, end ^5, duration ^3: D5 five days, X3 three times at the interval)."""
    tq1s = [segment for segment in group if segment.name == "TQ1"]
    if tq1s:
        return [
            _CourseTiming(
                ("TQ1-7", tq1.get(7, 1)), ("TQ1-8", tq1.get(8, 1)),
                ("TQ1-6", _service_duration(tq1.get(6, 1), tq1.get(6, 2, 1), where)),
                ("TQ1-14", _occurrences(tq1.get(14, 1), "TQ1-14", where)),
                _frequency(tq1.get(3, 1)),
            )
            for tq1 in tq1s
        ]
    for field, segment, number in (("RXE-1", rxe, 1), ("ORC-7", orc, 7)):
        if segment is None or not any(segment.get(number, c) for c in (3, 4, 5)):
            continue
        duration = segment.get(number, 3).strip().upper()
        letter, count = duration[:1], duration[1:]
        length = _TQ_DURATION_LETTERS.get(letter) if count.isdigit() else None
        return [_CourseTiming(
            (f"{field}.4", segment.get(number, 4)), (f"{field}.5", segment.get(number, 5)),
            (f"{field}.3", length * int(count) if length is not None else None),
            (f"{field}.3", int(count) if letter == "X" and count.isdigit() else None),
            _frequency(segment.get(number, 2, 1)),
        )]
    return []


# TQ1-6 service duration units (UCUM and the usual abbreviations) and the duration letters of
# the v2.3/2.4 quantity/timing (S seconds, M minutes, H hours, D days, W weeks, L months).
_SERVICE_DURATION_UNITS = {
    "s": timedelta(seconds=1), "sec": timedelta(seconds=1), "min": timedelta(minutes=1),
    "h": timedelta(hours=1), "hr": timedelta(hours=1), "d": timedelta(days=1),
    "da": timedelta(days=1), "day": timedelta(days=1), "days": timedelta(days=1),
    "wk": timedelta(weeks=1), "week": timedelta(weeks=1), "weeks": timedelta(weeks=1),
    "mo": timedelta(days=30), "month": timedelta(days=30), "months": timedelta(days=30),
}
_TQ_DURATION_LETTERS = {
    "S": timedelta(seconds=1), "M": timedelta(minutes=1), "H": timedelta(hours=1),
    "D": timedelta(days=1), "W": timedelta(weeks=1), "L": timedelta(days=30),
}


def _service_duration(value: str, unit: str, where: str) -> timedelta | None:
    if not value:
        return None
    number = _number(value)
    length = _SERVICE_DURATION_UNITS.get(unit.strip().lower())
    if number is None or number <= 0 or length is None:
        raise ConversionRejected(
            f"TQ1-6: service duration {_short(value)} {_short(unit)} is not a positive number "
            f"of s, min, h, d, wk or mo{where}",
            INVALID_FIELD,
        )
    return length * number


def _occurrences(value: str, field: str, where: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConversionRejected(
            f"{field}: total occurrences {_short(value)} is not a positive whole number{where}",
            INVALID_FIELD,
        )
    return int(value)


def _course_start(
    timings: list[_CourseTiming], occurred_at: str, local_tz: tzinfo, where: str
) -> str | None:
    """When the first dose is due, if after the order's time (an order written ahead: "start
    Monday"): the earliest start of its timings. None when one of them starts with the order."""
    ordered_at = datetime.fromisoformat(occurred_at)
    starts = [_instant(raw, field, local_tz, where) if raw else ordered_at
              for field, raw in (timing.start for timing in timings)]
    if not starts or min(starts) <= ordered_at:
        return None
    return min(starts).astimezone(UTC).isoformat()


def _course_end(
    timings: list[_CourseTiming], occurred_at: str, frequency: dict[str, Any] | None,
    local_tz: tzinfo, where: str,
) -> str | None:
    """When the course is over: when the last of its timings is (TQ1s given one after another
    or in parallel, TQ1-12 S or A), or None while one of them is open."""
    ordered_at = datetime.fromisoformat(occurred_at)
    ends = [_timing_end(timing, ordered_at, frequency, local_tz, where) for timing in timings]
    if not ends or None in ends:
        return None
    end_field, ends_at = max((end for end in ends if end is not None), key=lambda end: end[1])
    if ends_at <= ordered_at:
        raise ConversionRejected(
            f"{end_field}: the course ended at "
            f"{ends_at.astimezone(UTC).isoformat()}, before this message's order "
            f"({occurred_at}) that is still in force; send it completed (ORC-5 CM) or "
            f"discontinued{where}",
            INVALID_FIELD,
        )
    return ends_at.astimezone(UTC).isoformat()


def _timing_end(
    timing: _CourseTiming, ordered_at: datetime, frequency: dict[str, Any] | None,
    local_tz: tzinfo, where: str,
) -> tuple[str, datetime] | None:
    """One timing's end and the field that said it: its end date/time (a date alone: the end of
    that day), else its start (or the order's time) plus its duration, or its count of
    administrations at the frequency. None: open-ended, or a count without a frequency."""
    (end_field, end_raw), (start_field, start_raw) = timing.end, timing.start
    (duration_field, duration), (count_field, count) = timing.duration, timing.occurrences
    if end_raw:
        ends_at = _instant(end_raw, end_field, local_tz, where)
        if _is_date_alone(end_raw):
            ends_at += timedelta(days=1)  # "until 20250112": that day is given too
        if start_raw and ends_at <= _instant(start_raw, start_field, local_tz, where):
            raise ConversionRejected(
                f"{end_field}: the course ends at {_short(end_raw)}, not after it starts "
                f"({start_field} {_short(start_raw)}){where}",
                INVALID_FIELD,
            )
    else:
        starts_at = _instant(start_raw, start_field, local_tz, where) if start_raw else ordered_at
        given = timing.frequency or frequency
        if duration is not None:
            ends_at, end_field = starts_at + duration, duration_field
        elif count is not None and given is not None:
            days = count * days_between_administrations(given)
            ends_at, end_field = starts_at + timedelta(days=days), count_field
        else:
            return None
    return end_field, ends_at


def _route(rxr: _Segment) -> str | None:
    code, text = rxr.get(1, 1), rxr.get(1, 2)
    if text:
        return text
    if not code:
        return None
    word = _NON_SYSTEMIC_ROUTE_CODES.get(code.upper())
    return f"{code} ({word})" if word else code
