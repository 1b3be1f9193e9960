"""The faust workarounds, on the consumer states seen in stalled runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.consumer.fetcher import Fetcher, FetchResult
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from intervaltree import IntervalTree

from imnm_tracker import faust_fixes

TP0 = TP("events", 0)


class FakeConsumer:
    """Just the attributes ``Consumer._new_offset`` reads."""

    def __init__(self, acked: list[int], gap: tuple[int, int] | None, committed: int) -> None:
        self._acked: dict[TP, list[int]] = defaultdict(list, {TP0: list(acked)})
        self._acked_index: dict[TP, set[int]] = defaultdict(set, {TP0: set(acked)})
        self._gap: dict[TP, IntervalTree] = defaultdict(IntervalTree)
        if gap is not None:
            self._gap[TP0].addi(*gap)
        self._committed_offset: dict[TP, int | None] = defaultdict(lambda: None, {TP0: committed})


def new_offset(consumer: Any) -> int | None:
    return Consumer._new_offset(consumer, TP0)


def test_acked_offsets_inside_a_gap_no_longer_stall_the_commit() -> None:
    assert faust_fixes.install()
    assert faust_fixes.install()  # idempotent
    stalled = FakeConsumer(acked=list(range(1, 798)), gap=(2, 93), committed=1)
    assert new_offset(stalled) == 798


def test_real_gaps_still_count_as_acked() -> None:
    faust_fixes.install()
    compacted = FakeConsumer(acked=[10, 11, 15, 16], gap=(12, 15), committed=10)
    assert new_offset(compacted) == 17


def test_duplicates_in_acked_are_dropped() -> None:
    faust_fixes.install()
    consumer = FakeConsumer(acked=[5, 5, 6, 7], gap=None, committed=5)
    assert new_offset(consumer) == 8


def test_without_the_fix_faust_advances_by_one() -> None:
    faust_fixes.install()
    unpatched = Consumer._new_offset.__wrapped__  # type: ignore[attr-defined]
    stalled = FakeConsumer(acked=list(range(1, 798)), gap=(2, 93), committed=1)
    assert unpatched(stalled, TP0) == 3  # the stall: one offset per commit


# --------------------------------------------------------------------------- flow-gated fetches
# The recovery stall after a takeover: a fetch that was waiting when the rebalance began drains,
# after the recovery's seeks, the changelog records the recovery is waiting for; faust drops
# them because its flow is stopped. aiokafka's own ``Fetcher.fetched_records`` runs here, on a
# stand-in fetcher holding one buffered batch of changelog records.

CHANGELOG = TP("tracker-patient-state-changelog", 0)


class PartitionState:
    paused = False

    def __init__(self, position: int) -> None:
        self.position = position

    def consumed_to(self, position: int) -> None:
        self.position = position


class Assignment:
    active = True

    def __init__(self) -> None:
        self.states: dict[TP, PartitionState] = {}

    def state_value(self, tp: TP) -> PartitionState:
        return self.states[tp]


class Batch:
    """What aiokafka's ``PartitionRecords`` offers ``FetchResult``: records, next offset."""

    def __init__(self, first: int, last: int) -> None:
        self._offsets = iter(range(first, last + 1))
        self.next_fetch_offset = first

    def __iter__(self) -> Batch:
        return self

    def __next__(self) -> int:
        offset = next(self._offsets)
        self.next_fetch_offset = offset + 1
        return offset


class Subscriptions:
    reassignment_in_progress = False

    def is_assigned(self, tp: TP) -> bool:
        return True

    @contextlib.contextmanager
    def fetch_context(self) -> Iterator[None]:
        yield


