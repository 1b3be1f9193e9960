"""TrackerCore without Kafka: a dict for the table, a list for the topics, a settable clock."""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.deadletter import DeadLetter
from imnm_common.domain import engine
from imnm_common.domain.config import RulesConfig
from imnm_common.domain.state import PatientState
from imnm_common.service_layer.replay import Replay
from imnm_demo.generator import StreamSpec, generate_lines, with_orders_as_schedules
from imnm_tracker import stored
from imnm_tracker.catch_up import CATCH_UP_STALL_SECONDS
from imnm_tracker.core import TrackerCore
from imnm_tracker.metrics import TrackerMetrics
from imnm_tracker.records import SourceRecord
from imnm_tracker.stored import StoredHeader, StoredValueError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "events.jsonl"
PARTITIONS = 3
NOW = datetime(2025, 12, 1, tzinfo=UTC).timestamp()

Row = tuple[str, str, str, str, str | None]


class DictStore:
    """``values`` is the table's store; ``durable`` what a flush made durable (the changelog)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.durable: dict[str, bytes] = {}
        self.fail_flush = False
        self.dropped: set[int] = set()

    def load(self, patient_id: str, partition: int) -> PatientState | None:
        raw = self.values.get(patient_id)
        return None if raw is None else stored.decode(raw)

    def save(self, patient_id: str, partition: int, state: PatientState, due: float | None
             ) -> None:
        self.values[patient_id] = stored.encode(state, partition, due)

    async def flush(self) -> None:
        if self.fail_flush:
            raise ConnectionError("changelog unavailable")
        self.durable = dict(self.values)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        self.dropped = set(partitions)

    def headers(self) -> Iterable[tuple[str, StoredHeader | StoredValueError]]:
        for patient_id, raw in self.values.items():
            try:
                yield patient_id, stored.peek(raw)
            except StoredValueError as error:
                yield patient_id, error


class ListPublisher:
    def __init__(self) -> None:
        self.alerts: list[AlertTransition] = []
        self.dead: list[DeadLetter] = []
        self.fail = False

    async def publish(self, transitions: Sequence[AlertTransition],
                      dead_letters: Sequence[DeadLetter]) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.alerts.extend(transitions)
        self.dead.extend(dead_letters)


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_core(now: float = 0.0) -> tuple[TrackerCore, DictStore, ListPublisher, Clock]:
    store, publisher, clock = DictStore(), ListPublisher(), Clock(now)
    core = TrackerCore(store, publisher, clock, TrackerMetrics(), timer_chunk=7)
    core.ready = True
    return core, store, publisher, clock


def records(lines: Sequence[bytes]) -> list[SourceRecord]:
    out = []
    for offset, line in enumerate(lines):
        try:
            key = json.loads(line)["patient_id"].encode()
        except (ValueError, KeyError, TypeError):
            key = b"?"
        out.append(SourceRecord("events", zlib.crc32(key) % PARTITIONS, offset, key, line))
    return out


def per_patient(transitions: Iterable[AlertTransition]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = defaultdict(list)
    for t in transitions:
        out[t.patient_id].append((
            t.alert_id, t.status, t.rule, t.raised_at.isoformat(),
            None if t.resolved_at is None else t.resolved_at.isoformat(),
        ))
    return dict(out)


def replayed(lines: Sequence[bytes], now: float) -> dict[str, list[Row]]:
    replay = Replay()
    return per_patient([*replay.feed_lines(lines), *replay.finish(now)])


def sample_lines() -> list[bytes]:
    spec = StreamSpec(patients=25, days=300, seed=5, start=datetime(2025, 1, 1, tzinfo=UTC))
    generated = [line.encode() for line in generate_lines(spec)]
    return [*EXAMPLES.read_bytes().splitlines(), *generated]


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 13, 500])
async def test_batches_then_timer_give_what_replay_gives(batch_size: int) -> None:
    lines = sorted(sample_lines(), key=_occurred_at)
    core, _, publisher, clock = make_core(now=0.0)  # before every event, like the e2e test
    recs = records(lines)
    for start in range(0, len(recs), batch_size):
        await core.handle_batch(recs[start:start + batch_size])
    clock.now = NOW
    assert await core.tick() > 0
    assert await core.tick() == 0  # nothing left due at the same now
    assert per_patient(publisher.alerts) == replayed(lines, NOW)
    rejected = core.metrics.events_rejected.labels(reason="implausible_value")._value.get()
    assert rejected == 1 and len(publisher.dead) == 1
    assert core.metrics.duplicates._value.get() == 1
    assert core.metrics.tracked_patients._value.get() == len(core.index)


@pytest.mark.parametrize("batch_size", [1, 500])
async def test_orders_written_ahead_alert_as_the_versions_replayed(batch_size: int) -> None:
    """Dose schedules through the tracker: each step waits in the stored state and in the due
    index until the batches or the timer reach it, and the alerts are those of the history
    written version by version."""
    spec = StreamSpec(patients=25, days=300, seed=8, start=datetime(2025, 1, 1, tzinfo=UTC))
    stepped = list(generate_lines(spec))
    ahead = [line.encode() for line in with_orders_as_schedules(stepped)]
    assert any(b"dose_schedule" in line for line in ahead)
    core, _, publisher, clock = make_core(now=0.0)
    recs = records(ahead)
    for start in range(0, len(recs), batch_size):
        await core.handle_batch(recs[start:start + batch_size])
    clock.now = NOW
    await core.tick()
    expected = replayed([line.encode() for line in stepped], NOW)
    assert expected and per_patient(publisher.alerts) == expected


async def test_the_timer_takes_a_dose_step_at_its_time() -> None:
    """A step with no event after it: the due index holds the patient at the step, so a tick
    after it resolves the Pneumocystis alert at the step's time."""
    start = datetime(2025, 1, 1, 8, tzinfo=UTC)

    def at(day: int) -> str:
        return datetime.fromtimestamp(start.timestamp() + day * 86_400, UTC).isoformat()

    diagnosis = {"event_id": "e1", "patient_id": "MRN-7", "event_type": "diagnosis",
                 "occurred_at": at(0), "condition": "IMNM"}
    taper = {"event_id": "e2", "patient_id": "MRN-7", "event_type": "medication_order",
             "occurred_at": at(0), "order_id": "o1", "status": "active",
             "medication": {"name": "prednisone"}, "dose": {"value": 60, "unit": "mg"},
             "dose_schedule": [{"starts_at": at(35), "dose": {"value": 40, "unit": "mg"}},
                               {"starts_at": at(50), "dose": {"value": 10, "unit": "mg"}}]}
    core, store, publisher, clock = make_core(now=start.timestamp())
    await core.handle_batch(records([json.dumps(e).encode() for e in (diagnosis, taper)]))
    assert stored.decode(store.values["MRN-7"]).orders["o1"].schedule  # waiting in the table
    clock.now = start.timestamp() + 80 * 86_400
    await core.tick()
    pjp = [t for t in publisher.alerts if t.rule == "pjp_prophylaxis_missing"]
    assert [(t.status, t.resolved_at) for t in pjp] == [
        ("open", None), ("resolved", datetime.fromisoformat(at(50)))]


