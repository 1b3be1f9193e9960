"""Which of this worker's patients is due when, so a timer tick does not scan every state.

The index covers the patients of the source partitions this worker owns: updated after every
write, emptied of revoked partitions on revocation, and rebuilt from the table's stored headers
after every recovery (see :mod:`imnm_tracker.stored`). Due times sit in a heap with lazy
deletion, like :class:`~imnm_common.service_layer.replay.Replay`'s: a tick pops only what is due.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DueEntry:
    patient_id: str
    partition: int
    due: float


class DueIndex:
    def __init__(self) -> None:
        self._partition: dict[str, int] = {}
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        """Patients tracked on this worker (with or without anything due)."""
        return len(self._partition)

    def update(self, patient_id: str, partition: int, due: float | None) -> None:
        self._partition[patient_id] = partition
        if due is None:
            self._due.pop(patient_id, None)
        elif self._due.get(patient_id) != due:
            self._due[patient_id] = due
            heapq.heappush(self._heap, (due, patient_id))
            self._maybe_compact()

    def owns(self, patient_id: str, partition: int) -> bool:
        return self._partition.get(patient_id) == partition

    def due_at(self, patient_id: str) -> float | None:
        return self._due.get(patient_id)

    def next_due(self) -> float | None:
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int | None = None) -> list[DueEntry]:
        """Remove and return the entries due at or before ``now``, earliest first.

        The caller puts each back with :meth:`update` once handled (or :meth:`restore` if it
        could not handle them), so a failed tick is retried on the next one.
        """
        popped: list[DueEntry] = []
        while self._heap and (limit is None or len(popped) < limit):
            self._drop_stale_top()
            if not self._heap or self._heap[0][0] > now:
                break
            due, patient_id = heapq.heappop(self._heap)
            del self._due[patient_id]
            popped.append(DueEntry(patient_id, self._partition[patient_id], due))
        return popped

    def restore(self, entries: Iterable[DueEntry]) -> None:
        for entry in entries:
            if entry.patient_id not in self._due and self.owns(entry.patient_id, entry.partition):
                self.update(entry.patient_id, entry.partition, entry.due)

    def drop_partitions(self, partitions: Iterable[int]) -> int:
        """Forget the patients of revoked partitions; returns how many."""
        gone = set(partitions)
        victims = [pid for pid, partition in self._partition.items() if partition in gone]
        for patient_id in victims:
            del self._partition[patient_id]
            self._due.pop(patient_id, None)  # its heap entry goes stale and is skipped
        return len(victims)

    def rebuild(self, entries: Iterable[tuple[str, int, float | None]]) -> None:
        """Replace everything with ``(patient_id, partition, due)`` triples."""
        self._partition.clear()
        self._due.clear()
        self._heap.clear()
        for patient_id, partition, due in entries:
            self._partition[patient_id] = partition
            if due is not None:
                self._due[patient_id] = due
                self._heap.append((due, patient_id))
        heapq.heapify(self._heap)

    def _maybe_compact(self) -> None:
        # Superseded entries far in the future would otherwise pile up in a long-running worker.
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._heap = [(due, pid) for pid, due in self._due.items()]
            heapq.heapify(self._heap)

    def _drop_stale_top(self) -> None:
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