class StandInFetcher:
    """The attributes aiokafka's ``Fetcher.fetched_records`` uses, and that method itself."""

    _closed = False

    def __init__(self) -> None:
        self.assignment = Assignment()
        self._subscriptions = Subscriptions()
        self._records: dict[TP, FetchResult] = {}
        self._wait_consume_future = None
        self.waiters: list[asyncio.Future[None]] = []

    def _notify(self, future: Any) -> None:
        pass

    def _create_fetch_waiter(self) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    async def fetched_records(self, partitions: Any, timeout: float = 0,
                              max_records: int | None = None) -> dict[TP, list[int]]:
        return await Fetcher.fetched_records(self, partitions, timeout, max_records)

    def buffer(self, tp: TP, first: int, last: int) -> None:
        """The recovery sought ``tp`` to ``first``; aiokafka fetched up to ``last``."""
        self.assignment.states[tp] = PartitionState(first)
        self._records[tp] = FetchResult(tp, assignment=self.assignment,
                                        partition_records=Batch(first, last), backoff=0)
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)

    def position(self, tp: TP) -> int:
        return self.assignment.states[tp].position


class StandInAIOKafkaConsumer:
    _closed = False

    def __init__(self) -> None:
        self._fetcher = StandInFetcher()


class Topics:
    """faust's conductor: acks are enabled for the source topic, not for changelogs."""

    @staticmethod
    def acks_enabled_for(topic: str) -> bool:
        return topic == "events"


class FlowConsumer:
    """faust's Consumer as the consumer thread sees it: the flag, the live active set and the
    app's acking topics."""

    def __init__(self, active: set[TP]) -> None:
        self.flow_active = True
        self._active_partitions = active
        self.app = SimpleNamespace(topics=Topics())


class ConsumerThread:
    def __init__(self, consumer: FlowConsumer) -> None:
        self.consumer = consumer


async def takeover_race(fetch_records: Any) -> tuple[dict[TP, list[int]], StandInFetcher]:
    """A fetch waits for records; a rebalance stops the flow and pauses everything; the
    recovery seeks the changelog to 0 and aiokafka fetches offsets 0-44 for it."""
    faust_consumer = FlowConsumer({TP("events", 1), CHANGELOG})
    thread = ConsumerThread(faust_consumer)
    aiokafka_consumer = StandInAIOKafkaConsumer()
    fetcher = aiokafka_consumer._fetcher
    waiting = asyncio.create_task(fetch_records(
        thread, aiokafka_consumer, faust_consumer._active_partitions, timeout=0.3,
        max_records=None,
    ))
    await asyncio.sleep(0.01)
    assert not waiting.done() and fetcher.waiters  # parked, waiting for records
    faust_consumer.flow_active = False  # on_partitions_revoked: stop_flow
    faust_consumer._active_partitions.clear()  # pause_partitions(assignment)
    fetcher.buffer(CHANGELOG, 0, 44)
    return await waiting, fetcher


async def test_a_waiting_fetch_drains_nothing_while_the_flow_is_stopped() -> None:
    assert faust_fixes.install()
    drained, fetcher = await takeover_race(AIOKafkaConsumerThread._fetch_records)
    assert drained == {}
    assert fetcher.position(CHANGELOG) == 0  # the recovery still reads offsets 0-44
    assert CHANGELOG in fetcher._records


async def test_without_the_fix_the_recovery_records_are_drained_and_lost() -> None:
    faust_fixes.install()
    unpatched = AIOKafkaConsumerThread._fetch_records.__wrapped__  # type: ignore[attr-defined]
    drained, fetcher = await takeover_race(unpatched)
    # An empty live set is "no filter" to aiokafka: the changelog batch is consumed and
    # handed to faust, which drops it (flow stopped); the position is past the records.
    assert drained == {CHANGELOG: list(range(45))}
    assert fetcher.position(CHANGELOG) == 45


async def test_records_still_flow_for_active_partitions_while_the_flow_runs() -> None:
    faust_fixes.install()
    consumer = FlowConsumer({CHANGELOG})
    aiokafka_consumer = StandInAIOKafkaConsumer()
    aiokafka_consumer._fetcher.buffer(CHANGELOG, 0, 2)
    aiokafka_consumer._fetcher.buffer(TP("events", 0), 7, 8)  # paused: stays buffered
    drained = await AIOKafkaConsumerThread._fetch_records(
        ConsumerThread(consumer),  # type: ignore[arg-type]
        aiokafka_consumer, consumer._active_partitions, timeout=0,
    )
    assert drained == {CHANGELOG: [0, 1, 2]}
    assert TP("events", 0) in aiokafka_consumer._fetcher._records