def _occurred_at(line: bytes) -> str:
    try:
        return str(json.loads(line).get("occurred_at", ""))
    except ValueError:
        return ""


async def test_a_failed_publish_keeps_state_and_index_as_they_were() -> None:
    core, store, publisher, _ = make_core()
    lines = EXAMPLES.read_bytes().splitlines()[:4]
    publisher.fail = True
    with pytest.raises(ConnectionError):
        await core.handle_batch(records(lines))
    assert store.values == {} and len(core.index) == 0
    publisher.fail = False
    await core.handle_batch(records(lines))  # redelivered after the restart: nothing was lost
    assert [(t.rule, t.status) for t in publisher.alerts] == [("statin_active", "open")]
    assert set(store.values) == {"MRN-1001"} and len(core.index) == 1


async def test_tick_failure_is_retried_on_the_next_tick() -> None:
    core, _, publisher, clock = make_core()
    await core.handle_batch(records(EXAMPLES.read_bytes().splitlines()))
    before = len(publisher.alerts)
    clock.now = NOW
    publisher.fail = True
    with pytest.raises(ConnectionError):
        await core.tick()
    publisher.fail = False
    assert await core.tick() == 2
    assert len(publisher.alerts) > before


async def test_a_batch_returns_only_once_its_states_are_durable() -> None:
    core, store, _, _ = make_core()
    lines = EXAMPLES.read_bytes().splitlines()[:4]
    store.fail_flush = True
    with pytest.raises(ConnectionError):  # the app exits without acking the batch
        await core.handle_batch(records(lines))
    assert store.durable == {}
    store.fail_flush = False
    await core.handle_batch(records(lines))
    assert set(store.durable) == {"MRN-1001"} and store.durable == store.values


