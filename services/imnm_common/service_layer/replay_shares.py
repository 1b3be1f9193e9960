"""A replay split by patient over processes, with the single replay's output, byte for byte.

Re-processing a year of history after a rules change is the engine's heaviest job, and each
patient's evaluations depend only on that patient's events and on the stream's clock. So each
worker process reads the whole file, keeps the clock as the whole stream moves it, and applies
only the events of its share of the patients (:class:`~imnm_common.service_layer.replay.
PatientShare`). Every transition comes back with its position in the single replay's output;
merging the shares in position order gives that output exactly.

The price of a share: it parses and validates every line (about 4 us each), against the
engine's ~80 us for the events it applies, so the shares scale while there are cores for them.
Output is written when every share has finished (the single replay streams it).
"""

from __future__ import annotations

import heapq
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from imnm_common.domain.config import RulesConfig
from imnm_common.runtime import tune_gc_for_batch
from imnm_common.service_layer.replay import (
    PatientShare,
    Position,
    Rejection,
    Replay,
    ReplayStats,
)


@dataclass
class ShareOutcome:
    """One share's transitions (alert.v1 JSON, in position order) and counts."""

    transitions: list[tuple[Position, bytes]]
    stats: ReplayStats
    rejections: list[Rejection]
    patients: int
    clock: float | None


@dataclass
class SharedReplay:
    """The shares of one replay, put together."""

    outcomes: list[ShareOutcome]
    stats: ReplayStats = field(init=False)
    rejections: list[Rejection] = field(init=False)
    patients: int = field(init=False)

    def __post_init__(self) -> None:
        first = self.outcomes[0]
        # Every share reads (and rejects) every line; each applies only its own patients.
        self.stats = ReplayStats(read=first.stats.read, rejected=first.stats.rejected.copy())
        for outcome in self.outcomes:
            self.stats.accepted += outcome.stats.accepted
            self.stats.duplicates += outcome.stats.duplicates
            self.stats.stale_versions += outcome.stats.stale_versions
            self.stats.transitions.update(outcome.stats.transitions)
        self.rejections = first.rejections
        self.patients = sum(outcome.patients for outcome in self.outcomes)

    def transitions(self) -> Iterator[bytes]:
        """alert.v1 JSON documents in the single replay's order."""
        merged = heapq.merge(*(o.transitions for o in self.outcomes), key=lambda item: item[0])
        for _, document in merged:
            yield document


def replay_share(
    path: str, share: PatientShare, config: RulesConfig, now: float | None
) -> ShareOutcome:
    """Replay the file for one share of its patients (run in a worker process)."""
    tune_gc_for_batch()
    replay = Replay(config, share)
    transitions: list[tuple[Position, bytes]] = []
    with open(path, "rb") as handle:
        for position, transition in replay.feed_lines_positioned(handle):
            transitions.append((position, transition.model_dump_json().encode()))
    for position, transition in replay.finish_positioned(now):
        transitions.append((position, transition.model_dump_json().encode()))
    return ShareOutcome(
        transitions=transitions,
        stats=replay.stats,
        rejections=replay.rejections if share.index == 0 else [],
        patients=len(replay.states),
        clock=replay.clock,
    )


def replay_in_shares(
    path: str, shares: int, config: RulesConfig, now: float | None
) -> SharedReplay:
    """Replay ``path`` in ``shares`` worker processes (started fresh: ``spawn``)."""
    if shares < 1:
        raise ValueError("at least one share")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=shares, mp_context=context) as pool:
        futures = [
            pool.submit(replay_share, path, PatientShare(index, shares), config, now)
            for index in range(shares)
        ]
        return SharedReplay([future.result() for future in futures])
