"""The state changelog shrinks to about one record per patient, so a restart with the memory
store reads that much again rather than every state write (topics_setup.changelog_configs)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from imnm_demo.generator import StreamSpec, generate_lines
from imnm_tracker.testing import TrackerCluster, WorkerProcess, one_more_result_each

pytestmark = pytest.mark.integration

PATIENTS = 6


async def consumed(worker: WorkerProcess, count: int) -> None:
    await worker.wait_for(
        lambda: worker.metric("imnm_tracker_events_consumed_total") >= count,
        f"{count} events consumed",
    )


async def test_a_restart_reads_back_about_one_state_per_patient(
    kafka_bootstrap: str, unique_name, tmp_path: Path
) -> None:
    cluster = TrackerCluster(kafka_bootstrap, unique_name("cmp"), tmp_path / "tracker",
                             changelog_segment_seconds=1)
    try:
        lines = [line.encode() for line in generate_lines(StreamSpec(patients=PATIENTS, seed=7))]
        cluster.set_clock("2026-01-01T00:00:00Z")  # after the generated year
        worker = cluster.start_worker()
        await worker.wait_ready()
        # In chunks a little over a second apart: every chunk writes each patient's state again
        # into a segment of its own (a segment rolls on the first write a second after it
        # began), and the log cleaner (it looks every 15 s) can compact all but the newest.
        chunk = len(lines) // 8 + 1
        for start in range(0, len(lines), chunk):
            await cluster.publish_lines(lines[start:start + chunk])
            await consumed(worker, min(start + chunk, len(lines)))
            await asyncio.sleep(1.1)
        await cluster.publish_lines(one_more_result_each(lines))
        await consumed(worker, len(lines) + PATIENTS)
        await cluster.wait_caught_up()

        deadline = time.monotonic() + 90
        records, written = await cluster.changelog_records()
        while records > 3 * PATIENTS and time.monotonic() < deadline:
            await asyncio.sleep(2)
            records, written = await cluster.changelog_records()
        assert written >= 8 * PATIENTS  # each patient's state written once per chunk
        # one compacted record per patient, plus the newest segment's writes
        assert records <= 3 * PATIENTS, (records, written)

        tracked = worker.metric("imnm_tracker_tracked_patients")
        assert worker.stop() == 0
        again = cluster.start_worker(worker.name)
        await again.wait_ready()
        assert again.metric("imnm_tracker_tracked_patients") == tracked == PATIENTS
    finally:
        cluster.close()
