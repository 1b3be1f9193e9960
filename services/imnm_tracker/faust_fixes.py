"""One workaround for faust-streaming 0.15.3: offset commits that stall after a restart.

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
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import faust
from faust.transport.consumer import Consumer
from faust.types import TP

log = logging.getLogger(__name__)

PATCHED_VERSION = "0.15.3"
_MARK = "_imnm_dedup_acked"


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


def install() -> bool:
    """Patch ``Consumer._new_offset`` once; False (and a warning) on other faust versions."""
    original: Callable[[Consumer, TP], int | None] = Consumer._new_offset
    if getattr(original, _MARK, False):
        return True
    if faust.__version__ != PATCHED_VERSION:
        log.warning("faust %s, not %s: the acked-offsets workaround is not installed",
                    faust.__version__, PATCHED_VERSION)
        return False

    @functools.wraps(original)  # __wrapped__: faust's own, unpatched
    def _new_offset(self: Consumer, tp: TP) -> int | None:
        clean_acked(self, tp)
        return original(self, tp)

    setattr(_new_offset, _MARK, True)
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    return True
