"""HL7 v2 pharmacy orders whose course ends: "methylprednisolone 1 g IV daily for 3 days".

The end the message states (TQ1-8, or ^5 of the v2.3/2.4 quantity/timing), else the start plus
its duration (TQ1-6; D5, W2 in ^3) or its count of administrations (TQ1-14; X3 in ^3), becomes
the order's ``ends_at``: read as open, a 3-day pulse counted as 1,250 mg/day for ever.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hl7_samples import MSH_PHARM, PID, er7
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imnm_common.contracts.events import MedicationOrderEvent, parse_event
from imnm_common.service_layer.replay import Replay
from imnm_ingest.domain.conversion import (
    INVALID_EVENT,
    INVALID_FIELD,
    MISSING_FIELD,
    ConversionRejected,
)
from imnm_ingest.domain.hl7v2 import events_from_hl7v2

ORDERED = "20250106093000+0000"


def pulse(*tq1s: str, control: str = "NW", orc7: str = "", rxe1: str = "",
          ordered: str = ORDERED) -> str:
    """Methylprednisolone 1000 mg IV once daily, with the timing given."""
    return er7(
        MSH_PHARM.format(sent=ordered, type="RDE^O11^RDE_O11", control="PH-77"),
        PID,
        f"ORC|{control}|ORD-MP-1^EPIC|||||{orc7}||{ordered}",
        *(tq1 for tq1 in tq1s if tq1),
        f"RXE|{rxe1}|6902^methylprednisolone^RXNORM|1000||mg",
        "RXR|IV",
    )


def order_of(message: str, local_tz: tzinfo = UTC) -> MedicationOrderEvent:
    [event] = events_from_hl7v2(message, local_tz=local_tz)
    assert isinstance(event, MedicationOrderEvent)
    return event


def ends(message: str, local_tz: tzinfo = UTC) -> str | None:
    event = order_of(message, local_tz)
    return None if event.ends_at is None else event.ends_at.astimezone(UTC).isoformat()


def refused(message: str) -> str:
    with pytest.raises(ConversionRejected) as caught:
        events_from_hl7v2(message)
    assert caught.value.code == INVALID_FIELD, caught.value.reason
    return caught.value.reason


@pytest.mark.parametrize(("tq1", "end"), [
    # TQ1-8 end date/time
    ("TQ1|1||QD||||20250106100000+0000|20250109095900+0000", "2025-01-09T09:59:00+00:00"),
    # a date alone: that day is given too
    ("TQ1|1||QD||||20250106|20250108", "2025-01-09T00:00:00+00:00"),
    # TQ1-6 service duration from TQ1-7
    ("TQ1|1||QD|||3^d|20250106100000+0000", "2025-01-09T10:00:00+00:00"),
    # TQ1-14 total occurrences at the frequency, from the order's time without TQ1-7
    ("TQ1|1||QD|||||||||||3", "2025-01-09T09:30:00+00:00"),
    ("TQ1|1||QD|||||||||||2", "2025-01-08T09:30:00+00:00"),  # counted from the order: after it
    ("TQ1|1||Q12H|||||||||||6", "2025-01-09T09:30:00+00:00"),
    ("TQ1|1||PRN|||||||||||3", None),  # how often is not said: open
    ("TQ1|1||QD||||20250106", None),  # a start alone: open
])
def test_the_course_end_from_tq1(tq1: str, end: str | None) -> None:
    assert ends(pulse(tq1)) == end


@pytest.mark.parametrize(("timing", "end"), [
    ("1^QD^X3^20250106100000+0000", "2025-01-09T10:00:00+00:00"),
    ("1^QD^D5^20250106100000+0000", "2025-01-11T10:00:00+00:00"),
    ("1^QD^W2", "2025-01-20T09:30:00+00:00"),
    ("1^QD^^20250106^20250107", "2025-01-08T00:00:00+00:00"),
    ("1^QD^INDEF^20250106", None),
])
def test_the_course_end_from_the_v23_quantity_timing(timing: str, end: str | None) -> None:
    assert ends(pulse(orc7=timing)) == end
    assert ends(pulse(rxe1=timing)) == end


def test_a_date_alone_ends_at_the_sites_midnight() -> None:
    message = pulse("TQ1|1||QD||||20250106|20250108")
    assert ends(message, local_tz=ZoneInfo("America/New_York")) == "2025-01-09T05:00:00+00:00"


def test_a_stopped_order_has_no_end() -> None:
    assert ends(pulse("TQ1|1||QD||||20250106|20250108", control="DC")) is None


@pytest.mark.parametrize(("tq1", "start"), [
    ("TQ1|1||QD||||20241201|20241203", "TQ1-8: the course ended at 2024-12-04T00:00:00+00:00"),
    ("TQ1|1||QD|||2^d|20241201", "TQ1-6: the course ended at 2024-12-03T00:00:00+00:00"),
])
def test_a_course_that_ended_before_an_order_in_force_is_refused(tq1: str, start: str) -> None:
    reason = refused(pulse(tq1))
    assert reason.startswith(start) and "send it completed (ORC-5 CM)" in reason, reason


@pytest.mark.parametrize(("tq1", "field"), [
    ("TQ1|1||QD|||||2025-01-09", "TQ1-8: not an HL7 timestamp"),
    ("TQ1|1||QD|||3^fortnights", "TQ1-6: service duration '3' 'fortnights'"),
    ("TQ1|1||QD|||-3^d", "TQ1-6: service duration '-3'"),
    ("TQ1|1||QD|||||||||||three", "TQ1-14: total occurrences 'three'"),
])
def test_a_timing_that_is_not_one_is_refused(tq1: str, field: str) -> None:
    assert refused(pulse(tq1)).startswith(field)


@pytest.mark.parametrize(("tq1s", "end"), [
    # one after another (TQ1-12 S): the course ends with the last
    (("TQ1|1||QD||||20250106|20250108||||S", "TQ1|2||QOD||||20250109|20250120"),
     "2025-01-21T00:00:00+00:00"),
    # in parallel (A): with the later of the two
    (("TQ1|1||QAM||||20250106|20250120||||A", "TQ1|2||QPM||||20250106|20250110"),
     "2025-01-21T00:00:00+00:00"),
    # one of them open: the course is open
    (("TQ1|1||QD||||20250106|20250108||||S", "TQ1|2||QOD||||20250109"), None),
    # counted at each timing's own pattern: 3 daily doses, then 2 every other day
    (("TQ1|1||QD||||20250106100000+0000|||||S||3",
      "TQ1|2||QOD||||20250109100000+0000|||||||2"), "2025-01-13T10:00:00+00:00"),
])
def test_several_timings_end_with_the_last(tq1s: tuple[str, ...], end: str | None) -> None:
    assert ends(pulse(*tq1s)) == end


@pytest.mark.parametrize(("tq1s", "said"), [
    (("TQ1|1||QAM|||||||||A", "TQ1|2||QPM"), (2, 1.0, "d")),  # parallel: twice a day
    (("TQ1|1||QD|||||||||A", "TQ1|2||Q12H"), (3, 1.0, "d")),  # once + every 12 h
    (("TQ1|1||QAM|||||||||S", "TQ1|2||QPM"), (1, 1.0, "d")),  # one after the other
    (("TQ1|1||QAM|||||||||A", "TQ1|2||PRN"), (1, 1.0, "d")),  # not all known: the first
    (("TQ1|1||QW|||||||||A", "TQ1|2||QD"), (1, 1.0, "wk")),  # 8 a week is no whole day
])
def test_parallel_timings_add_up(tq1s: tuple[str, ...], said: tuple[int, float, str]) -> None:
    frequency = order_of(pulse(*tq1s)).frequency
    assert frequency is not None
    assert (frequency.times, frequency.period, frequency.unit) == said


def test_a_pulse_of_three_doses_ends() -> None:
    """Read as open, the 1,250 mg/day went on and Pneumocystis prophylaxis fell due on day 28."""
    diagnosis = parse_event(
        b'{"event_id":"dx-1","patient_id":"MRN-1001","occurred_at":"2025-01-05T09:00:00Z",'
        b'"source":"test","event_type":"diagnosis","condition":"IMNM","status":"active"}'
    )
    for tq1, pjp_due in (("TQ1|1||QD|||||||||||3", False), ("TQ1|1||QD", True)):
        replay = Replay()
        rules = {t.rule for e in (diagnosis, order_of(pulse(tq1))) for t in replay.feed(e)}
        rules |= {t.rule for t in replay.finish(datetime(2025, 3, 10, tzinfo=UTC).timestamp())}
        assert ("pjp_prophylaxis_missing" in rules) is pjp_due, tq1


_DTM = st.sampled_from(["", "20250106", "20250107", "20250110093000+0000", "202501",
                        "20251399", "2025-01-09", "20241201"])
_FIELD = st.sampled_from(["", "3", "0", "-2", "x", "3^d", "2^wk", "1^fortnight", "X3", "D5",
                          "W1", "L1", "INDEF", "Q0"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["QD", "BID", "Q12H", "QW", "PRN", ""]), _DTM, _DTM, _FIELD, _FIELD,
       st.sampled_from(["NW", "DC", "HD"]), st.booleans())
def test_any_timing_converts_or_is_refused_with_a_reason(
    repeat: str, start: str, end: str, duration: str, occurrences: str, control: str,
    v23: bool,
) -> None:
    """TQ1 (or the v2.3 quantity/timing) in any mix: an order event, or a refusal that names the
    field, never another error; an end is always after the order."""
    if v23:
        message = pulse(orc7=f"1^{repeat}^{duration}^{start}^{end}", control=control)
    else:
        message = pulse(f"TQ1|1||{repeat}|||{duration}|{start}|{end}||||||{occurrences}",
                        control=control)
    try:
        event = order_of(message)
    except ConversionRejected as rejection:
        assert rejection.code in {INVALID_FIELD, MISSING_FIELD, INVALID_EVENT}, rejection
        assert rejection.reason.startswith(("TQ1-", "RXE-1", "ORC-7", "RXE-3")), rejection.reason
    else:
        begins = event.starts_at or event.occurred_at
        assert begins >= event.occurred_at
        assert event.ends_at is None or event.ends_at > begins
        assert event.ends_at is None or event.status in {"active", "on-hold"}


# --- an order written ahead of its first dose ------------------------------------------------
@pytest.mark.parametrize(("timing", "starts"), [
    (("TQ1|1||QD||||20250110080000+0000",), "2025-01-10T08:00:00+00:00"),
    (("TQ1|1||QD||||20250110",), "2025-01-10T00:00:00+00:00"),  # the start of that day
    (("TQ1|1||QD||||20250106080000+0000",), None),  # began before the order: as it was
    (("TQ1|1||QD",), None),
    # several TQ1s: the first to start; one without a start starts with the order
    (("TQ1|1||QD||||20250120|||||S", "TQ1|2||QD||||20250110"), "2025-01-10T00:00:00+00:00"),
    (("TQ1|1||QD|||||||||S", "TQ1|2||QD||||20250110"), None),
])
def test_a_later_start_is_the_orders_start(timing: tuple[str, ...], starts: str | None) -> None:
    event = order_of(pulse(*timing))
    said = None if event.starts_at is None else event.starts_at.astimezone(UTC).isoformat()
    assert said == starts


def test_the_v23_quantity_timing_start_and_a_stopped_order() -> None:
    event = order_of(pulse(orc7="1^QD^^20250110080000+0000"))
    assert event.starts_at is not None and event.starts_at.day == 10
    assert order_of(pulse("TQ1|1||QD||||20250110", control="DC")).starts_at is None


def test_a_course_ending_before_it_starts_is_refused() -> None:
    assert refused(pulse("TQ1|1||QD||||20250110|20250108")) == (
        "TQ1-8: the course ends at '20250108', not after it starts (TQ1-7 '20250110') "
        "(order 'ORD-MP-1')"
    )
