"""The pipeline benchmark's code on the real broker with a tiny stream: every step runs to the
end and its figures are consistent. Nothing asserts a time (benchmarks are not tests); this keeps
`make bench` from rotting between the runs that produce the README's figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.common import UNSETTLED_DAYS
from bench.pipeline import (
    faust_passthrough,
    latency,
    passthrough,
    relay_latency,
    tracker_long_term,
    tracker_restart,
    tracker_throughput,
)
from imnm_demo.generator import StreamSpec, generate_lines

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return [line.encode() for line in generate_lines(StreamSpec(patients=5, seed=2025))]


async def test_passthrough_and_tracker_throughput_cover_the_whole_stream(
    kafka_bootstrap: str, lines: list[bytes], tmp_path: Path, unique_name
) -> None:
    ceiling = await passthrough(kafka_bootstrap, lines, unique_name("pass"))
    # returns only once the child relayed every event (or raises)
    faust_ceiling = await faust_passthrough(kafka_bootstrap, lines, tmp_path, unique_name("fp"))
    # returns only once every event was consumed and the alert count settled (or raises)
    tracker = await tracker_throughput(kafka_bootstrap, lines, tmp_path, unique_name("trk"), 1,
                                       "2026-01-01T00:00:00Z")
    assert math.isfinite(ceiling) and ceiling > 0
    assert math.isfinite(faust_ceiling) and faust_ceiling > 0
    (relay_log,) = tmp_path.glob("*/faust-passthrough.log")
    assert "Traceback" not in relay_log.read_text()
    assert math.isfinite(tracker.events_per_second) and tracker.events_per_second > 0
    assert 1 <= tracker.batches <= len(lines)  # every batch holds at least one event
    assert 1 <= tracker.mean_batch_events <= 500  # the tracker's batch size limit
    assert tracker.in_batches_share > 0


@pytest.mark.parametrize("measure", ["tracker", "relay"])
async def test_latency_answers_every_probe(
    kafka_bootstrap: str, tmp_path: Path, unique_name, measure: str
) -> None:
    tag = unique_name("lat")
    if measure == "tracker":
        result = await latency(kafka_bootstrap, tmp_path, 100, 2.0, tag)
    else:
        result = await relay_latency(kafka_bootstrap, 100, 2.0, tag)
    assert result["probes"] == 10  # one statin order in 20 events, 200 events offered
    assert result["answered"] == result["probes"]  # each probe's statin alert came back
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]


async def test_tracker_long_term_runs_settled_and_kept(
    kafka_bootstrap: str, tmp_path: Path, unique_name
) -> None:
    spec = StreamSpec(patients=2, days=3 * 365, seed=5, renew_every_days=90)
    lines = [line.encode() for line in generate_lines(spec)]
    result = await tracker_long_term(kafka_bootstrap, lines, 1, tmp_path, "2028-01-02T00:00:00Z",
                                     UNSETTLED_DAYS, unique_name("lt"))
    assert result["events"] == len(lines)
    assert result["settled_events_per_second"] > 0 and result["kept_events_per_second"] > 0
    for run in (*result["raw"]["settled"], *result["raw"]["kept"]):
        assert 1 <= run["batches"] <= len(lines)
    # each run's worker says which rules it judged with
    (settled_log,) = tmp_path.glob("*s0/w0.log")
    (kept_log,) = tmp_path.glob("*k0/w0.log")
    assert "rules: defaults" in settled_log.read_text()
    assert f"'order_history_days': {UNSETTLED_DAYS}" in kept_log.read_text()


async def test_two_workers_share_the_stream(
    kafka_bootstrap: str, lines: list[bytes], tmp_path: Path, unique_name
) -> None:
    run = await tracker_throughput(kafka_bootstrap, lines, tmp_path, unique_name("two"), 2,
                                   "2026-01-01T00:00:00Z")
    assert math.isfinite(run.events_per_second) and run.events_per_second > 0
    assert 1 <= run.batches <= len(lines)
    assert run.in_batches_share > 0  # summed over both workers' metrics
    logs = sorted(path.name for path in tmp_path.glob("*/w*.log"))
    assert logs == ["w0.log", "w1.log"]


@pytest.mark.parametrize(("store", "compacted"),
                         [("memory://", False), ("memory://", True), ("rocksdb://", False)])
async def test_restart_step_recovers_every_patient(
    kafka_bootstrap: str, lines: list[bytes], tmp_path: Path, unique_name, store: str,
    compacted: bool,
) -> None:
    # raises unless the restarted worker reports the same tracked patients as before the stop
    result = await tracker_restart(kafka_bootstrap, lines, tmp_path, unique_name("re"),
                                   "2026-01-01T00:00:00Z", store, compacted=compacted)
    assert result["patients"] == 5  # every generated patient has an IMNM diagnosis
    assert 0 < result["restart_ready_seconds"] < 600
    assert result["worker_rss_mib"] > 0
    assert 5 <= result["changelog_records"] <= result["changelog_writes"]
    if compacted:  # the stream's writes compacted against a later segment's
        assert result["changelog_writes"] >= result["changelog_records"] + 5
