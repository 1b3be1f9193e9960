"""The rebalance-loss harness's pure parts: its membership plans and its loss detector."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from bench.rebalance_loss import MAX_WORKERS, RoundResult, churn_plan, note_crashes, offset_runs
from imnm_common.domain.config import RulesConfig
from imnm_common.service_layer.replay import Replay
from imnm_demo.generator import StreamSpec, generate_lines
from imnm_tracker.testing import unapplied_events


def test_a_plan_never_empties_the_group_nor_exceeds_its_size() -> None:
    for seed in range(50):
        members = {"w1"}
        plan = churn_plan(seed, 12)
        assert len(plan) == 12
        for step in plan:
            assert 2.0 <= step.after_seconds <= 6.0
            if step.action == "join":
                assert step.worker not in members
                members.add(step.worker)
            else:
                members.remove(step.worker)  # only a running worker stops or dies
            assert 1 <= len(members) <= MAX_WORKERS


def test_plans_differ_by_seed_and_repeat_by_seed() -> None:
    assert churn_plan(7, 8) == churn_plan(7, 8)
    assert len({tuple(churn_plan(seed, 8)) for seed in range(10)}) > 1
    assert {step.action for seed in range(10) for step in churn_plan(seed, 8)} == {
        "join", "stop", "kill"}


def test_offset_runs_group_consecutive_offsets_by_partition() -> None:
    places = [(1, 5), (0, 3), (1, 6), (0, 4), (1, 9), (0, 7)]
    assert offset_runs(places) == ["0:3-4", "0:7-7", "1:5-6", "1:9-9"]
    assert offset_runs([]) == []


def _applied(lines: list[bytes], kept: int) -> Replay:
    replay = Replay(RulesConfig(seen_event_ids_kept=kept))
    for _ in replay.feed_lines(lines):
        pass
    return replay


def test_states_that_remember_every_event_show_exactly_the_events_never_applied() -> None:
    lines = [line.encode() for line in generate_lines(StreamSpec(patients=6, seed=11))]
    dropped = [lines[3], lines[len(lines) // 2], lines[-1]]
    replay = _applied([line for line in lines if line not in dropped], kept=100_000)
    missing = unapplied_events(lines, replay.states)
    expected: dict[str, list[str]] = {}
    for line in dropped:
        event = orjson.loads(line)
        expected.setdefault(event["patient_id"], []).append(event["event_id"])
    assert missing == expected
    assert unapplied_events(lines, _applied(lines, kept=100_000).states) == {}


def test_the_default_window_would_not_do_so_the_harness_raises_it() -> None:
    lines = [line.encode() for line in generate_lines(StreamSpec(patients=3, seed=11))]
    # the product keeps 16 ids per patient: a year of events overflows it
    assert unapplied_events(lines, _applied(lines, kept=RulesConfig().seen_event_ids_kept).states)


def test_workers_that_exited_on_their_own_are_reported_and_dropped() -> None:
    running = SimpleNamespace(alive=True, process=SimpleNamespace(returncode=None))
    crashed = SimpleNamespace(alive=False, process=SimpleNamespace(returncode=1))
    workers: dict[str, Any] = {"w1": running, "w2": crashed}
    result = RoundResult(seed=1, events=0, patients=0, plan=[])
    note_crashes(workers, result)
    assert list(workers) == ["w1"]
    assert result.crashed_workers == ["w2 (exit 1)"]
