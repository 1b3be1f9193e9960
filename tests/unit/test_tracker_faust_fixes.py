"""The faust commit workaround, on the exact consumer state seen in a stalled run."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from faust.transport.consumer import Consumer
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
    return Consumer._new_offset(consumer, TP0)  # type: ignore[arg-type]


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
