"""A replay split by patient over processes, with the single replay's output, byte for byte.

Re-processing a year of history after a rules change is the engine's heaviest job, and each
patient's evaluations depend only on that patient's events and on the stream's clock. So each
worker process reads the whole file, keeps the clock as the whole stream moves it, and applies
only the events of its share of the patients (:class:`~imnm_common.service_layer.replay.
PatientShare`). Every transition comes with its position in the single replay's output;
merging the shares in position order gives that output exactly.

The output streams: each share sends its transitions in position order, in chunks, through a
bounded queue, and the merge writes a transition as soon as no share can still send an earlier
one. The memory held does not grow with the history (a share that runs ahead waits for the
others once its queue is full), and the first lines appear while the shares are still working.

The price of a share: it parses and validates every line (about 4 us each), against the
engine's ~80 us for the events it applies, so the shares scale while there are cores for them.
"""

from __future__ import annotations

import heapq
import multiprocessing
import queue
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue

from imnm_common.domain.config import RulesConfig
from imnm_common.runtime import tune_gc_for_batch
from imnm_common.service_layer.replay import (
    PatientShare,
    Position,
    Rejection,
    Replay,
    ReplayStats,
)

CHUNK_TRANSITIONS = 1_000  # per message between processes: fewer, larger pickles
QUEUED_CHUNKS = 8  # per share: what a share may run ahead of the merge
_POLL_SECONDS = 1.0

Positioned = tuple[Position, bytes]  # a transition's place in the output, its alert.v1 JSON


@dataclass
class ShareSummary:
    """A share's counts, sent after its last transition."""

    stats: ReplayStats
    rejections: list[Rejection]
    patients: int
    clock: float | None


@dataclass(frozen=True)
class ShareFailed:
    """Sent instead of a summary when a share raised."""

    reason: str


ShareMessage = list[Positioned] | ShareSummary | ShareFailed


class ShareError(RuntimeError):
    """A share did not finish: it raised, or its process ended without a summary."""


def share_output(
    path: str, share: PatientShare, config: RulesConfig, now: float | None,
    chunk: int = CHUNK_TRANSITIONS,
) -> Iterator[list[Positioned] | ShareSummary]:
    """Replay the file for one share of its patients: its transitions in position order, in
    chunks, then its summary. What each worker process runs; tests run it in-process."""
    replay = Replay(config, share)
    pending: list[Positioned] = []
    with open(path, "rb") as handle:
        for position, transition in replay.feed_lines_positioned(handle):
            pending.append((position, transition.model_dump_json().encode()))
            if len(pending) >= chunk:
                yield pending
                pending = []
    for position, transition in replay.finish_positioned(now):
        pending.append((position, transition.model_dump_json().encode()))
    if pending:
        yield pending
    yield ShareSummary(
        stats=replay.stats,
        rejections=replay.rejections if share.index == 0 else [],  # every share rejects alike
        patients=len(replay.states),
        clock=replay.clock,
    )


class SharedReplay:
    """The shares of one replay, merged as they arrive. The counts are known once
    :meth:`transitions` has been read to its end."""

    def __init__(self, outputs: Sequence[Iterator[ShareMessage]]) -> None:
        if not outputs:
            raise ValueError("at least one share")
        self._outputs = outputs
        self.summaries: list[ShareSummary | None] = [None] * len(outputs)

    def transitions(self) -> Iterator[bytes]:
        """alert.v1 JSON documents in the single replay's order."""
        streams = [self._positioned(index) for index in range(len(self._outputs))]
        for _, document in heapq.merge(*streams, key=lambda item: item[0]):
            yield document

    def _positioned(self, index: int) -> Iterator[Positioned]:
        for message in self._outputs[index]:
            if isinstance(message, ShareSummary):
                self.summaries[index] = message
                return
            if isinstance(message, ShareFailed):
                raise ShareError(f"replay share {index + 1} failed: {message.reason}")
            yield from message
        raise ShareError(f"replay share {index + 1} ended without its summary")

    def _finished(self) -> list[ShareSummary]:
        done = [summary for summary in self.summaries if summary is not None]
        if len(done) != len(self.summaries):
            raise RuntimeError("the counts are known once every transition has been read")
        return done

    @property
    def stats(self) -> ReplayStats:
        summaries = self._finished()
        # Every share reads (and rejects) every line; each applies only its own patients.
        first = summaries[0].stats
        total = ReplayStats(read=first.read, rejected=first.rejected.copy())
        for summary in summaries:
            total.accepted += summary.stats.accepted
            total.duplicates += summary.stats.duplicates
            total.stale_versions += summary.stats.stale_versions
            total.transitions.update(summary.stats.transitions)
        return total

    @property
    def rejections(self) -> list[Rejection]:
        return self._finished()[0].rejections

    @property
    def patients(self) -> int:
        return sum(summary.patients for summary in self._finished())

    @property
    def clocks(self) -> list[float | None]:
        return [summary.clock for summary in self._finished()]


def _run_share(
    path: str, share: PatientShare, config: RulesConfig, now: float | None, chunk: int,
    sink: Queue[ShareMessage],
) -> None:
    tune_gc_for_batch()
    try:
        for message in share_output(path, share, config, now, chunk):
            sink.put(message)
    except BaseException as error:
        sink.put(ShareFailed(f"{type(error).__name__}: {error}"))
        raise


def _received(source: Queue[ShareMessage], process: BaseProcess) -> Iterator[ShareMessage]:
    """A worker's messages until its summary; an error if it dies without one."""
    while True:
        try:
            message = source.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            if process.is_alive():
                continue
            try:  # it may have exited right after its last put
                message = source.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                raise ShareError(
                    f"replay worker {process.name} exited ({process.exitcode}) before it finished"
                ) from None
        yield message
        if isinstance(message, ShareSummary | ShareFailed):
            return


@contextmanager
def replay_in_shares(
    path: str, shares: int, config: RulesConfig, now: float | None,
    *, chunk: int = CHUNK_TRANSITIONS,
) -> Iterator[SharedReplay]:
    """Replay ``path`` in ``shares`` worker processes (started fresh: ``spawn``); the workers
    are stopped when the block ends, also when it ends early."""
    if shares < 1:
        raise ValueError("at least one share")
    context = multiprocessing.get_context("spawn")
    queues: list[Queue[ShareMessage]] = []
    processes: list[BaseProcess] = []
    complete = False
    try:
        for index in range(shares):
            sink: Queue[ShareMessage] = context.Queue(maxsize=QUEUED_CHUNKS)
            process = context.Process(
                target=_run_share,
                args=(path, PatientShare(index, shares), config, now, chunk, sink),
                name=f"imnm-replay-share-{index + 1}",
                daemon=True,
            )
            process.start()
            queues.append(sink)
            processes.append(process)
        shared = SharedReplay([_received(q, p) for q, p in zip(queues, processes, strict=True)])
        yield shared
        complete = None not in shared.summaries
    finally:
        for worker in processes:
            if not complete:
                worker.terminate()  # stopped early: nobody reads what it would still send
            worker.join()
        for sink in queues:
            sink.close()
