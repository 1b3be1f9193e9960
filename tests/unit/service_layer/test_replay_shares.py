"""A replay split into patient shares gives the single replay's output, byte for byte.

Most shares run in this process here (``share_output`` is what each worker process runs); the
last tests, and the CLI test, run them in worker processes.
"""

from __future__ import annotations

import json
import multiprocessing
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imnm_common.domain.config import RulesConfig
from imnm_common.service_layer.replay import PatientShare, Replay
from imnm_common.service_layer.replay_shares import (
    SharedReplay,
    ShareError,
    ShareFailed,
    ShareSummary,
    replay_in_shares,
    share_output,
)
from imnm_demo.generator import StreamSpec, delivered_out_of_order, generate_lines

END = 1_760_000_000.0  # 2025-10-09, after every generated stream below


STREAMS = {
    "year in order, bad lines": lambda: list(
        generate_lines(StreamSpec(patients=80, seed=21, bad_fraction=0.02))
    ),
    "year out of order": lambda: delivered_out_of_order(
        list(generate_lines(StreamSpec(patients=80, seed=22))), random.Random(22),
        re_delivered_every=40,
    ),
    "three years renewed, out of order": lambda: delivered_out_of_order(
        list(generate_lines(StreamSpec(patients=25, days=365 * 3, seed=23,
                                       renew_every_days=90))), random.Random(23),
        re_delivered_every=40,
    ),
}


def _single(path: Path, config: RulesConfig, now: float | None) -> tuple[list[bytes], Replay]:
    replay = Replay(config)
    with open(path, "rb") as handle:
        out = [t.model_dump_json().encode() for t in replay.feed_lines(handle)]
    out += [t.model_dump_json().encode() for t in replay.finish(now)]
    return out, replay


@pytest.mark.parametrize("stream", sorted(STREAMS))
@pytest.mark.parametrize("shares", [2, 3])
def test_shares_merged_give_the_single_replays_output_and_counts(
    stream: str, shares: int, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(STREAMS[stream]()) + "\n")
    config = RulesConfig()
    single, replay = _single(path, config, END)
    assert len(single) > 200

    shared = SharedReplay([share_output(str(path), PatientShare(i, shares), config, END, chunk=50)
                           for i in range(shares)])
    assert list(shared.transitions()) == single
    assert shared.stats == replay.stats
    assert shared.rejections == replay.rejections
    assert shared.patients == len(replay.states)
    assert shared.clocks == [replay.clock] * shares
    # each share judged patients of its own, and every patient was judged by one share
    summaries = [summary for summary in shared.summaries if summary is not None]
    assert all(0 < summary.patients < shared.patients for summary in summaries)


def test_shares_finish_at_the_last_event_without_now(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(STREAMS["year out of order"]()) + "\n")
    single, _ = _single(path, RulesConfig(), None)
    shared = SharedReplay([share_output(str(path), PatientShare(i, 2), RulesConfig(), None)
                           for i in range(2)])
    assert list(shared.transitions()) == single


def test_every_patient_falls_in_exactly_one_share() -> None:
    patients = [f"MRN-{n}" for n in range(500)]
    for count in (1, 2, 3, 7):
        shares = [PatientShare(i, count) for i in range(count)]
        for patient in patients:
            assert sum(share.owns(patient) for share in shares) == 1
    assert len({PatientShare(i, 3).owns("MRN-1") for i in range(3)}) == 2  # one yes, two no


@pytest.mark.parametrize(("index", "count"), [(-1, 2), (2, 2), (0, 0)])
def test_a_share_outside_its_count_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="share"):
        PatientShare(index, count)


def _event(patient: str, n: int, day: int, **fields: object) -> str:
    moment = f"2025-01-{day:02d}T09:00:00Z"
    return json.dumps({"event_id": f"{patient}-{n}", "patient_id": patient,
                       "occurred_at": moment, **fields})


