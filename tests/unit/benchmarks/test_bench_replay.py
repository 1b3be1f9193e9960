"""The replay benchmark's code on a tiny stream: it runs, and its figures are consistent.

Benchmarks are not tests, so nothing here asserts a time; this keeps `make bench` from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.replay_step import ProcessWatch, state_sizes
from bench.run import main as bench_main
from imnm_common.service_layer.replay import Replay
from imnm_demo.generator import StreamSpec, generate_lines

REPO = Path(__file__).resolve().parents[3]


def test_state_sizes_report_the_compressed_table_value_and_the_json_inside() -> None:
    replay = Replay()
    for _ in replay.feed_lines(line.encode() for line in generate_lines(StreamSpec(4, seed=7))):
        pass
    sizes = state_sizes(replay)
    assert 0 < sizes["state_bytes_per_patient_mean"] <= sizes["state_bytes_per_patient_max"]
    assert sizes["state_bytes_per_patient_mean"] < sizes["state_json_bytes_per_patient_mean"]
    assert sizes["state_bytes_per_patient_max"] < sizes["state_json_bytes_per_patient_max"]


def test_make_bench_replay_section_on_a_tiny_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)  # the steps run as ``python -m bench.replay_step`` children
    assert bench_main(["--patients", "6", "--runs", "1", "--only", "replay",
                       "--results-dir", str(tmp_path)]) == 0
    saved = sorted(tmp_path.glob("bench-2*.json"))
    assert len(saved) == 1 and (tmp_path / "bench-latest.json").exists()
    result = json.loads(saved[0].read_text())
    replay = result["replay"]
    lines = list(generate_lines(StreamSpec(patients=6, seed=2025)))
    assert replay["events"] == len(lines) and replay["patients"] == 6
    assert replay["transitions"] > 0 and replay["runs"] == 1
    engine, ceiling = replay["replay_events_per_second"], replay["validate_only_events_per_second"]
    assert replay["ratio_to_ceiling"] == round(engine / ceiling, 3)
    assert replay["state_bytes_per_patient_max"] < replay["state_json_bytes_per_patient_max"]
    assert "pipeline" not in result and result["machine"]["cores"] >= 1
    printed = capsys.readouterr().out
    assert "replay engine" in printed and "imnm replay FILE" in printed
    assert str(saved[0]) in printed
    cli = replay["raw"]["cli"][0]
    assert cli["events"] == len(lines)  # the CLI's own summary: every line read
    assert replay["cli_events_per_second"] > 0 and replay["cli_peak_rss_mib"] > 0
    jobs = replay["raw"]["cli_jobs"][0]
    assert jobs["jobs"] == replay["cli_jobs"] == 2 and jobs["events"] == len(lines)
    assert jobs["transitions"] == cli["transitions"] and sum(
        int(count) for count in cli["transitions"].values()) == replay["transitions"]
    assert replay["cli_jobs_same_transitions"] is True
    assert "--jobs 2" in printed
    for run in (cli, jobs):  # the first transition reaches the reader before the end
        assert 0 < run["first_output_seconds"] <= run["seconds"]
        assert run["process_peak_rss_mib"] > 0
    assert cli["largest_child_peak_rss_mib"] == 0 < jobs["largest_child_peak_rss_mib"]
    assert "first line after" in printed and "largest worker" in printed
    # the same year with its orders written ahead: fewer events, the same transitions
    assert 0 < replay["schedules_events"] < len(lines)
    assert replay["schedules_same_transitions"] is True
    assert replay["schedules_events_per_second"] > 0 and replay["schedules_seconds"] > 0
    assert "orders written ahead" in printed


def test_the_peak_watch_tells_a_process_from_its_children() -> None:
    # a parent holding ~40 MiB starts a child holding ~120 MiB; both wait to be sampled
    script = (
        "import subprocess, sys, time\n"
        "held = bytearray(40 << 20)\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import time; held = bytearray(120 << 20); time.sleep(0.6)'])\n"
        "child.wait()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    with ProcessWatch(process.pid, time.perf_counter(), interval=0.01) as watch:
        process.wait()
    assert 40 << 10 <= watch.parent_kib < 120 << 10
    assert watch.largest_child_kib >= 120 << 10


def test_peak_rss_is_the_steps_own_not_its_parents(tmp_path: Path) -> None:
    """ru_maxrss of a child starts at its parent's RSS at fork: a bench step started by a parent
    holding a big stream reported the parent's size. The step must report its own peak."""
    stream = tmp_path / "tiny.jsonl"
    stream.write_text("".join(line + "\n" for line in generate_lines(StreamSpec(3, seed=1))))
    ballast = bytearray(400 * 2**20)
    for offset in range(0, len(ballast), 4096):  # touch every page: resident, not just mapped
        ballast[offset] = 1
    done = subprocess.run([sys.executable, "-m", "bench.replay_step", "memory", str(stream)],
                          cwd=REPO, capture_output=True, text=True, check=True)
    del ballast
    peak = json.loads(done.stdout)["peak_rss_mib"]
    assert 0 < peak < 300  # a 3-patient replay: tens of MiB, not the parent's 400+


def test_make_bench_long_term_section_compares_settled_and_kept_orders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    assert bench_main(["--only", "long-term", "--long-term-patients", "4", "--runs", "1",
                       "--long-term-tracker-patients", "0",  # the broker part: integration
                       "--results-dir", str(tmp_path)]) == 0
    result = json.loads(sorted(tmp_path.glob("bench-2*.json"))[0].read_text())
    long_term = result["long_term"]
    assert long_term["patients"] == 4 and long_term["years"] == 5
    settled, kept = long_term["settled"], long_term["kept"]
    assert settled["transitions"] == kept["transitions"] > 0
    assert settled["orders_per_patient_mean"] < kept["orders_per_patient_mean"]
    assert settled["state_bytes_per_patient_max"] < kept["state_bytes_per_patient_max"]
    assert "replay" not in result and "tracker" not in long_term
    assert "old orders settled" in capsys.readouterr().out
