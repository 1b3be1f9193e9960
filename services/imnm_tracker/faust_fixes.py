"""Four workarounds for faust-streaming 0.15.3, installed together by :func:`install` (with
the fast path of :mod:`imnm_tracker.faust_delivery`, which is written for the same version).

1. Offset commits that stall after a restart.

What happens: when a worker takes over partitions whose changelog it has to recover, faust
resumes the source partitions and lets the fetcher run *before* it seeks them to the committed
offsets. Messages delivered in that window are processed and acked; the seek then rewinds the
read offset, the next delivered message looks like a jump, and faust records the jumped-over
offsets as a "gap" (offsets that will never arrive, as in a compacted topic). When it computes
the next commit it adds the gap's offsets to the acked list *again*; the list now holds
duplicates, its first run of consecutive numbers ends at the first duplicate, and the commit
advances by one offset per commit interval. Processing goes on, but the consumer lag grows
and a restart re-processes everything since the stalled commit. Observed here in about one in
three SIGKILL-and-restart runs of tests/integration/test_tracker_recovery.py. Same symptom as
robinhood/faust#625 ("Offsets not committed due to duplicate in _acked").

The fix keeps faust's own computation and only cleans its inputs first: drop duplicate acked
offsets, and remove from the gap the offsets that were in fact acked (they are not missing).

2. Table recovery that never finishes after a rebalance (records fetched while flow is stopped).

What happens: faust's fetcher asks aiokafka, in the consumer thread, for the records of the
consumer's *live* set of active partitions (``Consumer._active_partitions``, the same set object
that ``pause_partitions``/``resume_partitions`` mutate) and waits up to a second for them. A
request that is waiting when a rebalance starts keeps waiting (up to its timeout, and aiokafka
parks it while the group reassigns) and then drains whatever the fetcher holds for the
partitions in the set *at that moment* - every partition when the set is empty, because aiokafka
treats an empty set as "no filter". If that happens after the recovery has sought the changelog
partitions to the offsets it needs, the changelog records are taken out of aiokafka (the
partitions' positions move past them), handed back to ``Consumer.getmany``, which finds the
flow stopped, drops them and re-seeks only the partitions that have a committed offset -
changelog partitions have none (faust never commits them). The recovery then waits forever
for records that were already read: "No event received for active tp ..." every 5 s, "Recovery
has not flushed buffers". Seen in tests/integration/test_tracker_scaleout.py (the survivor's
takeover) in 1 of 15 runs alone; with faust's dev log (``DEVLOG=1``) the worker logs "getmany
called while flow not active" *after* the recovery's seeks, and aiokafka's positions of the
changelog partitions sit at their end.

The fix gives aiokafka a view of the live set that contains nothing while the consumer's flow is
stopped and is never empty-means-everything. A request can then only drain records while the
flow runs: records read before a rebalance's seeks are harmless (the seeks reset the positions),
and after them the flow is stopped until the recovery resumes it. The check and the drain run
together in the consumer thread, where the recovery's seeks run too, so no seek can fall between
them.

3. Events lost, or a commit stalled, when a rebalance ends (source records read before the seek).

What happens: at the end of a recovery faust resumes the source partitions and only then seeks
them to the committed offsets (``perform_seek``, a round trip to the consumer thread). The flow
is already running by then whenever the recovery read a changelog or resumed standby partitions
(it resumes the flow for them), so the fetcher drains and delivers source records in that
window, checked against read
offsets that may be left over from the previous generation (a hand-off cut short by the
rebalance sets its read offset after the revocation cleared it). Records below such a stale read
offset are dropped unprocessed ("DROPPED MESSAGE ROFF" in faust's dev log); the seek then resets
the read offset, the rest of the drained batch looks like a jump, and faust records the jumped-
over offsets as a gap that it commits as if processed. Result, seen with
``python -m bench.rebalance_loss`` (workers joining, leaving and dying while a backlog is read;
1,000 patients, 8 membership changes per round): 9 of 15 rounds lost events (1 to 49 each, every
one committed), and one more never finished because a dropped record left a hole the commit
cannot pass. Logged with the seeks and gaps: the dropped offsets started at the committed
offset, and the gap recorded right after the seek covered the lost ones.

The fix extends the view above: a partition of a source topic (one whose messages faust acks)
drains nothing until ``perform_seek`` has sought it in the current generation. A revocation, an
assignment and ``resume_partitions`` clear the mark; a ``perform_seek`` that finishes within the
generation it started in sets it for the partitions assigned. Every source record is then read
from the committed offset onwards, after the read offsets were reset to match, so nothing is
dropped and no gap is invented. Changelog partitions (not acked) are not affected.

4. A worker that crashes when a rebalance lands in the middle of its recovery.

What happens: the recovery builds the changelog offsets to read from, then seeks to them. A
rebalance in between replaces the recovery's partition sets (``Recovery.on_rebalance``), and a
partition new to them has no offset yet (``None``): the seek raises "Offset must be a positive
integer", the recovery service crashes and the worker exits. faust's own check for "another
rebalance started" comes only after the active seek, and not at all before the standby seek.
Seen with ``python -m bench.rebalance_loss`` in 4 of the 32 rounds run after fix 3 (none of the
17 before it; too few rounds to tell whether that difference is real), each time in the standby
seek right after the new assignment; in one of them the crashed worker was the group's last, so
the round never finished.

The fix checks faust's own signal before each recovery seek: if a rebalance has begun since the
offsets were built, it raises faust's ``RebalanceAgain``, which the recovery loop handles by
starting over for the new assignment.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Set
from typing import Any, cast

import faust
from faust.tables.recovery import RebalanceAgain, Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from imnm_tracker import faust_delivery

log = logging.getLogger(__name__)

PATCHED_VERSION = "0.15.3"
_PATCHED = "_imnm_patched"  # set on every replacement function: install() runs once
_SOUGHT = "_imnm_sought_partitions"


def _runs(offsets: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive runs of sorted unique offsets as half-open ``[start, end)`` ranges."""
    start = previous = offsets[0]
    for offset in offsets[1:]:
        if offset != previous + 1:
            yield start, previous + 1
            start = offset
        previous = offset
    yield start, previous + 1