def test_the_finish_comes_after_the_last_events_own_transitions(tmp_path: Path) -> None:
    """The last line opens an alert at once (a statin order) in one share; the finish fires
    another share's due evaluation later: merged, the statin alert comes first, as in the
    single replay."""
    first, second = (next(f"MRN-{n}" for n in range(100) if PatientShare(share, 2).owns(f"MRN-{n}"))
                     for share in (0, 1))
    prednisone = {"event_type": "medication_order", "status": "active",
                  "medication": {"name": "prednisone"}, "dose": {"value": 60, "unit": "mg"},
                  "frequency": {"times": 1, "period": 1, "unit": "d"}}
    lines = [
        _event(first, 1, 1, event_type="diagnosis", condition="IMNM", status="active"),
        _event(first, 2, 1, order_id="pred", **prednisone),
        _event(second, 1, 2, event_type="diagnosis", condition="IMNM", status="active"),
        _event(second, 2, 3, event_type="medication_order", order_id="statin",
               status="active", medication={"name": "atorvastatin 40 mg"}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    now = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
    single, _ = _single(path, RulesConfig(), now)
    shared = SharedReplay([share_output(str(path), PatientShare(i, 2), RulesConfig(), now)
                           for i in range(2)])
    merged = list(shared.transitions())
    assert merged == single
    rules = [json.loads(document)["rule"] for document in merged]
    assert rules[0] == "statin_active" and len(rules) > 1


def test_the_merge_writes_before_the_shares_have_finished(tmp_path: Path) -> None:
    """The first transitions come out while every share still has the rest of the file to
    read: nothing waits for a share's end, so the memory held does not grow with the output."""
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(STREAMS["year in order, bad lines"]()) + "\n")
    single, _ = _single(path, RulesConfig(), END)
    shared = SharedReplay([share_output(str(path), PatientShare(i, 2), RulesConfig(), END, chunk=10)
                           for i in range(2)])
    merged = shared.transitions()
    first = [next(merged) for _ in range(5)]
    assert first == single[:5]
    assert shared.summaries == [None, None]
    with pytest.raises(RuntimeError, match="once every transition"):
        _ = shared.stats
    assert first + list(merged) == single
    assert None not in shared.summaries


def _summary() -> ShareSummary:
    return ShareSummary(stats=Replay().stats, rejections=[], patients=0, clock=None)


def test_a_failed_or_truncated_share_is_an_error_not_a_shorter_output() -> None:
    failed = SharedReplay([iter([_summary()]), iter([ShareFailed("MemoryError: ")])])
    with pytest.raises(ShareError, match="share 2 failed: MemoryError"):
        list(failed.transitions())
    truncated = SharedReplay([iter([]), iter([_summary()])])
    with pytest.raises(ShareError, match="share 1 ended without its summary"):
        list(truncated.transitions())


def test_worker_processes_give_the_single_output_and_stop_when_the_block_ends(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(STREAMS["year out of order"]()) + "\n")
    single, replay = _single(path, RulesConfig(), END)
    with replay_in_shares(str(path), 2, RulesConfig(), END) as shared:
        assert list(shared.transitions()) == single
    assert shared.stats == replay.stats
    assert multiprocessing.active_children() == []
    # read one transition and leave: the workers, blocked on their full queues (8 chunks of
    # one transition), are stopped
    with replay_in_shares(str(path), 2, RulesConfig(), END, chunk=1) as shared:
        assert next(shared.transitions()) == single[0]
        assert len(multiprocessing.active_children()) == 2  # blocked, not finished
    assert multiprocessing.active_children() == []


def test_a_worker_that_fails_is_reported_with_its_reason(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone.jsonl")
    with (
        pytest.raises(ShareError, match="failed: FileNotFoundError"),
        replay_in_shares(missing, 2, RulesConfig(), END) as shared,
    ):
        list(shared.transitions())
    assert multiprocessing.active_children() == []
