"""Which dead letters ``imnm redrive`` sends again, and the message it sends."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from imnm_common.contracts.deadletter import rejected_message
from imnm_common.service_layer.redrive import (
    NOT_AN_INPUT,
    NOT_CHOSEN,
    UNREADABLE,
    RedriveChoice,
    RedriveTally,
    to_redrive,
)

EVENTS, RAW_FHIR, ALERTS = "imnm.events.v1", "imnm.raw.fhir.v1", "imnm.alerts.v1"
INPUTS = frozenset({EVENTS, RAW_FHIR})


def letter(*, value: bytes | None = b'{"event_id": "e-1"}', key: bytes | None = b"MRN-1",
           topic: str = EVENTS, code: str = "invalid_value", service: str = "imnm-tracker",
           day: int = 5) -> bytes:
    return rejected_message(
        value=value, key=key, topic=topic, partition=2, offset=41, reason="why",
        reason_code=code, service=service, rejected_at=datetime(2025, 3, day, tzinfo=UTC),
    ).model_dump_json().encode()


def test_the_original_message_goes_back_to_its_topic_with_its_key() -> None:
    tally = RedriveTally()
    sent = to_redrive(letter(), RedriveChoice(INPUTS), tally)
    assert sent is not None
    assert (sent.topic, sent.key, sent.value) == (EVENTS, b"MRN-1", b'{"event_id": "e-1"}')
    assert tally.sent == {"invalid_value": 1} and not tally.left


def test_bytes_that_were_not_text_go_back_byte_for_byte_and_no_key_stays_none() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00"
    record = letter(value=png, key=None, code="bad_json")
    assert b"base64" in record and base64.b64encode(png) in record
    sent = to_redrive(record, RedriveChoice(INPUTS), RedriveTally())
    assert sent is not None and (sent.key, sent.value) == (None, png)


@pytest.mark.parametrize(("choice", "chosen"), [
    (RedriveChoice(INPUTS, reason_codes=frozenset({"invalid_value"})), True),
    (RedriveChoice(INPUTS, reason_codes=frozenset({"bad_json", "invalid_field"})), False),
    (RedriveChoice(INPUTS, services=frozenset({"imnm-ingest"})), False),
    (RedriveChoice(INPUTS, topics=frozenset({RAW_FHIR})), False),
    (RedriveChoice(INPUTS, rejected_since=datetime(2025, 3, 5, tzinfo=UTC)), True),
    (RedriveChoice(INPUTS, rejected_since=datetime(2025, 3, 5, 0, 1, tzinfo=UTC)), False),
    (RedriveChoice(INPUTS, rejected_before=datetime(2025, 3, 5, tzinfo=UTC)), False),
    (RedriveChoice(INPUTS, rejected_before=datetime(2025, 3, 6, tzinfo=UTC)), True),
])
def test_every_filter_must_choose_it(choice: RedriveChoice, chosen: bool) -> None:
    tally = RedriveTally()
    assert (to_redrive(letter(), choice, tally) is not None) is chosen
    assert tally.left == ({} if chosen else {NOT_CHOSEN: 1})


def test_only_input_topics_are_written_and_other_records_are_counted() -> None:
    tally = RedriveTally()
    choice = RedriveChoice(INPUTS, topics=frozenset({ALERTS}))
    assert to_redrive(letter(topic=ALERTS, service="imnm-console"), choice, tally) is None
    assert to_redrive(b"not a letter", choice, tally) is None
    assert to_redrive(None, choice, tally) is None
    assert tally.left == {NOT_AN_INPUT: 1, UNREADABLE: 2}
    assert tally.summary(dry_run=True) == (
        "would re-drive 0 dead letters; left 3 (not a dead letter 2, not an input topic 1)"
    )


def test_the_summary_counts_by_reason() -> None:
    tally = RedriveTally()
    choice = RedriveChoice(INPUTS)
    for code in ("invalid_field", "invalid_value", "invalid_value"):
        to_redrive(letter(code=code), choice, tally)
    assert tally.summary(dry_run=False) == (
        "re-drove 3 dead letters (invalid_field 1, invalid_value 2); left 0"
    )
