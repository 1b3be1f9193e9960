"""Per-message processing without Kafka: bytes in, state, transitions and dead letters out."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from imnm_common.domain import engine
from imnm_common.domain.state import PatientState
from imnm_common.service_layer.replay import Replay
from imnm_tracker.deadletters import KEY_MISMATCH, PROCESSING_ERROR
from imnm_tracker.processing import PatientBatch, parse_record
from imnm_tracker.records import SourceRecord

PID = "MRN-1"


def event(event_id: str, at: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "patient_id": PID, "occurred_at": at, **fields}


def statin(event_id: str = "e-statin", at: str = "2025-01-01T09:00:00Z") -> dict[str, Any]:
    return event(event_id, at, event_type="medication_order", order_id="o-statin",
                 status="active", medication={"name": "atorvastatin 40 mg", "rxnorm": "83367"})


def diagnosis(event_id: str = "e-dx", at: str = "2025-01-05T09:00:00Z") -> dict[str, Any]:
    return event(event_id, at, event_type="diagnosis", condition="IMNM", antibody="anti-HMGCR")


def prednisone(event_id: str, at: str, order_id: str, mg: float, status: str = "active"
               ) -> dict[str, Any]:
    return event(event_id, at, event_type="medication_order", order_id=order_id, status=status,
                 medication={"name": "prednisone", "rxnorm": "8640"},
                 dose={"value": mg, "unit": "mg"}, frequency={"times": 1, "period": 1, "unit": "d"})


def record(value: bytes | dict[str, Any] | None, *, key: bytes | None = PID.encode(),
           offset: int = 0, partition: int = 1) -> SourceRecord:
    raw = json.dumps(value).encode() if isinstance(value, dict) else value
    return SourceRecord("events", partition, offset, key, raw)


class Store:
    """A dict standing in for the faust table."""

    def __init__(self) -> None:
        self.states: dict[str, bytes] = {}
        self.loads: list[tuple[str, int]] = []

    def load(self, patient_id: str, partition: int) -> PatientState | None:
        self.loads.append((patient_id, partition))
        raw = self.states.get(patient_id)
        return None if raw is None else PatientState.from_bytes(raw)


# ------------------------------------------------------------------------ rejection
@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b'{"event_id": "x", "patient_id": ', "bad_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (json.dumps({k: v for k, v in statin().items() if k != "occurred_at"}).encode(),
         "missing_field"),
        (json.dumps({**statin(), "event_type": "vital_sign"}).encode(), "unknown_event_type"),
        (json.dumps({**statin(), "occurred_at": "2025-01-01T09:00:00"}).encode(),
         "bad_timestamp"),
        (json.dumps(event("ck", "2025-01-01T09:00:00Z", event_type="lab_result",
                          loinc="2157-6", value=2_500_000, unit="U/L")).encode(),
         "implausible_value"),
        (None, "bad_json"),
    ],
)
def test_invalid_messages_become_dead_letters(value: bytes | None, code: str) -> None:
    batch = PatientBatch(Store().load)
    result = batch.process(record(value, offset=42))
    assert result.dead_letter is not None
    assert result.dead_letter.reason_code == code
    assert result.dead_letter.reason
    assert (result.dead_letter.topic, result.dead_letter.partition,
            result.dead_letter.offset) == ("events", 1, 42)
    assert result.dead_letter.payload == (value or b"").decode()
    assert result.dead_letter.key == PID
    assert result.event is None and result.transitions == []
    assert batch.touched == {}


def test_binary_payload_is_kept_as_base64() -> None:
    raw = b"\xff\xfe\x00garbage"
    result = PatientBatch(Store().load).process(record(raw))
    assert result.dead_letter is not None
    assert result.dead_letter.payload_encoding == "base64"
    assert base64.b64decode(result.dead_letter.payload) == raw


@pytest.mark.parametrize("key", [None, b"MRN-other"])
def test_key_must_be_the_patient_id(key: bytes | None) -> None:
    result = PatientBatch(Store().load).process(record(statin(), key=key))
    assert result.dead_letter is not None
    assert result.dead_letter.reason_code == KEY_MISMATCH
    assert result.dead_letter.reason.startswith("key:")


def test_parse_record_accepts_a_keyed_event() -> None:
    parsed = parse_record(record(statin()))
    assert parsed.patient_id == PID and parsed.event_type == "medication_order"


# ------------------------------------------------------------------------ applying
def test_state_is_loaded_once_per_batch_from_the_message_partition() -> None:
    store = Store()
    batch = PatientBatch(store.load)
    batch.process(record(statin(), offset=1, partition=2))
    batch.process(record(diagnosis(), offset=2, partition=2))
    assert store.loads == [(PID, 2)]
    assert batch.touched[PID].partition == 2


def test_statin_then_diagnosis_alerts_at_once() -> None:
    batch = PatientBatch(Store().load)
    assert batch.process(record(statin())).transitions == []
    opened = batch.process(record(diagnosis())).transitions
    assert [(t.rule, t.status) for t in opened] == [("statin_active", "open")]


def test_stored_state_carries_over_between_batches() -> None:
    store = Store()
    first = PatientBatch(store.load)
    first.process(record(statin()))
    store.states[PID] = first.touched[PID].state.to_bytes()
    second = PatientBatch(store.load)
    opened = second.process(record(diagnosis())).transitions
    assert [t.rule for t in opened] == ["statin_active"]


def test_duplicates_are_reported_and_change_nothing() -> None:
    batch = PatientBatch(Store().load)
    batch.process(record(statin()))
    before = batch.touched[PID].state.to_bytes()
    again = batch.process(record(statin(), offset=1))
    assert again.duplicate and again.transitions == [] and again.dead_letter is None
    assert batch.touched[PID].state.to_bytes() == before


def test_an_engine_exception_is_dead_lettered_and_rolled_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = PatientBatch(Store().load)
    batch.process(record(statin()))
    before = batch.touched[PID].state.to_bytes()
    real_apply = engine.apply

    def exploding(state: PatientState, evt: Any, config: Any = None) -> Any:
        if evt.event_type != "diagnosis":  # a bug this one event triggers
            return real_apply(state, evt, config)
        state.seen_event_ids.append("half-applied")  # mutate, then fail
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "apply", exploding)
    result = batch.process(record(diagnosis(), offset=7))
    assert result.dead_letter is not None
    assert result.dead_letter.reason_code == PROCESSING_ERROR
    assert "RuntimeError: boom" in result.dead_letter.reason
    assert isinstance(result.error, RuntimeError)
    assert batch.touched[PID].state.to_bytes() == before  # no half-applied change survives

    monkeypatch.setattr(engine, "apply", real_apply)
    opened = batch.process(record(diagnosis(), offset=8)).transitions  # the stream goes on
    assert [t.rule for t in opened] == ["statin_active"]


def test_a_corrupt_stored_state_is_a_processing_error() -> None:
    store = Store()
    store.states[PID] = b"not json"
    result = PatientBatch(store.load).process(record(statin()))
    assert result.dead_letter is not None
    assert result.dead_letter.reason_code == PROCESSING_ERROR


# ------------------------------------------------------------------------ time
def _lines(*events: dict[str, Any]) -> list[bytes]:
    return [json.dumps(e).encode() for e in events]


def _replay(lines: list[bytes], now: float) -> list[tuple[str, str, str]]:
    replay = Replay()
    out = [*replay.feed_lines(lines), *replay.finish(now)]
    return [(t.alert_id, t.rule, t.status) for t in out]


def _batches(lines: list[bytes], sizes: list[int], now: float) -> list[tuple[str, str, str]]:
    """Feed ``lines`` in batches of the given sizes with the clock at 0, then close at now."""
    store = Store()
    out = []
    start = 0
    for size in sizes:
        batch = PatientBatch(store.load)
        for offset, line in enumerate(lines[start:start + size], start=start):
            out.extend(batch.process(record(line, offset=offset)).transitions)
        out.extend(batch.close(0.0).transitions)  # a clock before every event: judge nothing
        for pid, touched in batch.touched.items():
            store.states[pid] = touched.state.to_bytes()
        start += size
    state = store.load(PID, 1)
    assert state is not None
    out.extend(engine.advance(state, now))  # what the timer does once the clock reaches now
    return [(t.alert_id, t.rule, t.status) for t in out]


def test_events_of_one_instant_are_judged_together_like_replay() -> None:
    # 60 mg, then at one instant: stop it and order 50 mg (a 17% step, within limits).
    lines = _lines(
        diagnosis(at="2025-01-01T09:00:00Z"),
        prednisone("p1", "2025-01-01T09:00:00Z", "o1", 60),
        prednisone("p2", "2025-02-01T09:00:00Z", "o1", 60, status="stopped"),
        prednisone("p3", "2025-02-01T09:00:00Z", "o2", 50),
        prednisone("p4", "2025-02-20T09:00:00Z", "o2", 50, status="stopped"),
        prednisone("p5", "2025-02-20T09:00:00Z", "o3", 20),
    )
    now = 1_750_000_000.0
    expected = _replay(lines, now)
    assert ("taper_too_fast", "open") in {(r, s) for _, r, s in expected}
    for sizes in ([6], [1] * 6, [3, 3], [2, 2, 2], [4, 2]):
        assert _batches(lines, sizes, now) == expected, sizes


def test_close_judges_the_open_instant_at_now() -> None:
    lines = _lines(
        diagnosis(at="2025-01-01T09:00:00Z"),
        prednisone("p1", "2025-01-01T09:00:00Z", "o1", 60),
        prednisone("p2", "2025-01-10T09:00:00Z", "o1", 60, status="stopped"),
        prednisone("p3", "2025-01-10T09:00:00Z", "o2", 10),
    )
    batch = PatientBatch(Store().load)
    for offset, line in enumerate(lines):
        batch.process(record(line, offset=offset))
    state = batch.touched[PID].state
    assert state.pending_at is not None
    closed = batch.close(state.pending_at)
    assert ("taper_too_fast", "open") in {(t.rule, t.status) for t in closed.transitions}
    assert closed.failed == []
    assert batch.touched[PID].state.pending_at is None
