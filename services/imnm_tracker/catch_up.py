"""Which source partitions are catching up on a backlog, and how far their patients are judged.

Patients are judged at the clock's ``now``, except on a source partition with messages still
waiting behind those processed (after an outage, a restart or a rebalance, or a history load):
there they are judged only up to the newest event time processed from that partition, as a
replay of the same messages would judge them. Judged at ``now``, a patient whose CK result is
still in the backlog would be found overdue, alerted and resolved again minutes later when the
result arrives: a 1,000-patient year loaded with the clock past its end gave 22,414 transitions
where its replay to the same now gives 6,752 (catching up: 6,752; one-off, ``TrackerCore``
in-process, batches of 200).

- A partition is behind while the consumer's highwater (its end) is ahead of the offset after
  the last message processed; once the consumer reaches the end, ``now`` applies again.
- A partition got at a recovery (a start, a restart, a rebalance) is not judged at all until its
  first batch tells where it stands, unless the consumer knows it to be empty.
- A partition that made no progress for ``CATCH_UP_STALL_SECONDS`` (since its last batch, or
  since the recovery) counts as caught up whatever its highwater: an idle partition has no batch
  to wait for, and offsets that are not messages (transaction markers, aborted records) can keep
  the end out of reach. Judged on its event time forever, it would never raise a time-based
  alert; so the worst case is the judging without catching up, seconds late, never a missed
  alert.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

CATCH_UP_STALL_SECONDS = 10.0  # day-scale rules do not mind; a live backlog moves every batch
NOTHING_YET = float("-inf")  # a partition behind with no event time to judge by

SourceHighwater = Callable[[int], int | None]
"""A source partition's end (its last offset + 1) as the consumer last saw it; None if unknown."""


class PartitionProgress:
    """Per source partition: the offset after the last message processed, the newest event time
    processed, and when it last moved (or was got at a recovery)."""

    def __init__(
        self,
        highwater: SourceHighwater | None,
        monotonic: Callable[[], float] = time.monotonic,
        stall_seconds: float = CATCH_UP_STALL_SECONDS,
    ) -> None:
        self._highwater = highwater
        self._monotonic = monotonic
        self._stall_seconds = stall_seconds
        self._next_offset: dict[int, int] = {}
        self._event_time: dict[int, float] = {}
        self._progressed_at: dict[int, float] = {}
        self._recovered_at: dict[int, float] = {}  # got at a recovery, no batch since

    def processed(self, partition: int, offset: int, event_time: float | None) -> None:
        """A message was processed (``event_time`` None: it was dead-lettered)."""
        self._next_offset[partition] = max(self._next_offset.get(partition, 0), offset + 1)
        self._progressed_at[partition] = self._monotonic()
        self._recovered_at.pop(partition, None)
        if event_time is not None:
            latest = self._event_time.get(partition, event_time)
            self._event_time[partition] = max(latest, event_time)

    def recovered(self, active: set[int]) -> None:
        """The partitions owned after a recovery: forget the others, hold the new ones."""
        self.forget((self._next_offset.keys() | self._recovered_at.keys()) - active)
        now = self._monotonic()
        for partition in active - self._next_offset.keys():
            self._recovered_at.setdefault(partition, now)

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in list(partitions):
            self._next_offset.pop(partition, None)
            self._event_time.pop(partition, None)
            self._progressed_at.pop(partition, None)
            self._recovered_at.pop(partition, None)

    def catching_up(self) -> dict[int, float]:
        """The partitions behind, each with the newest event time processed from it: their
        patients are judged up to that time only (``NOTHING_YET``: not at all)."""
        behind: dict[int, float] = {}
        if self._highwater is None:
            return behind
        stalled_before = self._monotonic() - self._stall_seconds
        for partition, next_offset in self._next_offset.items():
            end = self._highwater(partition)
            if (end is not None and next_offset < end
                    and self._progressed_at[partition] > stalled_before):
                behind[partition] = self._event_time.get(partition, NOTHING_YET)
        for partition, recovered_at in self._recovered_at.items():
            # None: not fetched yet, so not known to be empty
            if self._highwater(partition) != 0 and recovered_at > stalled_before:
                behind[partition] = NOTHING_YET
        return behind


def judged_up_to(now: float, caught_up_to: float | None) -> tuple[float, bool]:
    """How far a patient is judged, as (instant, inclusive): ``now``, or, while its partition
    catches up to an earlier event time, that time exclusive (an event of that same instant may
    still be in the backlog; the instant is judged once passed, as a replay judges it)."""
    if caught_up_to is None or now <= caught_up_to:
        return now, True
    return caught_up_to, False


def tick_horizon(now: float, catching_up: dict[int, float], owned: set[int]) -> float:
    """How far a timer tick looks: ``now``, unless every partition owned is catching up, then
    only as far as the newest event time among them (a restart after an outage would otherwise
    take out and put back almost every patient on every tick until it caught up)."""
    if catching_up and owned and owned <= catching_up.keys():
        return min(now, max(catching_up.values()))
    return now
