"""The tracker's work, independent of faust: batches of messages, timer ticks, rebalances.

The faust app (:mod:`imnm_tracker.app`) calls into a :class:`TrackerCore` with plain records
and gives it a :class:`StateStore` (the faust table) and a :class:`Publisher` (the output
topics). Unit tests give it dictionaries and lists instead.

Delivery is at-least-once, in this order for every batch and every tick:

1. compute everything in memory;
2. publish alert transitions and dead letters and wait until the broker has them;
3. write the new states and wait until the broker has their changelog records;
4. (batches) ack the messages; faust commits their offsets.

A crash between 2 and 3 repeats those transitions on restart, with the same deterministic
``alert_id`` (subscribers de-duplicate on ``(alert_id, status)``); a crash between 3 and 4 makes
the re-delivered events duplicates of what the state already holds. Nothing is lost.

Catching up on a backlog: patients of a partition with messages waiting behind those processed
are judged up to the newest event time processed from it, not at ``now``
(:mod:`imnm_tracker.catch_up`).

One lock serialises batches, ticks and rebalance bookkeeping: the timer and the agent run as
separate tasks and both read-modify-write patient states.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as CounterOf
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.deadletter import DeadLetter
from imnm_common.domain import engine
from imnm_common.domain.config import DEFAULT_RULES_CONFIG, RulesConfig
from imnm_common.domain.state import PatientState
from imnm_tracker.catch_up import (
    PartitionProgress,
    SourceHighwater,
    judged_up_to,
    tick_horizon,
)
from imnm_tracker.clock import Clock
from imnm_tracker.due_index import DueEntry, DueIndex
from imnm_tracker.metrics import TrackerMetrics
from imnm_tracker.processing import MessageResult, PatientBatch, advance_patient
from imnm_tracker.records import SourceRecord
from imnm_tracker.state_cache import DEFAULT_MAX_PATIENTS, CachedStateStore
from imnm_tracker.stored import StoredHeader, StoredValueError

log = logging.getLogger(__name__)
# A due time before any clinical time: the next tick takes the patient, whose rules
# engine.advance then judges again at the tick's now.
RE_JUDGE_AT = 0.0


class StateStore(Protocol):
    """Patient states by patient id, each living in the partition of its source messages."""

    def load(self, patient_id: str, partition: int) -> PatientState | None: ...

    def save(
        self, patient_id: str, partition: int, state: PatientState, due: float | None
    ) -> None: ...

    async def flush(self) -> None:
        """Return once the saves so far are durable (in the changelog); raise if they are not,
        keeping them to be flushed again."""
        ...

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Partitions revoked: saves of theirs not yet flushed are never to be flushed (the
        partitions' new owner writes their changelog from now on)."""
        ...

    def headers(self) -> Iterable[tuple[str, StoredHeader | StoredValueError]]:
        """Every stored patient with its header (or why it has none), for index rebuilds."""
        ...


class Publisher(Protocol):
    async def publish(
        self, transitions: Sequence[AlertTransition], dead_letters: Sequence[DeadLetter]
    ) -> None:
        """Send, and return once the broker has acknowledged every message."""
        ...


@dataclass(frozen=True, slots=True)
class BatchSummary:
    messages: int
    transitions: int
    dead_letters: int
    patients: int


