"""Decoded patient states kept between batches, in front of the table.

Without it every batch decodes each patient it touches from the table's bytes, and the engine
starts from a state whose derived values (dose steps, the clinical picture) are gone. With it a
patient seen in the last batch costs nothing to load and keeps those derived values.

Why this is safe: a worker is the only writer of the patients of the partitions it owns, and
every write goes through :meth:`save`, which keeps the cached object and the table in step.
Everything that can make them differ drops the cached object instead:

- a revoked partition (another worker writes it next) and every table recovery (the changelog
  may have replaced values): :meth:`drop_partitions`, :meth:`clear`;
- work on a loaded state that is abandoned before it was saved (a failed publish, an engine
  exception): :meth:`forget`, because the engine changes the state object in place.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from imnm_common.domain.state import PatientState
from imnm_tracker.stored import StoredHeader, StoredValueError

if TYPE_CHECKING:
    from imnm_tracker.core import StateStore

DEFAULT_MAX_PATIENTS = 20_000


class CachedStateStore:
    """A ``StateStore`` that keeps up to ``max_patients`` decoded states, least recent out."""

    def __init__(self, store: StateStore, max_patients: int = DEFAULT_MAX_PATIENTS) -> None:
        if max_patients < 0:
            raise ValueError("max_patients must be >= 0")
        self.store = store
        self.max_patients = max_patients
        self._states: OrderedDict[str, tuple[int, PatientState]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._states)

    def load(self, patient_id: str, partition: int) -> PatientState | None:
        cached = self._states.get(patient_id)
        if cached is not None and cached[0] == partition:
            self._states.move_to_end(patient_id)
            self.hits += 1
            return cached[1]
        self.misses += 1
        state = self.store.load(patient_id, partition)
        if state is not None:
            self._remember(patient_id, partition, state)
        return state

    def save(
        self, patient_id: str, partition: int, state: PatientState, due: float | None
    ) -> None:
        self.store.save(patient_id, partition, state, due)
        self._remember(patient_id, partition, state)

    async def flush(self) -> None:
        await self.store.flush()

    def headers(self) -> Iterable[tuple[str, StoredHeader | StoredValueError]]:
        return self.store.headers()

    def forget(self, patient_id: str) -> None:
        self._states.pop(patient_id, None)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        self.store.drop_partitions(gone)
        for patient_id in [p for p, (part, _) in self._states.items() if part in gone]:
            del self._states[patient_id]

    def clear(self) -> None:
        self._states.clear()

    def _remember(self, patient_id: str, partition: int, state: PatientState) -> None:
        if self.max_patients == 0:
            return
        self._states[patient_id] = (partition, state)
        self._states.move_to_end(patient_id)
        while len(self._states) > self.max_patients:
            self._states.popitem(last=False)
