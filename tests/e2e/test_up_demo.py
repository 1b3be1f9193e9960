"""`imnm up --demo` (what `make run` runs) as a new user meets it: one command brings up a real
broker, the topics and the tracker; alerts flow within a minute; Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from imnm_tracker.testing import free_port

pytestmark = pytest.mark.integration
EMBEDDED_BROKER = re.compile(r"kafka\s+(127\.0\.0\.1:\d+) \(embedded local broker, pid (\d+)")


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
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IMNM_")},
        "IMNM_TRACKER_METRICS_PORT": str(metrics_port),
        "IMNM_TRACKER_DATA_DIR": str(tmp_path / "tracker"),
        "IMNM_TRACKER_TIMER_INTERVAL_SECONDS": "2",
        "IMNM_TRACKER_APP_ID": f"imnm-e2e-{os.getpid()}",
        "IMNM_TOPIC_PARTITIONS": "3",
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "imnm_cli.main", "up", "--demo", "--demo-patients", "20"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=tmp_path,
    )
    output: list[str] = []
    try:
        bootstrap = None
        broker_pid = None
        deadline = time.monotonic() + 120
        assert up.stdout is not None
        while bootstrap is None and time.monotonic() < deadline:
            line = up.stdout.readline().decode(errors="replace")
            if not line:
                break
            output.append(line)
            match = EMBEDDED_BROKER.search(line)
            if match:
                bootstrap, broker_pid = match.group(1), int(match.group(2))
        assert bootstrap, "imnm up did not print the broker address:\n" + "".join(output)
        alerts = asyncio.run(first_alerts(bootstrap, "imnm.alerts.v1", want=5, timeout=90))
        assert len(alerts) >= 5, "no alerts within 90 s:\n" + "".join(output)
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
        os.killpg(up.pid, signal.SIGINT)
        try:
            rest, _ = up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            rest, _ = up.communicate()
        output.append(rest.decode(errors="replace"))
    assert up.returncode == 0, "".join(output)
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, check=False)
    assert leftover.stdout == b"", "tracker left running after Ctrl-C"
    assert broker_pid is not None and not Path(f"/proc/{broker_pid}").exists(), "broker left"
