"""How the pipeline benchmark times a run from the workers' metrics (bench.pipeline), with
stand-in workers: no broker, no process."""

from __future__ import annotations

import time
import urllib.error
from types import SimpleNamespace
from typing import Any

import pytest

from bench import pipeline

TOTAL = 269
BUSY = object()
SLOW_ZERO = object()


class ScriptedWorker:
    """Answers each scrape from a script: a dict of metrics, or an exception to raise."""

    def __init__(self, script: list[Any], alert_at: list[float]) -> None:
        self.script = script
        self.alert_at = alert_at

    def metrics(self) -> dict[str, float]:
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if step is BUSY:
            # the worker consumes the stream and publishes its alerts while this scrape waits,
            # then the scrape times out
            self.alert_at.append(time.time())
            time.sleep(0.05)
            raise urllib.error.URLError(TimeoutError("timed out"))
        if step is SLOW_ZERO:
            # the worker consumes the stream and publishes its alerts while this scrape's
            # answer ("nothing consumed") is on its way back
            self.alert_at.append(time.time() - 0.001)
            return consumed(0)
        if isinstance(step, BaseException):
            raise step
        if step.get("imnm_tracker_alert_transitions_total") and not self.alert_at:
            self.alert_at.append(time.time() - 0.001)  # published just before this scrape
        return step


def consumed(events: int, alerts: int = 0) -> dict[str, float]:
    return {"imnm_tracker_events_consumed_total": events,
            "imnm_tracker_alert_transitions_total": alerts,
            "imnm_tracker_batch_seconds_sum": 0.01, "imnm_tracker_batch_seconds_count": 1}


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    alert_at: list[float] = []
    monkeypatch.setattr(pipeline, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(pipeline, "SETTLE_SECONDS", 0.05)

    async def newest_alert(bootstrap: str, partitions: Any) -> float:
        return alert_at[0]

    monkeypatch.setattr(pipeline, "_newest_timestamp", newest_alert)
    return alert_at


async def run(script: list[Any], alert_at: list[float]) -> pipeline.TrackerRun:
    cluster = SimpleNamespace(bootstrap="-", topics=SimpleNamespace(alerts="a"), partitions=1)
    worker = ScriptedWorker(script, alert_at)
    return await pipeline._processing_rate(cluster, [worker], TOTAL)  # type: ignore[arg-type]


async def test_a_scrape_that_times_out_does_not_count_as_nothing_consumed(
    fast_polls: list[float],
) -> None:
    # The whole tiny stream is consumed and its alerts published while a scrape waits on the
    # busy worker and times out. Taken as "nothing consumed yet", that poll became the run's
    # start, after its last alert: a run of 0 s (ZeroDivisionError, as seen once in CI).
    refused = urllib.error.URLError(ConnectionRefusedError(111, "refused"))
    script = [refused, consumed(0), BUSY, consumed(TOTAL, 5)]
    result = await run(script, fast_polls)
    assert 0 < result.events_per_second < float("inf")


async def test_a_worker_not_listening_yet_has_consumed_nothing(fast_polls: list[float]) -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "refused"))
    result = await run([refused, refused, consumed(TOTAL, 5)], fast_polls)
    assert result.events_per_second > 0
    assert pipeline._refused(refused) and not pipeline._refused(OSError("timed out"))


async def test_a_stream_consumed_while_a_nothing_consumed_answer_travels(
    fast_polls: list[float],
) -> None:
    # The poll that reported nothing consumed is timed after its last alert: the start, the
    # last pending poll and the end bound were all that one poll (a run of 0 s,
    # ZeroDivisionError in CI in the rocksdb restart test, twice).
    result = await run([consumed(0), SLOW_ZERO, consumed(TOTAL, 5)], fast_polls)
    assert 0 < result.events_per_second < float("inf")
