"""Replay canonical events in delivery order on a virtual clock, as a Kafka partition would.

The clock is the largest ``occurred_at`` seen. Before an event that moves it forward, every
patient's due time-based rules fire in time order (the due time becomes ``raised_at``); at the end
the clock advances to ``now``. Memory is one :class:`PatientState` per patient, not per event.

A replay can take one share of the patients (:class:`PatientShare`): it still reads every line
and moves the clock as the whole stream does, but applies only its own patients' events. Every
patient's evaluations depend on its own events and that clock alone, so the shares of a stream
together give exactly the transitions of the whole replay; each transition carries its
:data:`Position` in the whole replay's output, so merging the shares' outputs in position order
restores that output byte for byte (:mod:`imnm_common.service_layer.replay_shares`).
"""

from __future__ import annotations

import heapq
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.events import CanonicalEvent, EventRejected, parse_event
from imnm_common.domain import engine
from imnm_common.domain.config import DEFAULT_RULES_CONFIG, RulesConfig
from imnm_common.domain.state import PatientState


@dataclass(slots=True)
class Rejection:
    line: int
    reason: str
    code: str


Position = tuple[int, int, float, str, int]
"""Where a transition falls in a whole replay's output: (the ordinal of the event being fed
when it came, the finish counting as one more; 0 for a due evaluation fired before that event
is applied, 1 for the event's own; the due time and patient id of that evaluation, the heap's
order; its index among the transitions of that step). Unique, and ordered as the output."""
_FIRED, _APPLIED = 0, 1


@dataclass(frozen=True, slots=True)
class PatientShare:
    """Share ``index`` of ``count``: the patients whose id hashes to it (CRC-32, the same in
    every process, unlike ``hash``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"share {self.index} of {self.count}")

    def owns(self, patient_id: str) -> bool:
        return zlib.crc32(patient_id.encode()) % self.count == self.index


@dataclass
class ReplayStats:
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    stale_versions: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    transitions: Counter[str] = field(default_factory=Counter)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class Replay:
    """Feed events (or raw lines) in order; collect transitions; ``finish`` at ``now``."""

    def __init__(
        self, config: RulesConfig = DEFAULT_RULES_CONFIG, share: PatientShare | None = None
    ) -> None:
        self.config = config
        self.share = share
        self.states: dict[str, PatientState] = {}
        self.clock: float | None = None
        self.stats = ReplayStats()
        self.rejections: list[Rejection] = []
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._events = 0  # events fed (every share counts every event)

    def feed_lines(self, lines: Iterable[bytes | str]) -> Iterator[AlertTransition]:
        for _, transition in self.feed_lines_positioned(lines):
            yield transition

    def feed_lines_positioned(
        self, lines: Iterable[bytes | str]
    ) -> Iterator[tuple[Position, AlertTransition]]:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            self.stats.read += 1
            try:
                event = parse_event(_strip_newline(line))
            except EventRejected as rejected:
                self.stats.rejected[rejected.code] += 1
                self.rejections.append(Rejection(number, rejected.reason, rejected.code))
                continue
            yield from self.feed_positioned(event)

    def feed(self, event: CanonicalEvent) -> Iterator[AlertTransition]:
        for _, transition in self.feed_positioned(event):
            yield transition

    def feed_positioned(self, event: CanonicalEvent) -> Iterator[tuple[Position, AlertTransition]]:
        self._events += 1
        at = event.occurred_at.timestamp()
        if self.clock is None or at > self.clock:
            yield from self._fire(until=at, inclusive=False)
            self.clock = at
        if self.share is not None and not self.share.owns(event.patient_id):
            return  # another share's patient: only its time counts here
        state = self.states.get(event.patient_id)
        if state is None:
            state = self.states[event.patient_id] = engine.new_state(event.patient_id)
        outcome = engine.apply(state, event, self.config)
        if outcome.duplicate:
            self.stats.duplicates += 1
        else:
            self.stats.accepted += 1
            self.stats.stale_versions += outcome.stale
        yield from self._count((self._events, _APPLIED, 0.0, ""), outcome.transitions)
        self._schedule(state)

    def finish(self, now: float | None = None) -> Iterator[AlertTransition]:
        for _, transition in self.finish_positioned(now):
            yield transition

    def finish_positioned(
        self, now: float | None = None
    ) -> Iterator[tuple[Position, AlertTransition]]:
        end = now if now is not None else self.clock
        if end is None:
            return
        self._events += 1  # after every event fed so far
        yield from self._fire(until=end, inclusive=True)
        self.clock = end if self.clock is None else max(self.clock, end)

    def _fire(
        self, until: float, inclusive: bool
    ) -> Iterator[tuple[Position, AlertTransition]]:
        heap = self._heap
        while heap and (heap[0][0] <= until if inclusive else heap[0][0] < until):
            due, patient_id = heapq.heappop(heap)
            if self._due.get(patient_id) != due:
                continue  # superseded by a later schedule
            del self._due[patient_id]
            state = self.states[patient_id]
            transitions = engine.advance(state, due, self.config)
            yield from self._count((self._events, _FIRED, due, patient_id), transitions)
            self._schedule(state)

    def _schedule(self, state: PatientState) -> None:
        due = engine.next_due(state)
        if due is None:
            self._due.pop(state.patient_id, None)
        elif self._due.get(state.patient_id) != due:
            self._due[state.patient_id] = due
            heapq.heappush(self._heap, (due, state.patient_id))

    def _count(
        self, step: tuple[int, int, float, str], transitions: list[AlertTransition]
    ) -> Iterator[tuple[Position, AlertTransition]]:
        for index, transition in enumerate(transitions):
            self.stats.transitions[f"{transition.rule}:{transition.status}"] += 1
            yield (*step, index), transition


def _strip_newline(line: bytes | str) -> bytes | str:
    # So a truncated line is reported at its own column, not at "line 2 column 0".
    return line.rstrip(b"\r\n") if isinstance(line, bytes) else line.rstrip("\r\n")
