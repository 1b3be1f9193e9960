"""Small tracker pieces: stored values, the due index, clocks, options, CLI helpers."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from aiokafka.errors import TopicAuthorizationFailedError

from imnm_cli import stream_cmds
from imnm_common.domain.state import PatientState
from imnm_common.service_layer.replay import Replay
from imnm_common.settings import Settings
from imnm_demo.generator import StreamSpec, generate_lines
from imnm_tracker import stored, topics_setup
from imnm_tracker.clock import FileClock, FixedClock, make_clock, parse_instant, wall_clock
from imnm_tracker.due_index import DueEntry, DueIndex
from imnm_tracker.errors import TrackerConfigError
from imnm_tracker.options import TrackerTuning, resolve
from imnm_tracker.topics_setup import changelog_configs
from imnm_tracker.worker import worker_command


# ------------------------------------------------------------------------ stored values
def test_stored_value_round_trip_and_header() -> None:
    state = PatientState(patient_id="MRN-9", clock=12.5, rule_due={"ck_monitoring_overdue": 99.0},
                         judged_under="rules-0123456789ab")
    raw = stored.encode(state, 4, 99.0)
    assert stored.peek(raw) == stored.StoredHeader(4, 99.0, "rules-0123456789ab")
    assert stored.decode(raw) == state
    never_judged = PatientState(patient_id="MRN-9")
    assert stored.peek(stored.encode(never_judged, 0, None)) == stored.StoredHeader(0, None, None)


@pytest.mark.parametrize("raw", [b"", b"{}", b"imnm-state/1 x -\n{}", b"imnm-state/1 1 -",
                                 b"imnm-state/3 1 -\n{}", b"imnm-state/2 1 - rules-1\n{}",
                                 b"imnm-state/4 1 - -\n{}", b"imnm-state/2 1 -"])
def test_foreign_values_are_refused(raw: bytes) -> None:
    with pytest.raises(stored.StoredValueError):
        stored.peek(raw)


@pytest.fixture(scope="module")
def year_of_treatment() -> PatientState:
    """The largest state of a generated year (read only by the tests)."""
    replay = Replay()
    lines = generate_lines(StreamSpec(patients=3, seed=2025))
    for _ in replay.feed_lines(line.encode() for line in lines):
        pass
    return max(replay.states.values(), key=lambda state: len(state.to_bytes()))


def test_stored_values_are_compressed_and_round_trip(year_of_treatment: PatientState) -> None:
    state = year_of_treatment
    plain = state.to_bytes()
    raw = stored.encode(state, 2, 1.0e9)
    assert raw.startswith(f"imnm-state/3 2 1000000000.0 {state.judged_under}\n".encode())
    assert len(raw) < len(plain) / 2  # ids, statuses and dose texts repeat
    assert stored.decode(raw).to_bytes() == plain


def test_values_written_before_compression_are_still_read(
    year_of_treatment: PatientState,
) -> None:
    state = year_of_treatment
    legacy = b"imnm-state/1 5 -\n" + state.to_bytes()  # what the first format stored
    assert stored.peek(legacy) == stored.StoredHeader(5, None)
    assert stored.decode(legacy) == state
    # /2: compressed, no rules fingerprint in the header
    _, _, body = stored.encode(state, 5, 7.0).partition(b"\n")
    unfingerprinted = b"imnm-state/2 5 7.0\n" + body
    assert stored.peek(unfingerprinted) == stored.StoredHeader(5, 7.0, None)
    assert stored.decode(unfingerprinted) == state


def test_a_corrupt_compressed_body_is_a_stored_value_error(
    year_of_treatment: PatientState,
) -> None:
    raw = stored.encode(year_of_treatment, 0, None)
    head, _, body = raw.partition(b"\n")
    with pytest.raises(stored.StoredValueError, match="corrupt imnm-state/3 body"):
        stored.decode(head + b"\n" + body[:4] + b"\xff" * 40)


# ------------------------------------------------------------------------ due index
def test_due_index_pops_in_time_order_and_skips_superseded() -> None:
    index = DueIndex()
    index.update("a", 0, 30.0)
    index.update("b", 1, 10.0)
    index.update("c", 2, 20.0)
    index.update("a", 0, 5.0)  # rescheduled earlier: the 30.0 entry is stale
    index.update("c", 2, None)  # nothing due any more
    assert len(index) == 3
    assert index.next_due() == 5.0
    assert index.pop_due(25.0) == [DueEntry("a", 0, 5.0), DueEntry("b", 1, 10.0)]
    assert index.pop_due(100.0) == []  # a's stale 30.0 is not resurrected
    index.restore([DueEntry("b", 1, 10.0)])
    assert index.pop_due(10.0, limit=5) == [DueEntry("b", 1, 10.0)]


def test_due_index_drops_revoked_partitions_and_rebuilds() -> None:
    index = DueIndex()
    for i in range(10):
        index.update(f"p{i}", i % 2, float(i))
    assert index.drop_partitions([0]) == 5
    assert [e.patient_id for e in index.pop_due(100.0)] == ["p1", "p3", "p5", "p7", "p9"]
    assert not index.owns("p0", 0)
    index.restore([DueEntry("p0", 0, 0.0)])  # not ours any more: ignored
    assert index.pop_due(100.0) == []
    index.rebuild([("x", 3, 7.0), ("y", 3, None)])
    assert len(index) == 2 and index.pop_due(10.0) == [DueEntry("x", 3, 7.0)]


def test_due_index_heap_stays_bounded() -> None:
    index = DueIndex()
    for i in range(5000):
        index.update("same", 0, float(10_000 - i))
    assert len(index._heap) <= 2 * 1 + 1024 + 1


# ------------------------------------------------------------------------ clocks
def test_parse_instant_accepts_epoch_and_rfc3339() -> None:
    assert parse_instant("1735689600") == 1735689600.0
    assert parse_instant(" 2025-01-01T00:00:00Z\n") == 1735689600.0
    with pytest.raises(ValueError, match="offset"):
        parse_instant("2025-01-01T00:00:00")
    with pytest.raises(ValueError):
        parse_instant("tomorrow")


def test_file_clock_follows_the_file_and_survives_garbage(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("100")
    clock = FileClock(path)
    assert clock() == 100.0
    path.write_text("2025-01-01T00:00:00Z")
    assert clock() == 1735689600.0
    path.write_text("")  # a writer caught mid-write
    assert clock() == 1735689600.0


def test_make_clock_choices(tmp_path: Path) -> None:
    assert make_clock() is wall_clock
    fixed = make_clock(fixed_now="2025-01-01T00:00:00Z")
    assert isinstance(fixed, FixedClock) and fixed() == 1735689600.0
    with pytest.raises(TrackerConfigError):
        make_clock(clock_file=str(tmp_path / "missing"))
    with pytest.raises(TrackerConfigError):
        make_clock(clock_file="x", fixed_now="1")


# ------------------------------------------------------------------------ options
def test_options_need_a_broker_and_a_known_store() -> None:
    with pytest.raises(TrackerConfigError, match="IMNM_KAFKA_BOOTSTRAP"):
        resolve(Settings(kafka_bootstrap=""), TrackerTuning())
    with pytest.raises(TrackerConfigError, match="unknown store"):
        resolve(Settings(kafka_bootstrap="h:1"), TrackerTuning(), store="redis://")


def test_options_overrides_win(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="a:1,b:2", tracker_timer_interval_seconds=60)
    options = resolve(settings, TrackerTuning(batch_size=7), timer_interval=0.5,
                      metrics_port=0, app_id="x", fixed_now="100")
    assert options.broker_url == "kafka://a:1,kafka://b:2"
    assert (options.timer_interval, options.batch_size, options.metrics_port) == (0.5, 7, 0)
    assert options.app_id == "x" and options.clock() == 100.0
    assert options.processing_guarantee == "at_least_once"


def test_state_cache_size_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMNM_TRACKER_CACHED_PATIENTS", "0")
    options = resolve(Settings(kafka_bootstrap="h:1"), TrackerTuning(), fixed_now="1")
    assert options.cached_patients == 0
    assert resolve(Settings(kafka_bootstrap="h:1"), TrackerTuning(cached_patients=5),
                   fixed_now="1").cached_patients == 5
    monkeypatch.setenv("IMNM_TRACKER_CACHED_PATIENTS", "-1")
    with pytest.raises(ValueError, match="cached_patients"):
        TrackerTuning()


def test_changelog_segments_roll_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    options = resolve(Settings(kafka_bootstrap="h:1"), TrackerTuning(), fixed_now="1")
    assert changelog_configs(options.changelog_segment_seconds) == {
        "cleanup.policy": "compact", "segment.ms": "600000"}
    monkeypatch.setenv("IMNM_TRACKER_CHANGELOG_SEGMENT_SECONDS", "90.5")
    options = resolve(Settings(kafka_bootstrap="h:1"), TrackerTuning(), fixed_now="1")
    assert changelog_configs(options.changelog_segment_seconds)["segment.ms"] == "90500"
    monkeypatch.setenv("IMNM_TRACKER_CHANGELOG_SEGMENT_SECONDS", "0")
    with pytest.raises(ValueError, match="changelog_segment_seconds"):
        TrackerTuning()


def test_a_changelog_check_the_broker_refuses_only_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def refused(*args: object, **kwargs: object) -> dict[str, str]:
        raise TopicAuthorizationFailedError("not allowed")

    monkeypatch.setattr(topics_setup, "describe_topic_configs", refused)
    asyncio.run(topics_setup._check_changelog_configs("h:1", "c", changelog_configs(600)))
    assert "could not check the configs of state changelog c" in caplog.text


def test_worker_command_is_imnm_tracker() -> None:
    argv = worker_command(python="py", app_id="g", metrics_port=0, extra=["--fixed-now", "1"])
    assert argv == ["py", "-m", "imnm_cli.main", "tracker", "--app-id", "g",
                    "--metrics-port", "0", "--fixed-now", "1"]


# ------------------------------------------------------------------------ CLI helpers
def test_patient_key_explains_unusable_lines() -> None:
    assert stream_cmds.patient_key(b'{"patient_id": "MRN-1", "x": 1}') == b"MRN-1"
    for line, reason in [
        (b"{not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"event_id": "e"}', "no patient_id"),
        (b'{"patient_id": 42}', "no patient_id"),
        (b'{"patient_id": ""}', "no patient_id"),
    ]:
        with pytest.raises(ValueError, match=reason):
            stream_cmds.patient_key(line)


def test_tracker_without_broker_exits_with_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(stream_cmds, "get_settings", lambda: Settings(kafka_bootstrap=""))
    args = argparse.Namespace(
        app_id=None, bootstrap=None, timer_interval=None, store=None, data_dir=None,
        metrics_port=None, clock_file=None, fixed_now=None, processing_guarantee=None,
    )
    assert stream_cmds.run_tracker(args) == stream_cmds.EXIT_USAGE
    assert "no Kafka broker" in capsys.readouterr().err



# ------------------------------------------------------------------------ garbage collection
async def test_the_heap_built_at_start_up_is_frozen_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import gc

    from imnm_tracker.app import TrackerApp
    from imnm_tracker.metrics import TrackerMetrics

    frozen: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    options = resolve(Settings(kafka_bootstrap="localhost:9"), TrackerTuning(),
                      app_id="imnm-test-gc", data_dir=str(tmp_path))
    tracker = TrackerApp(options, 3, TrackerMetrics())  # no broker needed until it starts
    await tracker._on_recovered()
    assert frozen == [1] and tracker.core.ready
    await tracker._on_recovered()  # a rebalance: its dropped states must stay collectable
    assert frozen == [1]


def test_gc_pauses_are_recorded_by_generation_until_undone() -> None:
    import gc

    from imnm_tracker.metrics import TrackerMetrics

    metrics = TrackerMetrics()
    stop = metrics.record_gc_pauses()
    try:
        gc.collect()  # a full pass
        gc.collect(0)
    finally:
        stop()
    recorded = {
        sample.labels["generation"]: sample.value
        for family in metrics.registry.collect() if family.name == "imnm_tracker_gc_pause_seconds"
        for sample in family.samples if sample.name.endswith("_count")
    }
    assert recorded["2"] >= 1 and recorded["0"] >= 1
    gc.collect()
    after = metrics.gc_pause_seconds.labels("2")._sum.get()  # no longer observed
    gc.collect()
    assert metrics.gc_pause_seconds.labels("2")._sum.get() == after


def test_the_worker_runs_faust_with_the_service_gc_thresholds_and_pause_recording(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import gc
    import types

    import faust

    from imnm_common.runtime import SERVICE_GC_THRESHOLDS
    from imnm_tracker import worker

    async def topics_exist(options: object) -> types.SimpleNamespace:
        return types.SimpleNamespace(partitions=3)

    seen: dict[str, object] = {}

    class FaustWorker:  # stands in for faust's: records what the process looks like when run
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def execute_from_commandline(self) -> None:
            seen["thresholds"] = gc.get_threshold()
            seen["callbacks"] = len(gc.callbacks)
            raise SystemExit(0)

    monkeypatch.setattr(worker, "ensure_topics", topics_exist)
    monkeypatch.setattr(faust, "Worker", FaustWorker)
    options = resolve(Settings(kafka_bootstrap="localhost:9"), TrackerTuning(),
                      app_id="imnm-test-gc-wiring", data_dir=str(tmp_path), metrics_port=0)
    before, callbacks = gc.get_threshold(), len(gc.callbacks)
    try:
        gc.set_threshold(700, 10, 10)  # CPython's defaults
        assert worker.run_worker(options) == worker.EXIT_OK
    finally:
        gc.set_threshold(*before)
    assert seen == {"thresholds": SERVICE_GC_THRESHOLDS, "callbacks": callbacks + 1}
    assert len(gc.callbacks) == callbacks  # the recorder is removed when the worker ends
