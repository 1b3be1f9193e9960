"""The synthetic stream is deterministic, valid events.v1, time-ordered and clinically varied."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import orjson

from imnm_common.contracts.events import EventRejected, parse_event
from imnm_common.service_layer.replay import Replay
from imnm_demo.generator import StreamSpec, generate_lines


def test_same_seed_same_bytes_other_seed_other_stream() -> None:
    spec = StreamSpec(patients=40, seed=3)
    assert list(generate_lines(spec)) == list(generate_lines(spec))
    assert list(generate_lines(spec)) != list(generate_lines(StreamSpec(patients=40, seed=4)))


def test_every_line_is_a_valid_event_in_time_order() -> None:
    events = [parse_event(line) for line in generate_lines(StreamSpec(patients=60, seed=9))]
    times = [e.occurred_at for e in events]
    assert times == sorted(times)
    assert len({e.event_id for e in events}) == len(events)
    kinds = Counter(e.event_type for e in events)
    assert kinds["diagnosis"] == 60 and kinds["lab_result"] and kinds["muscle_assessment"]


def test_the_stream_raises_the_alerts_a_demo_needs() -> None:
    replay = Replay()
    lines = list(generate_lines(StreamSpec(patients=200, seed=5)))
    rules = Counter(t.rule for t in replay.feed_lines(lines))
    rules.update(t.rule for t in replay.finish())
    for rule in ("statin_active", "pjp_prophylaxis_missing", "ck_monitoring_overdue",
                 "taper_too_fast", "methotrexate_daily_dosing"):
        assert rules[rule] > 0, rule


def test_bad_fraction_mixes_in_rejected_lines() -> None:
    bad = 0
    for line in generate_lines(StreamSpec(patients=30, seed=1, bad_fraction=0.05)):
        try:
            parse_event(line)
        except EventRejected:
            bad += 1
    assert bad > 0


def test_generate_command_writes_json_lines() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "imnm_cli.main", "generate", "--patients", "3", "--seed", "2"],
        capture_output=True, check=True, timeout=60,
    )
    lines = done.stdout.decode().splitlines()
    assert lines == list(generate_lines(StreamSpec(patients=3, seed=2)))
    usage = subprocess.run(
        [sys.executable, "-m", "imnm_cli.main", "generate", "--start", "soon"],
        capture_output=True, check=False, timeout=60,
    )
    assert usage.returncode == 2 and b"--start" in usage.stderr
    renewed = subprocess.run(
        [sys.executable, "-m", "imnm_cli.main", "generate", "--patients", "2", "--days", "400",
         "--renew-every-days", "90"],
        capture_output=True, check=True, timeout=60,
    )
    assert renewed.stdout.decode().splitlines() == list(generate_lines(
        StreamSpec(patients=2, days=400, renew_every_days=90)))
    refused = subprocess.run(
        [sys.executable, "-m", "imnm_cli.main", "generate", "--renew-every-days", "0"],
        capture_output=True, check=False, timeout=60,
    )
    assert refused.returncode == 2 and b"--renew-every-days" in refused.stderr


def test_renewals_replace_each_order_in_force_by_the_same_prescription() -> None:
    spec = StreamSpec(patients=5, days=400, seed=2, renew_every_days=90)
    assert list(generate_lines(spec)) == list(generate_lines(spec))
    events = [orjson.loads(line) for line in generate_lines(spec)]
    assert len({e["event_id"] for e in events}) == len(events)
    orders = [e for e in events if e["event_type"] == "medication_order"]
    first_versions: dict[str, dict[str, object]] = {}
    for e in orders:
        first_versions.setdefault(e["order_id"], e)
    renewed = [e for oid, e in first_versions.items() if "-RNW" in oid]
    assert len(renewed) >= 5
    for new in renewed:
        assert new["status"] == "active"
        predecessors = [
            e for e in orders
            if e["occurred_at"] == new["occurred_at"] and e["patient_id"] == new["patient_id"]
            and e["status"] == "stopped" and e["medication"] == new["medication"]
            and e.get("dose") == new.get("dose")
        ]
        assert predecessors, new  # the same prescription stops where its successor starts
    # later versions of a renewed order go to its successor: nothing follows a renewal's stop
    stopped_at = {(e["patient_id"], e["order_id"]): e["occurred_at"] for e in orders
                  if e["status"] == "stopped"}
    for e in orders:
        end = stopped_at.get((e["patient_id"], e["order_id"]))
        assert end is None or e["occurred_at"] <= end