class TrackerCore:
    def __init__(
        self,
        store: StateStore,
        publisher: Publisher,
        clock: Clock,
        metrics: TrackerMetrics,
        config: RulesConfig = DEFAULT_RULES_CONFIG,
        *,
        timer_chunk: int = 500,
        cached_patients: int = DEFAULT_MAX_PATIENTS,
        source_highwater: SourceHighwater | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = CachedStateStore(store, cached_patients)
        self.publisher = publisher
        self.clock = clock
        self.metrics = metrics
        self.config = config
        self.timer_chunk = timer_chunk
        self.index = DueIndex()
        self.lock = asyncio.Lock()
        self.ready = False  # the index is built once the table has recovered
        self.partitions: set[int] = set()  # source partitions owned, as of the last recovery
        self.progress = PartitionProgress(source_highwater, monotonic)
        metrics.rules_configuration.labels(fingerprint=engine.rules_fingerprint(config)).set(1)

    # ------------------------------------------------------------------ messages
    async def handle_batch(self, records: Sequence[SourceRecord]) -> BatchSummary:
        async with self.lock:
            started = time.perf_counter()
            batch = PatientBatch(self.store.load, self.config, forget=self.store.forget)
            transitions: list[AlertTransition] = []
            dead_letters: list[DeadLetter] = []
            consumed: CounterOf[str] = CounterOf()  # by event type, counted once per batch
            for record in records:
                t0 = time.perf_counter()
                result = batch.process(record)
                self.metrics.processing_seconds.observe(time.perf_counter() - t0)
                self._count_message(result, consumed)
                self._processed(result)
                transitions.extend(result.transitions)
                if result.dead_letter is not None:
                    dead_letters.append(result.dead_letter)
            for event_type, count in consumed.items():
                self.metrics.events_consumed.labels(event_type=event_type).inc(count)
            closed = batch.close(self.clock(), self._catching_up())
            transitions.extend(closed.transitions)
            if closed.failed:
                self.metrics.advance_errors.inc(len(closed.failed))
            try:
                await self.publisher.publish(transitions, dead_letters)
            except BaseException:
                for patient_id in batch.touched:  # changed in place, never saved
                    self.store.forget(patient_id)
                raise
            for patient_id, touched in batch.touched.items():
                self._save(patient_id, touched.partition, touched.state)
            await self.store.flush()
            self._count_transitions(transitions)
            self.metrics.tracked_patients.set(len(self.index))
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            return BatchSummary(
                len(records), len(transitions), len(dead_letters), len(batch.touched)
            )

    def _count_message(self, result: MessageResult, consumed: CounterOf[str]) -> None:
        record = result.record
        if result.dead_letter is not None:
            code = result.dead_letter.reason_code
            self.metrics.events_rejected.labels(reason=code).inc()
            if result.error is not None:
                log.error(
                    "processing error, dead-lettered %s[%d]@%d (event %s): %s",
                    record.topic, record.partition, record.offset,
                    result.event.event_id if result.event else "?",
                    type(result.error).__name__,
                )
            else:
                log.warning("dead-lettered %s[%d]@%d: %s",
                            record.topic, record.partition, record.offset, code)
            return
        if result.event_type is not None:
            consumed[result.event_type] += 1
        if result.duplicate:
            self.metrics.duplicates.inc()
        if result.stale:
            self.metrics.stale_versions.inc()

    def _processed(self, result: MessageResult) -> None:
        event = result.event
        self.progress.processed(result.record.partition, result.record.offset,
                                None if event is None else event.occurred_at.timestamp())

    def _catching_up(self) -> dict[int, float]:
        behind = self.progress.catching_up()
        self.metrics.catching_up_partitions.set(len(behind))
        return behind

    def _count_transitions(self, transitions: Iterable[AlertTransition]) -> None:
        counted = CounterOf((t.rule, t.severity, t.status) for t in transitions)
        for (rule, severity, status), count in counted.items():
            self.metrics.alert_transitions.labels(
                rule=rule, severity=severity, status=status
            ).inc(count)

    def _save(self, patient_id: str, partition: int, state: PatientState) -> None:
        due = engine.next_due(state)
        self.store.save(patient_id, partition, state, due)
        self.index.update(patient_id, partition, due)

    # ------------------------------------------------------------------ time
    async def tick(self) -> int:
        """Fire what is due at ``clock()`` for this worker's patients; returns how many."""
        if not self.ready:
            return 0
        now = self.clock()
        self.metrics.timer_runs.inc()
        evaluated = 0
        failed: list[DueEntry] = []
        waiting: list[DueEntry] = []  # due after the event time their partition has reached
        while True:
            # In chunks, releasing the lock in between, so a clock jump over many patients
            # does not hold the agent up for the whole sweep.
            async with self.lock:
                catching_up = self._catching_up()
                entries = self.index.pop_due(
                    tick_horizon(now, catching_up, self.partitions), limit=self.timer_chunk
                )
                if not entries:
                    self.index.restore([*failed, *waiting])  # looked at again next tick
                    break
                judged: list[DueEntry] = []
                for entry in entries:  # all due by ``now``
                    until, inclusive = judged_up_to(now, catching_up.get(entry.partition))
                    (judged if inclusive or entry.due < until else waiting).append(entry)
                try:
                    evaluated += await self._advance(judged, now, failed, catching_up)
                except BaseException:
                    self.index.restore([*entries, *failed, *waiting])
                    raise
            await asyncio.sleep(0)
        return evaluated

    async def _advance(
        self,
        entries: Sequence[DueEntry],
        now: float,
        failed: list[DueEntry],
        catching_up: dict[int, float],
    ) -> int:
        transitions: list[AlertTransition] = []
        advanced: list[tuple[DueEntry, PatientState]] = []
        for entry in entries:
            try:
                state = self.store.load(entry.patient_id, entry.partition)
                if state is None:
                    continue  # written by nobody: the index drifted; drop the entry
                transitions.extend(advance_patient(
                    state, now, catching_up.get(entry.partition), self.config
                ))
            except Exception as error:
                # The stored state is untouched (the cached object is dropped); retry next tick.
                self.store.forget(entry.patient_id)
                self.metrics.advance_errors.inc()
                log.error("timer evaluation failed: %s", type(error).__name__)
                failed.append(entry)
                continue
            advanced.append((entry, state))
        try:
            await self.publisher.publish(transitions, [])
        except BaseException:
            for entry, _ in advanced:
                self.store.forget(entry.patient_id)
            raise
        for entry, state in advanced:
            self._save(entry.patient_id, entry.partition, state)
        await self.store.flush()
        self._count_transitions(transitions)
        if transitions:
            log.info("timer: %d patients evaluated, %d transitions", len(advanced),
                     len(transitions))
        return len(advanced)

    # ------------------------------------------------------------------ rebalances
    async def on_revoked(self, partitions: Iterable[int]) -> None:
        """Stop touching revoked partitions (waits for a batch or tick in flight)."""
        revoked = sorted(set(partitions))
        async with self.lock:
            dropped = self.index.drop_partitions(revoked)
            self.store.drop_partitions(revoked)
            self.progress.forget(revoked)
            self.metrics.tracked_patients.set(len(self.index))
            self.partitions.difference_update(revoked)
            self.metrics.assigned_partitions.set(len(self.partitions))
        log.info("partitions %s revoked: %d patients handed over", revoked, dropped)

    async def on_recovered(self, active_partitions: Iterable[int]) -> None:
        """Rebuild the due index from the recovered table, for the partitions we own now.
        Patients judged under another rules configuration are due at once: the next tick
        judges every rule of theirs again (``engine.advance``)."""
        active = set(active_partitions)
        started = time.perf_counter()
        rules = engine.rules_fingerprint(self.config)
        async with self.lock:
            self.store.clear()  # the changelog may have replaced any value
            entries: list[tuple[str, int, float | None]] = []
            unreadable = rejudged = 0
            for patient_id, header in self.store.headers():
                if isinstance(header, StoredValueError):
                    unreadable += 1
                elif header.partition in active:
                    due = header.due
                    if header.rules != rules:
                        due, rejudged = RE_JUDGE_AT, rejudged + 1
                    entries.append((patient_id, header.partition, due))
            self.index.rebuild(entries)
            self.progress.recovered(active)
            self.ready = True
            self.metrics.tracked_patients.set(len(self.index))
            self.partitions = active
            self.metrics.assigned_partitions.set(len(active))
            self.metrics.recoveries.inc()
            self.metrics.rejudged_patients.inc(rejudged)
        if unreadable:
            log.error("%d table values are not imnm-state values; their patients are not timed",
                      unreadable)
        if rejudged:
            log.info("%d patients were judged under another rules configuration: every rule "
                     "of theirs is judged again at the next tick", rejudged)
        log.info(
            "recovered: tracking %d patients on partitions %s (index rebuilt in %.3f s)",
            len(entries), sorted(active), time.perf_counter() - started,
        )
