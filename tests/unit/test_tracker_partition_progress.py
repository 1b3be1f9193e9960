"""PartitionProgress: which source partitions are catching up, and up to which event time."""

from __future__ import annotations

from imnm_tracker.catch_up import (
    CATCH_UP_STALL_SECONDS,
    NOTHING_YET,
    PartitionProgress,
    judged_up_to,
    tick_horizon,
)


def _progress(ends: dict[int, int | None]) -> tuple[PartitionProgress, list[float]]:
    seconds = [100.0]
    return PartitionProgress(ends.get, lambda: seconds[0]), seconds


def test_a_partition_is_behind_until_its_end_is_processed() -> None:
    ends: dict[int, int | None] = {0: 10, 1: 5}
    progress, _ = _progress(ends)
    progress.processed(0, 3, 1_000.0)
    progress.processed(0, 4, 900.0)  # a late event: the newest time stays
    progress.processed(1, 4, 2_000.0)  # the last message of partition 1
    assert progress.catching_up() == {0: 1_000.0}
    progress.processed(0, 9, 1_500.0)
    assert progress.catching_up() == {}


def test_a_dead_lettered_message_moves_the_offset_but_gives_no_time() -> None:
    progress, _ = _progress({0: 10})
    progress.processed(0, 0, None)
    assert progress.catching_up() == {0: NOTHING_YET}


def test_an_unknown_end_is_not_a_backlog_and_no_highwater_means_never() -> None:
    progress, _ = _progress({0: None})
    progress.processed(0, 0, 5.0)
    assert progress.catching_up() == {}
    never = PartitionProgress(None)
    never.recovered({0, 1})
    assert never.catching_up() == {}


def test_a_recovered_partition_waits_for_its_first_batch_unless_empty() -> None:
    progress, seconds = _progress({0: 7, 1: 0, 2: None})
    progress.recovered({0, 1, 2})
    assert progress.catching_up() == {0: NOTHING_YET, 2: NOTHING_YET}
    progress.processed(0, 6, 50.0)  # partition 0's first batch reached its end
    assert progress.catching_up() == {2: NOTHING_YET}
    seconds[0] += CATCH_UP_STALL_SECONDS + 1  # nothing ever came for partition 2
    assert progress.catching_up() == {}


def test_a_partition_without_progress_counts_as_caught_up() -> None:
    progress, seconds = _progress({0: 11})  # a transaction marker after the last message
    progress.processed(0, 9, 5.0)
    assert progress.catching_up() == {0: 5.0}
    seconds[0] += CATCH_UP_STALL_SECONDS + 1
    assert progress.catching_up() == {}


def test_revoked_and_no_longer_owned_partitions_are_forgotten() -> None:
    progress, _ = _progress({0: 10, 1: 10, 2: 10})
    for partition in (0, 1, 2):
        progress.processed(partition, 0, 1.0)
    progress.forget([0])
    progress.recovered({1})  # a rebalance left this worker partition 1 only
    assert progress.catching_up() == {1: 1.0}


def test_the_tick_looks_past_event_times_only_if_some_partition_is_not_behind() -> None:
    assert tick_horizon(100.0, {0: 10.0, 1: 20.0}, {0, 1}) == 20.0
    assert tick_horizon(100.0, {0: 10.0}, {0, 1}) == 100.0
    assert tick_horizon(100.0, {}, {0, 1}) == 100.0
    assert tick_horizon(5.0, {0: 10.0}, {0}) == 5.0


def test_a_patient_is_judged_to_now_or_up_to_its_partitions_event_time_exclusive() -> None:
    assert judged_up_to(100.0, None) == (100.0, True)  # not catching up
    assert judged_up_to(100.0, 40.0) == (40.0, False)  # an event of 40.0 may still be coming
    assert judged_up_to(100.0, 120.0) == (100.0, True)  # events ahead of the clock
    assert judged_up_to(100.0, NOTHING_YET) == (NOTHING_YET, False)  # nothing at all
