"""HL7 v2 (ER7) -> events.v1: ORU^R01 lab results and RDE/OMP/RDS/ORM pharmacy orders."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hl7_samples import (
    MSH_LAB,
    MSH_PHARM,
    OMP_MYCOPHENOLATE,
    ORU_CK,
    ORU_CK_CORRECTED,
    ORU_CK_LOCAL,
    ORU_HMGCR,
    ORU_PANEL,
    PID,
    RDE_ATORVASTATIN,
    RDE_MTX_DAILY,
    RDE_MTX_WEEKLY,
    RDE_PREDNISONE_DC,
    RDE_PREDNISONE_NW,
    RDE_TACROLIMUS_BID,
    er7,
    oru_status,
    rde,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imnm_common.contracts.events import (
    CanonicalEvent,
    Frequency,
    LabResultEvent,
    MedicationOrderEvent,
    parse_event_object,
)
from imnm_common.domain.knowledge import DrugClass, recognise
from imnm_common.service_layer.replay import Replay
from imnm_ingest.domain.conversion import (
    INVALID_EVENT,
    INVALID_FIELD,
    MISSING_FIELD,
    NOT_PARSEABLE,
    UNSUPPORTED,
    ConversionRejected,
)
from imnm_ingest.domain.hl7v2 import events_from_hl7v2

NEW_YORK = ZoneInfo("America/New_York")


def dumped(event: CanonicalEvent) -> dict[str, Any]:
    """Every field, with occurred_at as RFC 3339 so the offset is compared, not only the instant."""
    fields = event.model_dump()
    fields["occurred_at"] = event.occurred_at.isoformat()
    return fields


def lab(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_type": "lab_result", "patient_id": "MRN-1001", "source": "hl7v2:LABSYS",
        "value": None, "comparator": None, "value_text": None, "unit": None,
        "reference_high": None, "status": "final",
    }
    return base | fields


def order(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_type": "medication_order", "patient_id": "MRN-1001",
        "source": "hl7v2:PHARMSYS", "dose": None, "frequency": None, "route": None,
        "dose_schedule": None, "ends_at": None, "reported": None,
        "starts_at": None,
    }
    return base | fields


def rejected(message: bytes | str, **kw: Any) -> ConversionRejected:
    with pytest.raises(ConversionRejected) as caught:
        events_from_hl7v2(message, **kw)
    return caught.value


def only(message: bytes | str, **kw: Any) -> CanonicalEvent:
    events = events_from_hl7v2(message, **kw)
    assert len(events) == 1, events
    return events[0]


def ck_with(obx: str, obr_time: str = "20250110073000+0000") -> str:
    return er7(
        MSH_LAB.format(sent="20250110080000+0000", control="LAB-0400"),
        PID,
        f"OBR|1|PLC-40|FIL-40|2157-6^Creatine kinase^LN|||{obr_time}",
        obx,
    )


# --- ORU^R01 ---------------------------------------------------------------------------------
def test_creatine_kinase_result_with_offset() -> None:
    event = only(ORU_CK)
    assert isinstance(event, LabResultEvent)
    assert dumped(event) == lab(
        event_id="hl7v2:LAB-0001:1:1",
        occurred_at="2025-01-03T09:00:00-05:00",
        loinc="2157-6",
        value=9400.0,
        unit="U/L",
        reference_high=195.0,
        result_id="hl7v2:FIL-5531:2157-6",
    )
    assert event.occurred_at == datetime(2025, 1, 3, 14, 0, tzinfo=UTC)


def test_result_without_offset_is_read_in_the_site_time_zone() -> None:
    event = only(ORU_CK_LOCAL, local_tz=NEW_YORK)
    assert dumped(event) == lab(
        event_id="hl7v2:LAB-0003:1:1",
        occurred_at="2025-07-03T08:30:00-04:00",  # EDT in July
        loinc="2157-6",
        value=1200.0,
        unit="U/L",
        reference_high=200.0,
        result_id="hl7v2:FIL-6000:2157-6",
    )
    assert event.occurred_at == datetime(2025, 7, 3, 12, 30, tzinfo=UTC)
    # The default zone is UTC: same wall-clock time, another instant.
    assert only(ORU_CK_LOCAL).occurred_at == datetime(2025, 7, 3, 8, 30, tzinfo=UTC)


def test_winter_local_time_uses_standard_offset_and_a_bare_date_is_local_midnight() -> None:
    event = only(ck_with("OBX|1|NM|2157-6^CK^LN||300|U/L|||||F|||20250115"), local_tz=NEW_YORK)
    assert event.occurred_at.isoformat() == "2025-01-15T00:00:00-05:00"
    fractional = only(ck_with("OBX|1|NM|2157-6^CK^LN||300|U/L|||||F|||20250115103005.25+0130"))
    assert fractional.occurred_at.isoformat() == "2025-01-15T10:30:05.250000+01:30"


def test_local_mean_time_is_stated_in_utc() -> None:
    # New York before 1883 is -04:56:02; RFC 3339 offsets are whole minutes.
    event = only(ck_with("OBX|1|NM|2157-6^CK^LN||300|U/L|||||F|||1850"), local_tz=NEW_YORK)
    assert event.occurred_at.isoformat() == "1850-01-01T04:56:02+00:00"


def test_observation_time_falls_back_to_obr_7_then_msh_7() -> None:
    from_obr = only(ck_with("OBX|1|NM|2157-6^CK^LN||300|U/L|||||F"))
    assert from_obr.occurred_at.isoformat() == "2025-01-10T07:30:00+00:00"
    from_msh = only(ck_with("OBX|1|NM|2157-6^CK^LN||300|U/L|||||F", obr_time=""))
    assert from_msh.occurred_at.isoformat() == "2025-01-10T08:00:00+00:00"


def test_corrected_result_keeps_result_id_and_gets_a_new_event_id() -> None:
    first, correction = only(ORU_CK), only(ORU_CK_CORRECTED)
    assert isinstance(first, LabResultEvent) and isinstance(correction, LabResultEvent)
    assert correction.status == "corrected"
    assert correction.value == 8400.0
    assert correction.result_id == first.result_id == "hl7v2:FIL-5531:2157-6"
    assert correction.event_id == "hl7v2:LAB-0002:1:1" != first.event_id


def test_redelivery_converts_to_the_same_events() -> None:
    assert events_from_hl7v2(ORU_CK) == events_from_hl7v2(ORU_CK.encode())


def test_panel_keeps_only_loinc_coded_results_with_a_value() -> None:
    events = events_from_hl7v2(ORU_PANEL)
    assert [dumped(e) for e in events] == [
        lab(event_id="hl7v2:LAB-0100:1:1", occurred_at="2025-01-10T07:30:00+00:00",
            loinc="2345-7", value=5.4, unit="mmol/L", reference_high=5.5,
            result_id="hl7v2:FIL-9:2345-7"),
        # LOINC only in the alternate coding (CWE.4-6); "0-0.9" gives 0.9.
        lab(event_id="hl7v2:LAB-0100:1:4", occurred_at="2025-01-10T07:30:00+00:00",
            loinc="1761-6", value=12.5, unit="U/L", reference_high=0.9,
            result_id="hl7v2:FIL-9:1761-6"),
    ]  # local potassium, comment, pending CK (I, no value), cancelled AST (X, no value): none


def test_message_without_loinc_results_converts_to_no_events() -> None:
    message = ck_with("OBX|1|NM|CK^Creatine kinase^99LAB||9400|U/L|24-195|H|||F")
    assert events_from_hl7v2(message) == []


def test_text_results_anti_hmgcr_positive_and_coded_srp() -> None:
    hmgcr, srp = events_from_hl7v2(ORU_HMGCR)
    assert dumped(hmgcr) == lab(
        event_id="hl7v2:LAB-0200:1:1", occurred_at="2025-01-04T09:00:00+01:00",
        loinc="93493-5", value_text="Positive", result_id="hl7v2:FIL-20:93493-5",
    )  # reference range "Negative" is not a number: no reference_high
    assert dumped(srp) == lab(
        event_id="hl7v2:LAB-0200:1:2", occurred_at="2025-01-04T09:00:00+01:00",
        loinc="33921-8", value_text="Not detected", result_id="hl7v2:FIL-20:33921-8",
    )


@pytest.mark.parametrize(
    ("value_type", "value", "expected_value", "expected_comparator", "expected_text"),
    [
        ("CWE", "10828004^^SCT", None, None, "10828004"),  # no text component: the code
        ("TX", "Strongly positive~(1:640)", None, None, "Strongly positive\n(1:640)"),
        ("SN", "^182", 182.0, None, None),
        ("SN", "=^182", 182.0, None, None),
        # above or below the analyser's range: a bound the rules can reason with
        ("SN", ">^20000", 20000.0, ">", None),
        ("SN", ">=^20000", 20000.0, ">=", None),
        ("SN", "<^10", 10.0, "<", None),
        ("SN", "<=^10", 10.0, "<=", None),
        # what no single bound says: kept as reported
        ("SN", "<>^182", None, None, "<>182"),
        ("SN", "^100^-^200", None, None, "100-200"),
        ("SN", "^1^:^128", None, None, "1:128"),
        ("SN", ">^-5", None, None, ">-5"),
        ("NM", "-2", None, None, "-2"),  # events.v1 values are >= 0: kept as text
    ],
)
def test_other_value_types(
    value_type: str, value: str, expected_value: float | None,
    expected_comparator: str | None, expected_text: str | None,
) -> None:
    event = only(ck_with(f"OBX|1|{value_type}|2157-6^CK^LN||{value}|U/L|||||F"))
    assert isinstance(event, LabResultEvent)
    assert (event.value, event.comparator, event.value_text) == (
        expected_value, expected_comparator, expected_text)


def test_a_bound_that_is_not_a_number_is_refused_with_its_field() -> None:
    error = rejected(ck_with("OBX|1|SN|2157-6^CK^LN||>^lots|U/L|||||F"))
    assert error.code == INVALID_FIELD
    assert "OBX-5: not a number 'lots' for value type SN (OBR 1, OBX 1)" in error.reason


@pytest.mark.parametrize(
    ("reference_range", "high"),
    [("24-195", 195.0), ("<200", 200.0), ("0-0.9", 0.9), ("<= 5", 5.0), ("24 - 195", 195.0),
     (">40", None), ("Negative", None), ("", None), ("see note", None)],
)
def test_reference_high_from_the_reference_range(reference_range: str, high: float | None) -> None:
    event = only(ck_with(f"OBX|1|NM|2157-6^CK^LN||300|U/L|{reference_range}||||F"))
    assert isinstance(event, LabResultEvent)
    assert event.reference_high == high


@pytest.mark.parametrize(
    ("flag", "status"),
    [("F", "final"), ("C", "corrected"), ("P", "preliminary"), ("R", "preliminary"),
     ("S", "preliminary"), ("I", "preliminary"), ("X", "cancelled"),
     ("W", "entered-in-error"), ("D", "entered-in-error"), ("U", "final"), ("", "final")],
)
def test_each_result_status(flag: str, status: str) -> None:
    event = only(oru_status(flag))
    assert isinstance(event, LabResultEvent)
    assert (event.status, event.value) == (status, 950.0)


def test_deleted_result_without_a_value_is_still_an_entered_in_error_event() -> None:
    event = only(ck_with("OBX|1|NM|2157-6^CK^LN||||||||D"))
    assert isinstance(event, LabResultEvent)
    assert (event.status, event.value, event.result_id) == (
        "entered-in-error", None, "hl7v2:FIL-40:2157-6")


def test_unknown_result_status_names_obx_11() -> None:
    error = rejected(oru_status("Q"))
    assert error.code == INVALID_FIELD
    assert error.reason.startswith("OBX-11: unknown result status 'Q'")


@pytest.mark.parametrize(
    "framed",
    [
        "\x0b" + ORU_CK + "\x1c\r",
        ORU_CK.replace("\r", "\n"),
        ORU_CK.replace("\r", "\r\n"),
        "\x0b" + ORU_CK.replace("\r", "\r\n") + "\x1c\r",
    ],
    ids=["mllp", "lf", "crlf", "mllp-crlf"],
)
def test_mllp_framing_and_newline_separators(framed: str) -> None:
    assert events_from_hl7v2(framed) == events_from_hl7v2(ORU_CK)
    assert events_from_hl7v2(framed.encode()) == events_from_hl7v2(ORU_CK)


def test_latin1_bytes_are_decoded() -> None:
    message = ck_with("OBX|1|ST|93493-5^HMGCR Ab^LN||Positiv (hoher Titer \xe4)||||||F")
    event = only(message.encode("latin-1"))
    assert isinstance(event, LabResultEvent)
    assert event.value_text == "Positiv (hoher Titer \xe4)"


def test_patient_is_the_mr_identifier_else_the_first() -> None:
    no_mr = ORU_CK.replace(PID, "PID|1||4455667^^^GENHOSP^PI~998^^^OTHER^PI||Doe^Jane")
    assert only(ORU_CK).patient_id == "MRN-1001"
    assert only(no_mr).patient_id == "4455667"


def test_each_patient_in_an_oru_gets_their_own_results() -> None:
    message = ORU_CK + "PID|2||MRN-2002^^^GENHOSP^MR||Roe^Richard\r" + (
        "OBR|1||FIL-77|2157-6^Creatine kinase^LN|||20250103091500-0500\r"
        "OBX|1|NM|2157-6^Creatine kinase^LN||150|U/L|24-195|N|||F\r"
    )
    first, second = events_from_hl7v2(message)
    assert (first.patient_id, first.event_id) == ("MRN-1001", "hl7v2:LAB-0001:1:1")
    assert (second.patient_id, second.event_id) == ("MRN-2002", "hl7v2:LAB-0001:1:1")


def test_implausible_creatine_kinase_rejects_the_message_as_invalid_event() -> None:
    error = rejected(ck_with("OBX|1|NM|2157-6^CK^LN||2500000|U/L|||||F"))
    assert error.code == INVALID_EVENT
    assert "hl7v2:LAB-0400:1:1" in error.reason and "implausible" in error.reason


# --- Rejections ------------------------------------------------------------------------------
def test_unknown_message_type_is_unsupported() -> None:
    adt = ORU_CK.replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01")
    error = rejected(adt)
    assert error.code == UNSUPPORTED
    assert error.reason.startswith("MSH-9: message type 'ADT^A01' is not converted")


def test_missing_patient_identifier() -> None:
    error = rejected(ORU_CK.replace(PID, "PID|1||||Doe^Jane"))
    assert (error.code, error.reason) == (MISSING_FIELD, "PID-3: no patient identifier")
    no_pid = rejected(ORU_CK.replace(PID + "\r", ""))
    assert no_pid.code == MISSING_FIELD and no_pid.reason.startswith("PID-3:")


def test_missing_message_control_id() -> None:
    error = rejected(ORU_CK.replace("|LAB-0001|", "||"))
    assert (error.code, error.reason) == (MISSING_FIELD, "MSH-10: no message control id")


@pytest.mark.parametrize("bad", ["2025-13-01", "20251301", "20250230", "202501031261",
                                 "20250103090000+0560", "yesterday"])
def test_bad_timestamp_names_the_field(bad: str) -> None:
    error = rejected(ck_with(f"OBX|1|NM|2157-6^CK^LN||300|U/L|||||F|||{bad}"))
    assert error.code == INVALID_FIELD
    assert error.reason.startswith(f"OBX-14: not an HL7 timestamp {bad!r}")


def test_bad_timestamp_in_orc_9_names_it() -> None:
    message = RDE_PREDNISONE_NW.replace("||20250106093000-0500|", "||2025-01-06|")
    error = rejected(message)
    assert (error.code, error.reason) == (INVALID_FIELD,
                                          "ORC-9: not an HL7 timestamp '2025-01-06'")


def test_non_numeric_nm_value_names_obx_5_and_the_set_id() -> None:
    message = ck_with("OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L|||||F\r"
                      "OBX|2|NM|2157-6^CK^LN||>1000|U/L|||||F")
    error = rejected(message)
    assert error.code == INVALID_FIELD
    assert error.reason == "OBX-5: not a number '>1000' for value type NM (OBR 1, OBX 2)"


@pytest.mark.parametrize("garbage", ["", "hello", "PID|1||x", "MSH", "MSH|^~|LAB",
                                     "MSH|^^\\&|X", "FHS|^~\\&|X"])
def test_not_hl7_is_not_parseable(garbage: str) -> None:
    error = rejected(garbage)
    assert error.code in {NOT_PARSEABLE, UNSUPPORTED}
    assert error.reason.split(":")[0] in {"MSH", "MSH-2", "FHS"}


def test_two_messages_in_one_input_are_rejected() -> None:
    error = rejected(ORU_CK + ORU_CK_CORRECTED)
    assert error.code == UNSUPPORTED and error.reason.startswith("MSH:")


# --- Pharmacy orders -------------------------------------------------------------------------
def test_rde_new_prednisone_order() -> None:
    event = only(RDE_PREDNISONE_NW)
    assert isinstance(event, MedicationOrderEvent)
    assert dumped(event) == order(
        event_id="hl7v2:PH-0001:ORD-501",
        occurred_at="2025-01-06T09:30:00-05:00",
        order_id="ORD-501",
        status="active",
        medication={"rxnorm": "8640", "atc": None, "name": "prednisone 20 MG Oral Tablet"},
        dose={"value": 60.0, "unit": "mg"},
        frequency={"times": 1, "period": 1.0, "unit": "d"},
        route="Oral",
    )


def test_discontinue_stops_the_same_order() -> None:
    new, stop = only(RDE_PREDNISONE_NW), only(RDE_PREDNISONE_DC)
    assert isinstance(new, MedicationOrderEvent) and isinstance(stop, MedicationOrderEvent)
    assert (stop.status, stop.order_id) == ("stopped", new.order_id)
    assert stop.event_id == "hl7v2:PH-0002:ORD-501" != new.event_id
    assert stop.occurred_at.isoformat() == "2025-03-01T14:00:00-05:00"


def test_methotrexate_weekly_and_daily() -> None:
    weekly, daily = only(RDE_MTX_WEEKLY), only(RDE_MTX_DAILY)
    assert isinstance(weekly, MedicationOrderEvent) and isinstance(daily, MedicationOrderEvent)
    assert dumped(weekly) == order(
        event_id="hl7v2:PH-0010:ORD-MTX-1", occurred_at="2025-01-07T10:00:00+00:00",
        order_id="ORD-MTX-1", status="active",
        medication={"rxnorm": "6851", "atc": None, "name": "methotrexate 2.5 MG Oral Tablet"},
        dose={"value": 15.0, "unit": "mg"}, frequency={"times": 1, "period": 1.0, "unit": "wk"},
        route="PO",
    )
    assert daily.frequency is not None
    assert (daily.frequency.times, daily.frequency.period, daily.frequency.unit) == (1, 1.0, "d")


def test_tacrolimus_bid_coded_by_atc_with_rxnorm_alternate() -> None:
    event = only(RDE_TACROLIMUS_BID)
    assert dumped(event) == order(
        event_id="hl7v2:PH-0020:ORD-TAC-1", occurred_at="2025-01-08T08:00:00+00:00",
        order_id="ORD-TAC-1", status="active",
        medication={"rxnorm": "42316", "atc": "L04AD02", "name": "Tacrolimus"},
        dose={"value": 2.0, "unit": "mg"}, frequency={"times": 2, "period": 1.0, "unit": "d"},
        route="PO",
    )


def test_omp_order_reads_rxo() -> None:
    event = only(OMP_MYCOPHENOLATE)
    assert dumped(event) == order(
        event_id="hl7v2:CPOE-77:CPOE-ORD-9", occurred_at="2025-01-12T10:10:00+00:00",
        order_id="CPOE-ORD-9", status="active",
        medication={"rxnorm": None, "atc": None,
                    "name": "mycophenolate mofetil 500 MG Oral Tablet"},
        dose={"value": 1000.0, "unit": "mg"},
        frequency={"times": 1, "period": 12.0, "unit": "h"},
        route="Oral",
    )


def test_rds_dispense_and_v23_quantity_timing() -> None:
    message = er7(
        MSH_PHARM.format(sent="20250115120000+0000", type="RDS^O13^RDS_O13", control="DSP-1"),
        PID,
        "ORC|RE||PH-88^PHARMSYS|||||||",  # no placer: the filler number; no ORC-9: MSH-7
        "RXE|1^BID^^20250115|3008^cyclosporine^RXN|100||mg",
        "RXR|PO",
        "RXD|1|3008^cyclosporine^RXN|20250115|60|CAP",
    )
    event = only(message)
    assert dumped(event) == order(
        event_id="hl7v2:DSP-1:PH-88", occurred_at="2025-01-15T12:00:00+00:00",
        order_id="PH-88", status="active",
        medication={"rxnorm": "3008", "atc": None, "name": "cyclosporine"},
        dose={"value": 100.0, "unit": "mg"}, frequency={"times": 2, "period": 1.0, "unit": "d"},
        route="PO",
    )


# --- v2.3 / v2.4 pharmacy messages ----------------------------------------------------------
MSH_V23 = "MSH|^~\\&|PHARMSYS|GENHOSP|IMNM|GENHOSP|{sent}||{type}|{control}|P|2.3"


def test_v23_rde_o01_reads_rxe_and_its_quantity_timing() -> None:
    message = er7(
        MSH_V23.format(sent="20250120090000-0500", type="RDE^O01", control="RDE23-1"),
        PID,
        "ORC|NW|ORD-23^EPIC|||||^BID^^20250120||20250120085500-0500",
        "RXE|1^BID^^20250120|6851^methotrexate 2.5 MG Oral Tablet^RXNORM|15||mg",
        "RXR|PO",
    )
    event = only(message)
    assert dumped(event) == order(
        event_id="hl7v2:RDE23-1:ORD-23", occurred_at="2025-01-20T08:55:00-05:00",
        order_id="ORD-23", status="active",
        medication={"rxnorm": "6851", "atc": None,
                    "name": "methotrexate 2.5 MG Oral Tablet"},
        dose={"value": 15.0, "unit": "mg"}, frequency={"times": 2, "period": 1.0, "unit": "d"},
        route="PO",
    )


def test_v23_rds_o01_dispense() -> None:
    message = er7(
        MSH_V23.format(sent="20250121120000+0000", type="RDS^O01", control="DSP23-1"),
        PID,
        "ORC|RE|ORD-24||||||||20250121115000+0000",
        "RXE|1^QD|8640^prednisone^RXNORM|40||mg",
        "RXD|1|8640^prednisone^RXNORM|20250121|30|TAB",
    )
    event = only(message)
    assert (event.event_id, event.status, event.frequency) == (
        "hl7v2:DSP23-1:ORD-24", "active", Frequency(times=1, period=1.0, unit="d"))


def test_orm_o01_pharmacy_order_reads_rxo_and_orc_7() -> None:
    message = er7(
        MSH_V23.format(sent="20250122100000+0000", type="ORM^O01", control="ORM-1"),
        PID,
        "ORC|NW|ORD-25^CPOE|||||1^Q1W^^20250122||20250122095500+0000",
        "RXO|6851^methotrexate^RXNORM|20||mg",
        "RXR|PO",
    )
    event = only(message)
    assert dumped(event) == order(
        event_id="hl7v2:ORM-1:ORD-25", occurred_at="2025-01-22T09:55:00+00:00",
        order_id="ORD-25", status="active",
        medication={"rxnorm": "6851", "atc": None, "name": "methotrexate"},
        dose={"value": 20.0, "unit": "mg"}, frequency={"times": 1, "period": 1.0, "unit": "wk"},
        route="PO",
    )


def test_orm_o01_orders_for_other_things_are_not_medication_orders() -> None:
    lab_only = er7(
        MSH_V23.format(sent="20250122100000+0000", type="ORM^O01", control="ORM-2"),
        PID,
        "ORC|NW|LAB-77^CPOE|||||||20250122095500+0000",
        "OBR|1|LAB-77^CPOE||2157-6^Creatine kinase^LN",
    )
    assert events_from_hl7v2(lab_only) == []
    mixed = er7(
        MSH_V23.format(sent="20250122100000+0000", type="ORM^O01", control="ORM-3"),
        PID,
        "ORC|NW|LAB-78^CPOE|||||||20250122095500+0000",
        "OBR|1|LAB-78^CPOE||2157-6^Creatine kinase^LN",
        "ORC|NW|ORD-26^CPOE|||||||20250122095500+0000",
        "RXO|83367^atorvastatin^RXNORM|40||mg",
    )
    assert [e.event_id for e in events_from_hl7v2(mixed)] == ["hl7v2:ORM-3:ORD-26"]


def test_orm_o01_order_without_its_detail_is_refused_naming_rxo() -> None:
    # A discontinue sent as a bare ORC: which drug it stops is not in the message.
    bare = er7(
        MSH_V23.format(sent="20250122100000+0000", type="ORM^O01", control="ORM-4"),
        PID,
        "ORC|DC|ORD-25^CPOE|||||||20250123095500+0000",
    )
    error = rejected(bare)
    assert (error.code, error.reason) == (
        MISSING_FIELD, "RXO: no RXO segment for the order (order 'ORD-25')")


def test_one_event_per_order_group() -> None:
    message = er7(
        MSH_PHARM.format(sent="20250115120000+0000", type="RDE^O11^RDE_O11", control="PH-900"),
        PID,
        "ORC|NW|A-1|||||||20250115110000+0000",
        "RXE||8640^prednisone^RXNORM|40||mg",
        "ORC|DC|A-0|||||||20250115110000+0000",
        "RXE||83367^atorvastatin^RXNORM|40||mg",
    )
    events = events_from_hl7v2(message)
    assert [(e.event_id, getattr(e, "status", None)) for e in events] == [
        ("hl7v2:PH-900:A-1", "active"), ("hl7v2:PH-900:A-0", "stopped")]


@pytest.mark.parametrize(
    ("repeat", "frequency"),
    [("QD", (1, 1.0, "d")), ("DAILY", (1, 1.0, "d")), ("Q24H", (1, 1.0, "d")),
     ("BID", (2, 1.0, "d")), ("TID", (3, 1.0, "d")), ("QID", (4, 1.0, "d")),
     ("Q6H", (1, 6.0, "h")), ("Q8H^Every 8 hours^HL70335", (1, 8.0, "h")),
     ("QOD", (1, 2.0, "d")), ("QW", (1, 1.0, "wk")), ("Q1W", (1, 1.0, "wk")),
     ("WEEKLY", (1, 1.0, "wk")), ("QWK", (1, 1.0, "wk")), ("Q2W", (1, 2.0, "wk")),
     ("Q3D", (1, 3.0, "d")), ("QM", (1, 1.0, "mo")), ("MONTHLY", (1, 1.0, "mo")),
     ("PRN", None), ("ONCE", None), ("", None), ("Q0H", None)],
)
def test_repeat_patterns(repeat: str, frequency: tuple[int, float, str] | None) -> None:
    event = only(rde("PH-1", "NW", "20250106093000+0000", "8640^prednisone^RXNORM", "10", "mg",
                     repeat, "PO"))
    assert isinstance(event, MedicationOrderEvent)
    got = event.frequency
    assert (None if got is None else (got.times, got.period, got.unit)) == frequency


@pytest.mark.parametrize(
    ("control", "order_status", "status"),
    [("NW", "", "active"), ("OK", "IP", "active"), ("XO", "", "active"),
     ("RP", "", "active"), ("DC", "", "stopped"), ("OD", "", "stopped"),
     ("CA", "", "cancelled"), ("OC", "", "cancelled"), ("HD", "", "on-hold"),
     ("OH", "", "on-hold"), ("RL", "", "active"), ("SC", "CM", "completed"),
     ("SC", "IP", "active"), ("NW", "HD", "on-hold"), ("XX", "DC", "stopped"),
     ("OK", "CA", "cancelled")],
)
def test_order_status_from_order_control_and_order_status(
    control: str, order_status: str, status: str
) -> None:
    event = only(rde("PH-1", control, "20250106093000+0000", "8640^prednisone^RXNORM", "10",
                     "mg", "QD", "PO", order_status=order_status))
    assert isinstance(event, MedicationOrderEvent)
    assert event.status == status


def test_unknown_order_control_is_rejected() -> None:
    error = rejected(rde("PH-1", "ZZ", "20250106093000+0000", "8640^prednisone^RXNORM", "10",
                         "mg", "QD", "PO"))
    assert error.code == INVALID_FIELD
    assert error.reason == "ORC-1: unknown order control 'ZZ' (order 'ORD-501')"


def test_order_without_a_drug_identity_or_order_number() -> None:
    no_drug = rejected(rde("PH-1", "NW", "20250106093000+0000", "12345^^LOCALFORM", "10", "mg",
                           "QD", "PO"))
    assert no_drug.code == MISSING_FIELD and no_drug.reason.startswith("RXE-2:")
    no_number = rejected(RDE_PREDNISONE_NW.replace("|ORD-501^EPIC|PH-ORD-501^PHARMSYS|", "|||"))
    assert no_number.code == MISSING_FIELD and no_number.reason.startswith("ORC-2:")


def test_non_numeric_rxnorm_code_becomes_the_name_and_a_bad_amount_names_rxe_3() -> None:
    event = only(rde("PH-1", "NW", "20250106093000+0000", "RX-PRED^^RXNORM", "10", "mg", "QD",
                     "PO"))
    assert isinstance(event, MedicationOrderEvent)
    assert (event.medication.rxnorm, event.medication.name) == (None, "RX-PRED")
    bad = rejected(rde("PH-1", "NW", "20250106093000+0000", "8640^prednisone^RXNORM", "ten",
                       "mg", "QD", "PO"))
    assert bad.code == INVALID_FIELD and bad.reason.startswith("RXE-3: not a dose amount 'ten'")


def test_malformed_atc_code_names_the_field() -> None:
    error = rejected(rde("PH-1", "NW", "20250106093000+0000", "L04AD02XX^Tacrolimus^ATC", "1",
                         "mg", "BID", "PO"))
    assert error.code == INVALID_FIELD
    assert error.reason == "RXE-2: not an ATC code 'L04AD02XX' (order 'ORD-501')"


def test_topical_route_code_reads_as_non_systemic() -> None:
    event = only(rde("PH-1", "NW", "20250106093000+0000", "42316^tacrolimus 0.1% ointment^RXNORM",
                     "1", "application", "BID", "TP"))
    assert isinstance(event, MedicationOrderEvent)
    assert event.route == "TP (topical)"
    med = event.medication
    assert DrugClass.STEROID_SPARING not in recognise(med.rxnorm, med.atc, med.name,
                                                      event.route).classes


# --- Robustness ------------------------------------------------------------------------------
_SAMPLES = [ORU_CK, ORU_PANEL, ORU_HMGCR, RDE_PREDNISONE_NW, RDE_TACROLIMUS_BID,
            OMP_MYCOPHENOLATE]


@st.composite
def _mutated_sample(draw: st.DrawFn) -> str:
    sample = draw(st.sampled_from(_SAMPLES))
    start = draw(st.integers(0, len(sample)))
    end = draw(st.integers(start, min(len(sample), start + 12)))
    insert = draw(st.text(alphabet=st.sampled_from("|^~\\&\r\n0123456789.-+<>XYZAMPLDFCH "),
                          max_size=10) | st.text(max_size=6))
    return sample[:start] + insert + sample[end:]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text() | st.binary() | _mutated_sample())
def test_arbitrary_input_only_ever_raises_conversion_rejected(message: str | bytes) -> None:
    try:
        events = events_from_hl7v2(message, local_tz=NEW_YORK)
    except ConversionRejected as error:
        assert error.reason and error.code
        return
    for event in events:
        assert event.event_id.startswith("hl7v2:") and (event.source or "").startswith("hl7v2")


# --- End to end with the real engine ---------------------------------------------------------
def test_converted_statin_order_opens_the_statin_alert() -> None:
    diagnosis = parse_event_object({
        "event_id": "dx-1", "patient_id": "MRN-1001", "event_type": "diagnosis",
        "occurred_at": "2025-01-06T09:00:00-05:00", "source": "test", "condition": "IMNM",
        "antibody": "anti-HMGCR", "statin_associated": True,
    })
    statin = only(RDE_ATORVASTATIN)
    assert isinstance(statin, MedicationOrderEvent)
    replay = Replay()
    transitions = [t for event in (diagnosis, statin) for t in replay.feed(event)]
    transitions += list(replay.finish())
    opened = [t for t in transitions if t.rule == "statin_active" and t.status == "open"]
    assert len(opened) == 1
    alert = opened[0]
    assert alert.patient_id == "MRN-1001"
    assert alert.raised_at == datetime(2025, 1, 10, 14, 0, tzinfo=UTC)
    assert statin.event_id in alert.evidence and "dx-1" in alert.evidence
    assert "ORD-ATV-1" in alert.detail


def test_a_body_weight_and_a_weight_based_prednisone_order_count_as_mg_per_day() -> None:
    weight = only(ck_with(
        "OBX|1|NM|29463-7^Body weight^LN||154|[lb_av]^pound^UCUM|||||F|||20250110073000+0000"
    ))
    assert (weight.loinc, weight.value, weight.unit) == ("29463-7", 154.0, "[lb_av]")
    prednisone = only(rde(
        "PH-0009", "NW", "20250110093000+0000", "8640^prednisone 20 MG Oral Tablet^RXNORM", "1",
        "mg/kg^milligram per kilogram^UCUM", "QD^Once daily^HL70335", "PO^Oral^HL70162",
    ))
    assert prednisone.dose is not None and prednisone.dose.unit == "mg/kg"
    replay = Replay()
    for event in (weight, prednisone):
        list(replay.feed(event))
    [order] = replay.states[prednisone.patient_id].orders.values()
    assert order.versions[0].prednisone_equivalent_mg_per_day == pytest.approx(69.85, abs=0.01)


def test_a_body_weight_without_a_mass_unit_is_refused() -> None:
    error = rejected(ck_with("OBX|1|NM|29463-7^Body weight^LN||70|||||F"))
    assert "a body weight needs a mass unit" in error.reason


# --------------------------------------------------------------------------------------------
# a dose in tablets or mL with the give strength (RXE-25/26, RXO-18/19) is a mass
def _prednisone_rde(amount: str, units: str, strength: str, strength_units: str) -> str:
    return rde(
        "PH-0040", "NW", "20250110093000+0000", "8640^prednisone^RXNORM", amount, units,
        "QD^Once daily^HL70335", "PO^Oral^HL70162", placer="ORD-PRED-40",
        strength=strength, strength_units=strength_units,
    )


@pytest.mark.parametrize(
    ("amount", "units", "strength", "strength_units", "dose"),
    [
        ("3", "TAB^Tablet^HL70292", "20", "MG^milligram^UCUM", (60.0, "mg")),
        ("2.5", "{tbl}^tablet^UCUM", "5", "mg", (12.5, "mg")),
        ("1", "CAP", "0.5", "G", (500.0, "mg")),
        ("10", "ML^milliliter^UCUM", "15", "MG/5ML", (30.0, "mg")),
        ("4", "mL", "3", "mg/mL", (12.0, "mg")),
        # no conversion: a bare mass per mL is ambiguous, a strength per mL for tablets does
        # not apply, a unit that is no mass, and a dose already in mg keeps its own value
        ("10", "ML", "15", "MG", (10.0, "ML")),
        ("2", "TAB", "5", "MG/ML", (2.0, "TAB")),
        ("2", "TAB", "40", "MEQ", (2.0, "TAB")),
        ("2", "TAB", "5", "", (2.0, "TAB")),
        ("60", "mg", "20", "MG", (60.0, "mg")),
        ("60", "mg", "not a number", "MG", (60.0, "mg")),
    ],
)
def test_a_dose_in_tablets_with_its_give_strength_is_converted_to_mg(
    amount: str, units: str, strength: str, strength_units: str, dose: tuple[float, str]
) -> None:
    event = only(_prednisone_rde(amount, units, strength, strength_units))
    assert isinstance(event, MedicationOrderEvent) and event.dose is not None
    assert (event.dose.value, event.dose.unit) == dose


def test_tablets_with_their_strength_count_in_the_dose_rules() -> None:
    prednisone = only(_prednisone_rde("3", "TAB^Tablet^HL70292", "20", "MG^milligram^UCUM"))
    replay = Replay()
    list(replay.feed(prednisone))
    [order_state] = replay.states[prednisone.patient_id].orders.values()
    assert order_state.versions[0].prednisone_equivalent_mg_per_day == 60.0


def test_a_give_strength_that_is_not_a_number_is_refused_for_a_dose_in_tablets() -> None:
    error = rejected(_prednisone_rde("3", "TAB", "twenty", "MG"))
    assert error.code == INVALID_FIELD
    assert error.reason == "RXE-25: not a give strength 'twenty' (order 'ORD-PRED-40')"


def test_a_requested_give_strength_in_rxo_converts_the_requested_dose() -> None:
    message = OMP_MYCOPHENOLATE.replace(
        "RXO|^mycophenolate mofetil 500 MG Oral Tablet|1000||mg^milligram^UCUM",
        "RXO|^mycophenolate mofetil 500 MG Oral Tablet|2||TAB^Tablet^HL70292"
        + "|" * 14 + "500|MG",
    )
    event = only(message)
    assert isinstance(event, MedicationOrderEvent) and event.dose is not None
    assert (event.dose.value, event.dose.unit) == (1000.0, "mg")


def test_a_give_code_naming_its_strength_converts_a_dose_in_tablets() -> None:
    # HL7 sends RXE-25 only when the give code does not imply the strength
    by_name = only(rde(
        "PH-0041", "NW", "20250110093000+0000", "312617^predniSONE 20 MG Oral Tablet^RXNORM",
        "3", "TAB^Tablet^HL70292", "QD", "PO", placer="ORD-PRED-41",
    ))
    assert isinstance(by_name, MedicationOrderEvent) and by_name.dose is not None
    assert (by_name.dose.value, by_name.dose.unit) == (60.0, "mg")
    # the give strength, when sent, is the one used
    by_field = only(rde(
        "PH-0042", "NW", "20250110093000+0000", "312617^predniSONE 20 MG Oral Tablet^RXNORM",
        "3", "TAB", "QD", "PO", placer="ORD-PRED-42", strength="10", strength_units="MG",
    ))
    assert isinstance(by_field, MedicationOrderEvent) and by_field.dose is not None
    assert (by_field.dose.value, by_field.dose.unit) == (30.0, "mg")
