"""Consumed messages in; patient states, alert transitions and dead letters out. No faust here.

Time, per patient, as :class:`~imnm_common.service_layer.replay.Replay` does it:

- before an event at ``t`` is applied, the patient's due evaluations strictly before ``t`` fire
  (``advance(state, t, inclusive=False)``), so a course reaching day 28 alerts before a later
  order changes it;
- the engine defers dose-based rules until ``advance`` reaches the event's instant, so events
  sharing one ``occurred_at`` are judged together. A batch applies all its messages first and
  :meth:`PatientBatch.close` then advances every touched patient to the clock's ``now``: events
  of one instant delivered in one batch are judged as the single change they are, events from
  the past are judged straight away.

The one difference from a replay: ``Replay`` has one clock for everybody (the largest
``occurred_at`` seen), the tracker one per patient. With events in time order both give every
patient the same evaluations; with late events the tracker does not fire a patient's dues just
because another patient's event was newer.

While a partition catches up on a backlog, ``now`` gives way to the newest event time processed
from it (:mod:`imnm_tracker.catch_up`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.deadletter import DeadLetter
from imnm_common.contracts.events import CanonicalEvent, EventRejected, parse_event
from imnm_common.domain import engine
from imnm_common.domain.config import DEFAULT_RULES_CONFIG, RulesConfig
from imnm_common.domain.state import PatientState
from imnm_tracker.catch_up import judged_up_to
from imnm_tracker.deadletters import KEY_MISMATCH, PROCESSING_ERROR, dead_letter, utc_now
from imnm_tracker.errors import StateRebuildError
from imnm_tracker.records import SourceRecord

log = logging.getLogger(__name__)

StateLoader = Callable[[str, int], PatientState | None]
"""``load(patient_id, partition)``: the stored state, or None for a patient not seen yet."""

_MAX_ERROR_TEXT = 300


def advance_patient(
    state: PatientState, now: float, caught_up_to: float | None, config: RulesConfig
) -> list[AlertTransition]:
    """Fire what is due by ``now``; if the patient's partition is catching up on a backlog whose
    newest event time processed so far is ``caught_up_to``, only what is due before that."""
    until, inclusive = judged_up_to(now, caught_up_to)
    return engine.advance(state, until, config, inclusive=inclusive)


def parse_record(record: SourceRecord) -> CanonicalEvent:
    """Validate one message: an events.v1 event whose key is its ``patient_id``.

    The key matters: Kafka partitions by key, and the patient's state lives in the partition
    of its key. An event keyed by something else would be judged against another worker's
    (empty) view of the patient.
    """
    event = parse_event(record.value if record.value is not None else b"")
    if record.key is None:
        raise EventRejected("key: the message has no key; it must be the patient_id", KEY_MISMATCH)
    if record.key != event.patient_id.encode():
        raise EventRejected("key: the message key is not the event's patient_id", KEY_MISMATCH)
    return event


@dataclass(slots=True)
class MessageResult:
    """What one message did. Exactly one of ``dead_letter`` and ``event`` explains it."""

    record: SourceRecord
    event: CanonicalEvent | None = None
    transitions: list[AlertTransition] = field(default_factory=list)
    dead_letter: DeadLetter | None = None
    duplicate: bool = False
    stale: bool = False
    error: BaseException | None = None  # an unexpected exception, dead-lettered

    @property
    def event_type(self) -> str | None:
        return None if self.event is None else self.event.event_type


@dataclass(slots=True)
class Touched:
    """A patient whose state this batch changed, the partition it lives in, and the events
    applied to it so far (to rebuild the state if a later step fails)."""

    state: PatientState
    partition: int
    events: list[CanonicalEvent] = field(default_factory=list)


@dataclass(slots=True)
class CloseResult:
    transitions: list[AlertTransition] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # patient ids whose advance raised


class PatientBatch:
    """The working states of the patients one batch of messages touches.

    If the engine raises on a message, the patient's state goes back to what it was before that
    message and the message is dead-lettered as a ``processing_error``; the rest of the batch
    carries on. Going back means rebuilding: the state as loaded at the start of the batch,
    with the batch's earlier events for that patient applied again (the engine is
    deterministic). That costs nothing until something fails, unlike a copy per message.
    """

    def __init__(
        self,
        load: StateLoader,
        config: RulesConfig = DEFAULT_RULES_CONFIG,
        now_utc: Callable[[], datetime] = utc_now,
        forget: Callable[[str], None] | None = None,
    ) -> None:
        self._load = load
        self._config = config
        self._now_utc = now_utc
        self._forget = forget  # the loader's cached object was changed and is not to be reused
        self.touched: dict[str, Touched] = {}

    def process(self, record: SourceRecord) -> MessageResult:
        try:
            event = parse_record(record)
        except EventRejected as rejected:
            return MessageResult(
                record, dead_letter=self._dead(record, rejected.reason, rejected.code)
            )
        try:
            return self._apply(record, event)
        except StateRebuildError:
            raise
        except Exception as error:  # a bug or a corrupt stored state: never lose the message
            reason = f"processing error: {type(error).__name__}: {error}"[:_MAX_ERROR_TEXT]
            return MessageResult(
                record,
                event=event,
                dead_letter=self._dead(record, reason, PROCESSING_ERROR),
                error=error,
            )

    def _apply(self, record: SourceRecord, event: CanonicalEvent) -> MessageResult:
        patient_id = event.patient_id
        touched = self.touched.get(patient_id)
        if touched is None:
            state = self._load(patient_id, record.partition) or engine.new_state(patient_id)
            touched = Touched(state, record.partition)
        try:
            transitions, outcome = self._step(touched.state, event)
        except Exception:
            self._rebuild(patient_id, touched)
            raise
        touched.events.append(event)
        self.touched[patient_id] = touched
        return MessageResult(
            record,
            event=event,
            transitions=transitions,
            duplicate=outcome.duplicate,
            stale=outcome.stale,
        )

    def _step(
        self, state: PatientState, event: CanonicalEvent
    ) -> tuple[list[AlertTransition], engine.ApplyOutcome]:
        at = event.occurred_at.timestamp()
        transitions = engine.advance(state, at, self._config, inclusive=False)
        outcome = engine.apply(state, event, self._config)
        transitions.extend(outcome.transitions)
        return transitions, outcome

    def _rebuild(self, patient_id: str, touched: Touched) -> None:
        """Back to the state after ``touched.events``: reload, apply them again. They succeeded
        once on the same state, so only a fault that is not deterministic fails here."""
        if self._forget is not None:
            self._forget(patient_id)
        try:
            state = self._load(patient_id, touched.partition) or engine.new_state(patient_id)
            for event in touched.events:
                self._step(state, event)
        except Exception as error:
            raise StateRebuildError(
                f"could not rebuild a patient's state: {type(error).__name__}"
            ) from error
        touched.state = state

    def close(self, now: float, catching_up: Mapping[int, float] | None = None) -> CloseResult:
        """Advance every touched patient to ``now`` (or, on a partition in ``catching_up``, to
        its newest event time): judge the instants this batch opened."""
        result = CloseResult()
        behind = catching_up or {}
        for patient_id, touched in self.touched.items():
            try:
                result.transitions.extend(advance_patient(
                    touched.state, now, behind.get(touched.partition), self._config
                ))
            except Exception as error:
                # Keep the events applied; the timer retries the evaluation on its next tick.
                self._rebuild(patient_id, touched)
                result.failed.append(patient_id)
                log.error("advance failed after a batch: %s", type(error).__name__)
        return result

    def _dead(self, record: SourceRecord, reason: str, code: str) -> DeadLetter:
        return dead_letter(record, reason, code, now=self._now_utc)