def test_the_gate_reads_the_live_set_and_the_flag_at_each_check() -> None:
    consumer = FlowConsumer(set())
    gate = faust_fixes.FlowGatedPartitions(consumer, consumer._active_partitions)
    assert gate and CHANGELOG not in gate  # empty: nothing, not everything
    consumer._active_partitions.add(CHANGELOG)
    assert CHANGELOG in gate and list(gate) == [CHANGELOG]
    consumer.flow_active = False
    assert CHANGELOG not in gate and list(gate) == []


# ------------------------------------------------------------------ source partitions once sought
# The loss at the end of a rebalance: faust resumes the source partitions while the flow runs
# and seeks them afterwards; records drained in between are checked against stale read offsets,
# dropped, and then committed as a gap. A source partition now drains nothing until the
# generation's perform_seek has sought it.

EVENTS = TP("events", 1)


async def drain(consumer: FlowConsumer, fetcher_owner: StandInAIOKafkaConsumer
                ) -> dict[TP, list[int]]:
    return await AIOKafkaConsumerThread._fetch_records(
        ConsumerThread(consumer),  # type: ignore[arg-type]
        fetcher_owner, consumer._active_partitions, timeout=0,
    )


async def test_a_resumed_source_partition_drains_nothing_until_sought() -> None:
    assert faust_fixes.install()
    consumer = FlowConsumer({EVENTS, CHANGELOG})  # flow running, both resumed
    aiokafka_consumer = StandInAIOKafkaConsumer()
    aiokafka_consumer._fetcher.buffer(EVENTS, 1741, 1809)  # read from a position not yet sought
    aiokafka_consumer._fetcher.buffer(CHANGELOG, 0, 2)
    assert await drain(consumer, aiokafka_consumer) == {CHANGELOG: [0, 1, 2]}
    assert aiokafka_consumer._fetcher.position(EVENTS) == 1741  # untouched, still buffered
    faust_fixes.sought_partitions(consumer).add(EVENTS)  # what perform_seek does
    assert await drain(consumer, aiokafka_consumer) == {EVENTS: list(range(1741, 1810))}


def test_the_gate_lists_a_source_partition_only_once_sought() -> None:
    consumer = FlowConsumer({EVENTS, CHANGELOG})
    gate = faust_fixes.FlowGatedPartitions(consumer, consumer._active_partitions)
    assert EVENTS not in gate and list(gate) == [CHANGELOG]
    faust_fixes.sought_partitions(consumer).add(EVENTS)
    assert EVENTS in gate and sorted(gate) == sorted([EVENTS, CHANGELOG])
    consumer.flow_active = False
    assert EVENTS not in gate and list(gate) == []


class SeekingConsumer:
    """What faust's ``perform_seek``, ``resume_partitions`` and the rebalance callbacks read."""

    def __init__(self, assigned: set[TP], committed: dict[TP, int]) -> None:
        self.app = SimpleNamespace(
            consumer_generation_id=3,
            _start_span_from_rebalancing=lambda name: contextlib.nullcontext(),
            on_rebalance_return=lambda: None,
        )
        self.assigned = assigned
        self.committed = committed
        self.rebalance_during_seek = False
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._committed_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._active_partitions: set[TP] = set()
        self._paused_partitions: set[TP] = set()
        self._gap: dict[TP, Any] = {}
        self._acked: dict[TP, Any] = {}
        self._acked_index: dict[TP, Any] = {}
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self.callbacks: list[str] = []

    def assignment(self) -> set[TP]:
        return set(self.assigned)

    async def seek_to_committed(self) -> dict[TP, int]:
        if self.rebalance_during_seek:
            self.app.consumer_generation_id += 1
        return dict(self.committed)

    def _get_active_partitions(self) -> set[TP]:
        return self._active_partitions

    def _set_active_tps(self, tps: set[TP]) -> None:
        self._active_partitions = set(tps)

    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.callbacks.append("revoked")

    async def _on_partitions_assigned(self, assigned: set[TP], generation_id: int) -> None:
        self.callbacks.append("assigned")