async def test_a_tick_whose_states_could_not_be_flushed_flushes_them_on_the_next() -> None:
    core, store, publisher, clock = make_core()
    await core.handle_batch(records(EXAMPLES.read_bytes().splitlines()))
    clock.now = NOW
    store.fail_flush = True
    with pytest.raises(ConnectionError):
        await core.tick()
    assert store.durable != store.values  # advanced in the store, not yet durable
    opened = len(publisher.alerts)
    store.fail_flush = False
    assert await core.tick() == 2  # the same patients again: nothing new to publish
    assert len(publisher.alerts) == opened
    assert store.durable == store.values


async def test_a_patient_whose_evaluation_raises_does_not_block_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core, _, publisher, clock = make_core()
    await core.handle_batch(records(EXAMPLES.read_bytes().splitlines()))
    real_advance = engine.advance

    def flaky(state: PatientState, now: float, config: object = None, **kw: object
              ) -> list[AlertTransition]:
        if state.patient_id == "MRN-1001":
            raise ValueError("bug")
        return real_advance(state, now)

    monkeypatch.setattr(engine, "advance", flaky)
    clock.now = NOW
    seen = len(publisher.alerts)
    assert await core.tick() == 1
    assert {t.patient_id for t in publisher.alerts[seen:]} == {"MRN-2002"}
    assert core.metrics.advance_errors._value.get() == 1
    assert core.index.due_at("MRN-1001") is not None  # retried later
    monkeypatch.setattr(engine, "advance", real_advance)
    seen = len(publisher.alerts)
    assert await core.tick() == 1
    assert {t.patient_id for t in publisher.alerts[seen:]} == {"MRN-1001"}


async def test_revocation_and_recovery_follow_the_partitions() -> None:
    core, store, _, _ = make_core()
    await core.handle_batch(records(sample_lines()))
    by_partition: dict[int, set[str]] = defaultdict(set)
    for patient_id, header in store.headers():
        assert isinstance(header, StoredHeader)
        by_partition[header.partition].add(patient_id)
    assert len(by_partition) > 1
    all_patients = len(core.index)

    await core.on_revoked(range(PARTITIONS))
    assert len(core.index) == 0

    keep = min(by_partition)
    store.values["garbage"] = b"not a stored state"
    await core.on_recovered({keep})
    assert len(core.index) == len(by_partition[keep]) < all_patients
    assert core.partitions == {keep}
    assert core.metrics.assigned_partitions._value.get() == 1
    assert core.metrics.tracked_patients._value.get() == len(by_partition[keep])


async def test_nothing_fires_before_the_first_recovery() -> None:
    core, _, _, clock = make_core()
    await core.handle_batch(records(EXAMPLES.read_bytes().splitlines()))
    core.ready = False
    clock.now = NOW
    assert await core.tick() == 0
    assert core.metrics.timer_runs._value.get() == 0


