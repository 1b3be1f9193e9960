"""A fast path for faust's hand-off of each fetched message to the streams (faust-streaming 0.15.3).

What faust does: its fetcher hands every message to the conductor with
``await consumer.wait_first(callback(message), consumer.suspend_flow.wait())``, so that a
hand-off blocked by back-pressure is abandoned when a rebalance suspends the flow. mode's
``Service.wait_first`` makes that race out of four asyncio tasks (the hand-off, the suspension,
and the service's stopped and crashed events) and an ``asyncio.wait``, for every message. The
hand-off itself almost never waits: it puts the event on the stream's queue, which blocks only
when that queue is full.

What it cost, measured with py-spy on the local broker: 26% of the main thread of a faust worker
doing nothing else (bench/faust_passthrough.py) and 11% of the tracker's. Interleaved one-off
runs on a 2,000-patient year (97,115 events): the faust pass-through went from 7,775 / 8,615 to
10,400 / 12,202 events/s and the tracker from 3,075 / 3,235 to 3,936 / 3,955 events/s.

The fast path runs the hand-off's first step at once, in a copy of the current context as a
task would. If it finishes there, the message is handed off and there is nothing to race. If it
waits, the rest of it races the suspension exactly as before (mode's ``wait_first``, given the
half-run hand-off to finish). mode's race runs the hand-off's first step in any case (its task
is scheduled first, before anything can be cancelled), so the hand-off does the same work either
way; only the four tasks are gone. Only the fetcher's call takes this path: two coroutines, the
second the consumer's own ``suspend_flow.wait()``, and a consumer neither stopped nor crashed.
Every other ``wait_first`` call goes to mode's unchanged.

History: shipped once and reverted, because two workers started together on a 5,000-patient
backlog did not finish 2 of 6 to 8 runs with it, one of them with 369 events committed and never
processed. That loss was faust's own: records delivered
between the end of a rebalance's recovery and its seek, checked against stale read offsets and
committed as a gap (:mod:`imnm_tracker.faust_fixes`, workaround 3), which exists without the
fast path. Whether the faster hand-off made it more likely was not shown: without the workaround
the fast path lost nothing in 6 churn rounds on seeds of which 3 lost events without it. With
that workaround, ``python -m bench.rebalance_loss`` (workers joining, leaving and dying
during a backlog) lost no event with the fast path either (docs/tracker.md "Events lost at the
end of a rebalance"). :func:`imnm_tracker.faust_fixes.install` installs it, with the workarounds.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any

from faust.transport.consumer import Consumer
from mode.services import WaitResults

_SUSPENSION_WAIT = asyncio.Event.wait.__code__


class ResumedCoroutine:
    """Awaitable that finishes a coroutine already run up to its first suspension: it yields what
    the coroutine yielded, then relays every value and exception between the awaiting task and
    the coroutine, as ``await`` on the coroutine itself would have."""

    __slots__ = ("_coroutine", "_yielded")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coroutine = coroutine
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, outgoing = self._coroutine, self._yielded
        while True:
            try:
                incoming = yield outgoing
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as error:  # relayed, as ``await`` relays it
                try:
                    outgoing = coroutine.throw(error)
                except StopIteration as finished:
                    return finished.value
            else:
                try:
                    outgoing = coroutine.send(incoming)
                except StopIteration as finished:
                    return finished.value


WaitFirst = Callable[..., Coroutine[Any, Any, WaitResults]]


def inline_handoff(original: WaitFirst) -> WaitFirst:
    """``Consumer.wait_first`` with the fast path in front of mode's ``original``."""

    async def wait_first(self: Consumer, *coros: Any, timeout: Any = None) -> WaitResults:
        if (
            len(coros) != 2
            or timeout is not None
            or type(coros[0]) is not CoroutineType
            or type(coros[1]) is not CoroutineType
            or coros[1].cr_code is not _SUSPENSION_WAIT
            or self._stopped.is_set()
            or self._crashed.is_set()
        ):
            return await original(self, *coros, timeout=timeout)
        handoff, suspension = coros
        try:
            yielded = contextvars.copy_context().run(handoff.send, None)
        except StopIteration as finished:
            suspension.close()  # never started: nothing to cancel
            return WaitResults([handoff], [finished.value], False)
        except BaseException:
            suspension.close()
            raise
        return await original(self, ResumedCoroutine(handoff, yielded), suspension)

    return wait_first