async def test_perform_seek_marks_the_assigned_partitions_and_a_resume_unmarks_them() -> None:
    faust_fixes.install()
    consumer = SeekingConsumer({EVENTS, CHANGELOG}, {EVENTS: 1741})
    sought = faust_fixes.sought_partitions(consumer)
    await Consumer.perform_seek(consumer)  # type: ignore[arg-type]
    assert sought == {EVENTS, CHANGELOG}
    assert consumer._read_offset[EVENTS] == 1741  # faust's own bookkeeping still runs
    Consumer.resume_partitions(consumer, [EVENTS])  # type: ignore[arg-type]
    assert sought == {CHANGELOG} and EVENTS in consumer._active_partitions


async def test_a_seek_cut_by_a_rebalance_marks_nothing() -> None:
    faust_fixes.install()
    consumer = SeekingConsumer({EVENTS}, {EVENTS: 1741})
    consumer.rebalance_during_seek = True
    await Consumer.perform_seek(consumer)  # type: ignore[arg-type]
    assert faust_fixes.sought_partitions(consumer) == set()
    consumer.rebalance_during_seek = False  # the next recovery's seek, in its own generation
    await Consumer.perform_seek(consumer)  # type: ignore[arg-type]
    assert faust_fixes.sought_partitions(consumer) == {EVENTS}


async def test_a_revocation_and_an_assignment_unmark_everything() -> None:
    faust_fixes.install()
    consumer = SeekingConsumer({EVENTS}, {})
    sought = faust_fixes.sought_partitions(consumer)
    sought.add(EVENTS)
    await Consumer.on_partitions_revoked(consumer, {EVENTS})  # type: ignore[arg-type]
    assert sought == set()
    sought.add(EVENTS)
    await Consumer.on_partitions_assigned(consumer, {EVENTS}, 4)  # type: ignore[arg-type]
    assert sought == set()
    assert consumer.callbacks == ["revoked", "assigned"]  # faust's own handlers still run


# ------------------------------------------------------------ recovery seeks after a rebalance
# A rebalance between the recovery's offset building and its seek leaves a partition new to the
# recovery's sets without an offset (None); faust's seek raised "Offset must be a positive
# integer" and the worker exited. The recovery now starts over for the new assignment instead.


class SeekRecorder:
    def __init__(self) -> None:
        self.seeks: list[dict[TP, Any]] = []

    async def seek_wait(self, offsets: dict[TP, Any]) -> None:
        if any(not isinstance(offset, int) or offset < 0 for offset in offsets.values()):
            raise ValueError("Offset must be a positive integer")  # aiokafka's check
        self.seeks.append(offsets)


def recovery(rebalance_began: bool) -> Any:
    signal = asyncio.Event()
    if rebalance_began:
        signal.set()
    return SimpleNamespace(signal_recovery_start=signal)


async def test_a_recovery_seek_after_a_new_rebalance_starts_over_instead_of_crashing() -> None:
    from faust.tables.recovery import RebalanceAgain, Recovery

    assert faust_fixes.install()
    consumer = SeekRecorder()
    offsets: Counter[TP] = Counter()
    offsets[CHANGELOG] = None  # type: ignore[assignment]  # what Recovery._add leaves
    with pytest.raises(RebalanceAgain):
        await Recovery._seek_offsets(recovery(True), consumer, {CHANGELOG}, offsets, "standby")
    assert consumer.seeks == []
    unpatched = Recovery._seek_offsets.__wrapped__  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="positive integer"):  # the crash, without the fix
        await unpatched(recovery(True), consumer, {CHANGELOG}, offsets, "standby")


async def test_recovery_seeks_are_unchanged_without_a_new_rebalance() -> None:
    from faust.tables.recovery import Recovery

    faust_fixes.install()
    consumer = SeekRecorder()
    offsets: Counter[TP] = Counter({CHANGELOG: -1, EVENTS: 41})
    await Recovery._seek_offsets(recovery(False), consumer, {CHANGELOG, EVENTS}, offsets, "active")
    assert consumer.seeks == [{CHANGELOG: 0, EVENTS: 41}]  # faust's -1 -> 0 still applies