# ---------------------------------------------------------------------------------------------
# catching up: a backlog judged on its own time, not on a clock that is already past it
def highwaters_of(recs: Sequence[SourceRecord]) -> dict[int, int]:
    """Each partition's end (its last offset + 1), as the consumer reports it."""
    ends: dict[int, int] = {}
    for record in recs:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return ends


@pytest.mark.parametrize(("batch_size", "owned_known"), [(13, True), (500, True), (13, False)])
async def test_a_backlog_consumed_after_its_time_gives_what_replay_gives(
    batch_size: int, owned_known: bool
) -> None:
    lines = sorted(sample_lines(), key=_occurred_at)
    recs = records(lines)
    ends = highwaters_of(recs)
    store, publisher, clock = DictStore(), ListPublisher(), Clock(NOW)  # a restart after an outage
    core = TrackerCore(store, publisher, clock, TrackerMetrics(), timer_chunk=7,
                       source_highwater=ends.get)
    core.ready = True
    core.partitions = set(ends) if owned_known else set()
    for start in range(0, len(recs), batch_size):
        await core.handle_batch(recs[start:start + batch_size])
        await core.tick()  # the timer runs meanwhile, on the clock's now
    assert core.metrics.catching_up_partitions._value.get() == 0
    await core.tick()
    assert per_patient(publisher.alerts) == replayed(lines, NOW)


async def test_without_a_backlog_a_batch_is_judged_on_the_clock() -> None:
    lines = sorted(sample_lines(), key=_occurred_at)
    recs = records(lines)
    store, publisher, clock = DictStore(), ListPublisher(), Clock(NOW)
    # the consumer knows of nothing after these messages: each batch is the live edge
    core = TrackerCore(store, publisher, clock, TrackerMetrics(), timer_chunk=7,
                       source_highwater=lambda partition: None)
    core.ready = True
    await core.handle_batch(recs[:40])
    advanced = [t for t in publisher.alerts if t.raised_at.timestamp() > _latest(recs[:40])]
    assert advanced  # time-based alerts due after the batch's events fired at once


def _latest(recs: Sequence[SourceRecord]) -> float:
    return max(datetime.fromisoformat(json.loads(r.value or b"{}")["occurred_at"]).timestamp()
               for r in recs)


async def test_a_partition_whose_end_stays_out_of_reach_is_judged_on_the_clock_again() -> None:
    """Offsets that are not messages (a transaction marker after the last event) keep the
    highwater one past anything the worker will ever process."""
    lines = sorted(sample_lines(), key=_occurred_at)
    recs = records(lines)
    ends = {p: end + 1 for p, end in highwaters_of(recs).items()}  # one marker after each end
    seconds = [0.0]
    store, publisher, clock = DictStore(), ListPublisher(), Clock(NOW)
    core = TrackerCore(store, publisher, clock, TrackerMetrics(), timer_chunk=7,
                       source_highwater=ends.get, monotonic=lambda: seconds[0])
    core.ready = True
    await core.handle_batch(recs)
    await core.tick()
    assert core.metrics.catching_up_partitions._value.get() == PARTITIONS
    seconds[0] += CATCH_UP_STALL_SECONDS + 1  # no progress since
    await core.tick()
    assert core.metrics.catching_up_partitions._value.get() == 0
    assert per_patient(publisher.alerts) == replayed(lines, NOW)  # everything due by now fired


def _restartable(store: DictStore, publisher: ListPublisher, clock: Clock,
                 ends: dict[int, int], seconds: list[float]) -> TrackerCore:
    return TrackerCore(store, publisher, clock, TrackerMetrics(), timer_chunk=7,
                       source_highwater=ends.get, monotonic=lambda: seconds[0])


