"""`imnm up --demo` (what `make run` runs) as a new user meets it: one command brings up a real
broker, the topics, the tracker and the console; alerts flow within a minute; Ctrl-C stops
everything."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from running_suite import RunningSuite, suite_env

from imnm_tracker.testing import free_port

pytestmark = pytest.mark.integration


async def first_alerts(bootstrap: str, topic: str, want: int, timeout: float) -> list[dict]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    found: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                found.extend(orjson.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return found


def test_up_demo_brings_up_the_suite_and_alerts_flow(tmp_path: Path) -> None:
    metrics_port = free_port()
    env = suite_env(
        tracker_metrics_port=str(metrics_port), tracker_data_dir=str(tmp_path / "tracker"),
        tracker_timer_interval_seconds="2", tracker_app_id=f"imnm-e2e-{os.getpid()}",
        topic_partitions="3", console_port=str(free_port()),
        ingest_metrics_port=str(free_port()),
    )
    suite = RunningSuite(tmp_path, env, "--demo", "--demo-patients", "20")
    try:
        bootstrap = suite.wait_until_up()
        alerts = asyncio.run(first_alerts(bootstrap, "imnm.alerts.v1", want=5, timeout=90))
        assert len(alerts) >= 5, "no alerts within 90 s:\n" + suite.printed()
        assert all(a["patient_id"].startswith("DEMO-") for a in alerts)
        assert {a["status"] for a in alerts} <= {"open", "resolved"}
        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{metrics_port}/metrics", timeout=10
        ).read().decode()
        consumed = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("imnm_tracker_events_consumed_total{")
        ]
        assert sum(consumed) > 0
        assert "DEMO-" not in metrics  # patient ids never become labels
    finally:
        code = suite.stop()
    assert code == 0, suite.printed()
    suite.assert_nothing_left()