def clean_acked(consumer: Any, tp: TP) -> None:
    """Make ``_acked[tp]`` duplicate-free and the gap disjoint from it."""
    acked: list[int] = consumer._acked[tp]
    if not acked:
        return
    unique = sorted(set(acked))
    if len(unique) != len(acked):
        acked[:] = unique
    gap = consumer._gap.get(tp)
    if gap:
        for start, end in _runs(unique):
            gap.chop(start, end)


def sought_partitions(consumer: Any) -> set[TP]:
    """The partitions ``perform_seek`` has sought in the consumer's current generation."""
    sought: set[TP] | None = consumer.__dict__.get(_SOUGHT)
    if sought is None:
        sought = set()
        setattr(consumer, _SOUGHT, sought)
    return sought


class FlowGatedPartitions:
    """The partitions a waiting fetch may drain: those of ``partitions`` (a live set, read at
    each check) while ``consumer.flow_active``, none while the flow is stopped; and of a source
    topic only once sought (:func:`sought_partitions`).

    aiokafka's ``Fetcher.fetched_records`` reads its ``partitions`` argument only as
    ``if partitions and tp not in partitions``; this object is always true, so an empty live
    set means "drain nothing", not "drain every partition".
    """

    __slots__ = ("_consumer", "_partitions")

    def __init__(self, consumer: Any, partitions: Set[TP]) -> None:
        self._consumer = consumer
        self._partitions = partitions

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        consumer = self._consumer
        if not consumer.flow_active or tp not in self._partitions:
            return False
        # aiokafka asks with its own TopicPartition: a named tuple equal to faust's TP
        return (tp in sought_partitions(consumer)
                or not consumer.app.topics.acks_enabled_for(cast(TP, tp).topic))

    def __iter__(self) -> Iterator[TP]:
        return iter([tp for tp in list(self._partitions) if tp in self])

    def __repr__(self) -> str:
        return (f"FlowGatedPartitions(flow_active={self._consumer.flow_active!r}, "
                f"partitions={self._partitions!r}, "
                f"sought={sought_partitions(self._consumer)!r})")