async def test_after_a_restart_a_partition_with_a_backlog_waits_for_its_first_batch() -> None:
    lines = sorted(sample_lines(), key=_occurred_at)
    recs = records(lines)
    half = len(recs) // 2
    ends, seconds = highwaters_of(recs), [0.0]
    store, publisher, clock = DictStore(), ListPublisher(), Clock(0.0)
    first = _restartable(store, publisher, clock, ends, seconds)
    await first.on_recovered(range(PARTITIONS))
    await first.handle_batch(recs[:half])  # then an outage: the rest waits on the topic
    clock.now = NOW
    restarted = _restartable(store, publisher, clock, ends, seconds)
    await restarted.on_recovered(range(PARTITIONS))
    before = len(publisher.alerts)
    assert await restarted.tick() == 0  # every patient is due by now, judged by nobody yet
    assert len(publisher.alerts) == before
    for start in range(half, len(recs), 13):
        await restarted.handle_batch(recs[start:start + 13])
        await restarted.tick()
    await restarted.tick()
    assert per_patient(publisher.alerts) == replayed(lines, NOW)


async def test_after_a_restart_a_partition_without_messages_is_judged_within_the_stall_time(
) -> None:
    lines = sorted(sample_lines(), key=_occurred_at)
    recs = records(lines)
    ends, seconds = highwaters_of(recs), [0.0]
    store, publisher, clock = DictStore(), ListPublisher(), Clock(0.0)
    first = _restartable(store, publisher, clock, ends, seconds)
    await first.on_recovered(range(PARTITIONS))
    await first.handle_batch(recs)  # everything processed, then a restart with nothing new
    clock.now = NOW
    restarted = _restartable(store, publisher, clock, ends, seconds)
    await restarted.on_recovered(range(PARTITIONS))
    assert await restarted.tick() == 0  # no batch yet: is anything waiting? not known yet
    seconds[0] += CATCH_UP_STALL_SECONDS + 1
    assert await restarted.tick() > 0
    assert per_patient(publisher.alerts) == replayed(lines, NOW)


# ---------------------------------------------------------------------------------------------
async def test_a_worker_started_with_other_rules_judges_every_patient_again() -> None:
    lines = sorted(sample_lines(), key=_occurred_at)
    core, store, publisher, clock = make_core(now=0.0)
    await core.handle_batch(records(lines))
    clock.now = NOW
    await core.tick()
    statin_open = {t.alert_id for t in publisher.alerts
                   if t.rule == "statin_active" and t.status == "open"}
    statin_open -= {t.alert_id for t in publisher.alerts if t.status == "resolved"}
    assert statin_open

    statin_off = RulesConfig.model_validate({"statin_active": {"enabled": False}})
    restarted = TrackerCore(store, publisher, clock, TrackerMetrics(), statin_off)
    await restarted.on_recovered(range(PARTITIONS))
    published = len(publisher.alerts)
    clock.now = NOW + 3600.0
    assert await restarted.tick() == len(store.values)  # everyone, once
    resolved = [t for t in publisher.alerts[published:] if t.status == "resolved"]
    assert {t.alert_id for t in resolved if t.rule == "statin_active"} == statin_open
    assert all(t.resolved_at == datetime.fromtimestamp(clock.now, UTC) for t in resolved
               if t.rule == "statin_active")
    # every header now says which rules judged it; a second worker with them re-judges no one
    assert {stored.peek(raw).rules for raw in store.values.values()} == {
        engine.rules_fingerprint(statin_off)}
    again = TrackerCore(store, publisher, clock, TrackerMetrics(), statin_off)
    await again.on_recovered(range(PARTITIONS))
    assert await again.tick() == 0
    # what Prometheus sees: each worker's fingerprint (ImnmTrackerRulesDiffer compares them)
    # and how many patients each recovery found judged under other rules
    assert _sample(restarted, "imnm_tracker_rejudged_patients_total") == len(store.values)
    assert _sample(again, "imnm_tracker_rejudged_patients_total") == 0
    assert _sample(again, "imnm_tracker_rules_configuration",
                   fingerprint=engine.rules_fingerprint(statin_off)) == 1
    assert _sample(core, "imnm_tracker_rules_configuration",
                   fingerprint=engine.rules_fingerprint(RulesConfig())) == 1


def _sample(core: TrackerCore, name: str, **labels: str) -> float | None:
    return core.metrics.registry.get_sample_value(name, labels)
