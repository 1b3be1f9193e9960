"""The hand-off fast path in front of faust's per-message race (imnm_tracker.faust_delivery).

A stand-in for the consumer carries what mode's ``Service.wait_first`` reads (its stopped and
crashed events, its loop) and a real ``asyncio.Event`` as the flow suspension, so the calls are
the fetcher's own: ``wait_first(callback(message), suspend_flow.wait())``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from mode.services import Service

from imnm_tracker import faust_delivery, faust_fixes

MODE_WAIT_FIRST = Service.wait_first
handed_to = contextvars.ContextVar("handed_to", default="nobody")


def stand_in() -> Any:
    return SimpleNamespace(_stopped=asyncio.Event(), _crashed=asyncio.Event(),
                           loop=asyncio.get_running_loop(), suspend_flow=asyncio.Event())


@pytest.fixture
def tasks_started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every task mode's race starts (it wraps each awaitable with ``ensure_future``)."""
    started: list[Any] = []
    original = asyncio.ensure_future

    def counting(awaitable: Any, *, loop: Any = None) -> Any:
        started.append(awaitable)
        return original(awaitable, loop=loop)

    monkeypatch.setattr(asyncio, "ensure_future", counting)
    yield started


def wait_first() -> Any:
    return faust_delivery.inline_handoff(MODE_WAIT_FIRST)


async def test_a_handoff_that_does_not_wait_runs_inline_without_tasks(
    tasks_started: list[Any],
) -> None:
    consumer = stand_in()
    delivered: list[str] = []

    async def handoff(message: str) -> str:
        delivered.append(message)
        handed_to.set("the stream")
        return f"queued {message}"

    call = handoff("m1")
    suspension = consumer.suspend_flow.wait()
    results = await wait_first()(consumer, call, suspension)
    assert delivered == ["m1"]
    assert results.done == [call] and results.results == ["queued m1"]
    assert not results.stopped
    assert tasks_started == []  # mode would have started four
    assert suspension.cr_frame is None  # closed, never left pending ("never awaited")
    assert handed_to.get() == "nobody"  # ran in a copy of the context, as a task does


async def test_a_handoff_that_waits_still_finishes_when_its_queue_frees(
    tasks_started: list[Any],
) -> None:
    consumer = stand_in()
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
    queue.put_nowait("earlier")  # full: the hand-off waits (back-pressure)

    async def handoff(message: str) -> str:
        await queue.put(message)
        return "queued"

    race = asyncio.ensure_future(wait_first()(consumer, handoff("m2"),
                                              consumer.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    assert not race.done()  # waiting on the full queue
    assert queue.get_nowait() == "earlier"
    results = await asyncio.wait_for(race, 1)
    assert results.results[:1] == ["queued"] and not results.stopped
    assert queue.get_nowait() == "m2"
    assert len(tasks_started) > 1  # the rest of it raced the suspension, as before


async def test_a_waiting_handoff_is_abandoned_when_the_flow_is_suspended() -> None:
    consumer = stand_in()
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
    queue.put_nowait("earlier")
    finished: list[str] = []

    async def handoff(message: str) -> None:
        try:
            await queue.put(message)
            finished.append("put")
        except asyncio.CancelledError:
            finished.append("cancelled")
            raise

    race = asyncio.ensure_future(wait_first()(consumer, handoff("m3"),
                                              consumer.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    consumer.suspend_flow.set()  # a rebalance starts
    results = await asyncio.wait_for(race, 1)
    assert results.results == [True]  # the suspension won
    await asyncio.sleep(0)  # let the cancellation reach the hand-off
    assert finished == ["cancelled"] and queue.qsize() == 1


async def test_errors_reach_the_fetcher_before_and_after_a_wait() -> None:
    consumer = stand_in()

    async def fails_at_once() -> None:
        raise ValueError("cannot decode")

    suspension = consumer.suspend_flow.wait()
    with pytest.raises(ValueError, match="cannot decode"):
        await wait_first()(consumer, fails_at_once(), suspension)
    assert suspension.cr_frame is None

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise ValueError("broken after a wait")

    with pytest.raises(ValueError, match="broken after a wait"):
        await wait_first()(consumer, fails_later(), consumer.suspend_flow.wait())


async def test_every_other_call_goes_to_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = stand_in()
    seen: list[tuple[int, Any]] = []

    async def spy(self: Any, *coros: Any, timeout: Any = None) -> Any:
        seen.append((len(coros), timeout))
        for coro in coros:
            if asyncio.iscoroutine(coro):
                coro.close()
        return None

    patched = faust_delivery.inline_handoff(spy)

    async def handoff() -> None:
        return None

    event = asyncio.Event()
    await patched(consumer, handoff(), timeout=1.0)  # Service.wait's shape
    await patched(consumer, event)  # an event, not a coroutine
    await patched(consumer, handoff(), asyncio.sleep(0))  # not the suspension's wait
    await patched(consumer, handoff(), consumer.suspend_flow.wait(), timeout=2.0)
    consumer._stopped.set()
    await patched(consumer, handoff(), consumer.suspend_flow.wait())  # stopping: mode decides
    assert seen == [(1, 1.0), (1, None), (2, None), (2, 2.0), (2, None)]


def test_installed_once_with_the_faust_fixes() -> None:
    assert faust_fixes.install()
    installed = Consumer.wait_first
    assert getattr(installed, "__wrapped__", None) is MODE_WAIT_FIRST
    assert faust_fixes.install()
    assert Consumer.wait_first is installed  # not wrapped twice