def install() -> bool:
    """Install the workarounds and the hand-off fast path once; False (and a warning) on
    other faust versions."""
    if faust.__version__ != PATCHED_VERSION:
        log.warning("faust %s, not %s: the faust workarounds are not installed",
                    faust.__version__, PATCHED_VERSION)
        return False
    _install_clean_acked()
    _install_flow_gated_fetch()
    _install_seek_marks()
    _install_recovery_seek_guard()
    _patch(Consumer, "wait_first", faust_delivery.inline_handoff)
    return True


def _patch(owner: type, name: str, build: Callable[[Any], Callable[..., Any]]) -> None:
    """Replace ``owner.name`` with ``build(original)`` once; the replacement's ``__wrapped__``
    is faust's own, unpatched function."""
    original = getattr(owner, name)
    if getattr(original, _PATCHED, False):
        return
    replacement = functools.wraps(original)(build(original))
    setattr(replacement, _PATCHED, True)
    setattr(owner, name, replacement)


def _install_clean_acked() -> None:
    """Patch ``Consumer._new_offset``: clean the acked offsets and the gap first."""
    def build(original: Callable[[Consumer, TP], int | None]) -> Callable[..., Any]:
        def _new_offset(self: Consumer, tp: TP) -> int | None:
            clean_acked(self, tp)
            return original(self, tp)
        return _new_offset

    _patch(Consumer, "_new_offset", build)


def _install_flow_gated_fetch() -> None:
    """Patch ``AIOKafkaConsumerThread._fetch_records``: drain only while the flow runs."""
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        async def _fetch_records(
            self: AIOKafkaConsumerThread,
            consumer: Any,
            active_partitions: Set[TP] | None,
            timeout: float | None = None,
            max_records: int | None = None,
        ) -> Any:
            partitions: Any = active_partitions
            if active_partitions is not None:  # None: a client-only app, no filter, no recovery
                partitions = FlowGatedPartitions(self.consumer, active_partitions)
            return await original(self, consumer, partitions, timeout=timeout,
                                  max_records=max_records)
        return _fetch_records

    _patch(AIOKafkaConsumerThread, "_fetch_records", build)


def _install_seek_marks() -> None:
    """Patch the ``Consumer`` methods that make and unmake :func:`sought_partitions`."""
    def unmark_all_then(original: Callable[..., Any]) -> Callable[..., Any]:
        async def rebalance_callback(self: Consumer, *args: Any) -> None:
            sought_partitions(self).clear()  # revoked or newly assigned: nothing is sought
            await original(self, *args)
        return rebalance_callback

    def unmark_resumed(original: Callable[..., Any]) -> Callable[..., Any]:
        def resume_partitions(self: Consumer, tps: Iterable[TP]) -> None:
            tps = list(tps)
            sought_partitions(self).difference_update(tps)  # resumed: must be sought again
            original(self, tps)
        return resume_partitions

    def mark_sought(original: Callable[..., Any]) -> Callable[..., Any]:
        async def perform_seek(self: Consumer) -> None:
            generation = self.app.consumer_generation_id
            assigned = set(self.assignment())
            await original(self)
            # a rebalance during the seek: its partitions were not all sought (the next
            # recovery's perform_seek will do it)
            if self.app.consumer_generation_id == generation:
                sought_partitions(self).update(assigned & set(self.assignment()))
        return perform_seek

    _patch(Consumer, "on_partitions_revoked", unmark_all_then)
    _patch(Consumer, "on_partitions_assigned", unmark_all_then)
    _patch(Consumer, "resume_partitions", unmark_resumed)
    _patch(Consumer, "perform_seek", mark_sought)


def _install_recovery_seek_guard() -> None:
    """Patch ``Recovery._seek_offsets``: start over, not crash, when a rebalance has begun."""
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        async def _seek_offsets(self: Recovery, consumer: Any, tps: set[TP], offsets: Any,
                                title: str) -> None:
            if self.signal_recovery_start.is_set():
                log.info("a rebalance began during the %s recovery: starting over", title)
                raise RebalanceAgain()
            await original(self, consumer, tps, offsets, title)
        return _seek_offsets

    _patch(Recovery, "_seek_offsets", build)
