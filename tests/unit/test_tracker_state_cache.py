"""The decoded-state cache in front of the table: hits, bounds, invalidation, and that a tracker
with it stores and publishes exactly what one without it does."""

from __future__ import annotations

import random
from typing import Any

import pytest
from test_tracker_core import (
    EXAMPLES,
    NOW,
    Clock,
    DictStore,
    ListPublisher,
    make_core,
    per_patient,
    records,
    sample_lines,
)
from test_tracker_processing import Store, diagnosis, record, statin

from imnm_common.domain import engine
from imnm_common.domain.config import RulesConfig
from imnm_common.domain.state import PatientState
from imnm_demo.generator import (
    StreamSpec,
    delivered_out_of_order,
    generate_lines,
    with_weight_based_doses,
)
from imnm_tracker.core import TrackerCore
from imnm_tracker.errors import StateRebuildError
from imnm_tracker.metrics import TrackerMetrics
from imnm_tracker.processing import PatientBatch
from imnm_tracker.state_cache import CachedStateStore
from imnm_tracker.stored import decode


def stored_store(*patients: str) -> DictStore:
    store = DictStore()
    for index, patient_id in enumerate(patients):
        store.save(patient_id, index % 3, engine.new_state(patient_id), None)
    return store


def test_a_loaded_state_is_kept_and_handed_out_again() -> None:
    cache = CachedStateStore(stored_store("a"))
    first = cache.load("a", 0)
    assert first is not None and cache.load("a", 0) is first
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.load("nobody", 0) is None and len(cache) == 1


def test_a_saved_state_is_written_through_and_cached() -> None:
    store = stored_store()
    cache = CachedStateStore(store)
    state = engine.new_state("b")
    cache.save("b", 2, state, None)
    assert decode(store.values["b"]).to_bytes() == state.to_bytes()
    assert cache.load("b", 2) is state
    assert cache.load("b", 1) is not state  # asked for another partition: read from the store


def test_the_least_recently_used_state_leaves_first() -> None:
    cache = CachedStateStore(stored_store("a", "b", "c"), max_patients=2)
    a = cache.load("a", 0)
    cache.load("b", 1)
    cache.load("a", 0)  # a is now the most recent
    cache.load("c", 2)
    assert len(cache) == 2
    assert cache.load("a", 0) is a
    cache.load("b", 1)
    assert cache.misses == 4  # a, b, c, then b again after it was evicted


def test_forget_drop_partitions_and_clear() -> None:
    store = stored_store("a", "b", "c")
    cache = CachedStateStore(store)
    for partition, patient_id in enumerate("abc"):
        cache.load(patient_id, partition)
    cache.forget("a")
    assert len(cache) == 2
    cache.drop_partitions([1])
    assert len(cache) == 1
    assert store.dropped == {1}  # the store's unflushed writes of partition 1 go too
    cache.clear()
    assert len(cache) == 0


def test_no_cache_when_the_bound_is_zero() -> None:
    cache = CachedStateStore(stored_store("a"), max_patients=0)
    assert cache.load("a", 0) is not cache.load("a", 0)
    with pytest.raises(ValueError, match="max_patients"):
        CachedStateStore(stored_store(), max_patients=-1)


@pytest.mark.parametrize("batch_size", [1, 50])
async def test_with_and_without_the_cache_the_same_alerts_and_stored_states(
    batch_size: int,
) -> None:
    recs = records(sample_lines())
    outcomes = []
    for cached_patients in (0, 10_000):
        store, publisher, clock = DictStore(), ListPublisher(), Clock(0.0)
        from imnm_tracker.core import TrackerCore

        core = TrackerCore(store, publisher, clock, TrackerMetrics(),
                           cached_patients=cached_patients)
        core.ready = True
        for start in range(0, len(recs), batch_size):
            await core.handle_batch(recs[start:start + batch_size])
        clock.now = NOW
        await core.tick()
        outcomes.append((per_patient(publisher.alerts), dict(store.values)))
        if cached_patients:
            assert core.store.hits > 0
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize(("seed", "weighed"), [(8, False), (11, False), (5, True)])
async def test_years_out_of_order_give_the_same_alerts_and_states_with_and_without_the_cache(
    seed: int, weighed: bool,
) -> None:
    """The same on two-year streams delivered out of order with orders settling after 60 days:
    a worker decoding every state from the table (as after a restart) judges and settles as
    one keeping them in memory. Without the cache it once settled late-stopped orders the
    cached worker kept (the settling memo lived outside the stored state). ``weighed``: with
    body weights (some corrected or withdrawn) and half the glucocorticoid doses in mg/kg."""
    spec = StreamSpec(patients=10, days=730, seed=seed, renew_every_days=60)
    lines = list(generate_lines(spec))
    if weighed:
        lines = with_weight_based_doses(lines, random.Random(seed))
    lines = delivered_out_of_order(lines, random.Random(seed), re_delivered_every=10)
    recs = records([line.encode() for line in lines])
    config = RulesConfig(order_history_days=60, seen_event_ids_kept=256)
    outcomes = []
    for cached_patients in (0, 10_000):
        store, publisher, clock = DictStore(), ListPublisher(), Clock(0.0)
        core = TrackerCore(store, publisher, clock, TrackerMetrics(), config,
                           cached_patients=cached_patients)
        core.ready = True
        for start in range(0, len(recs), 50):
            await core.handle_batch(recs[start:start + 50])
        clock.now = NOW + 3 * 365 * 86_400.0  # after every event
        await core.tick()
        outcomes.append((per_patient(publisher.alerts), dict(store.values)))
    assert sum(map(len, outcomes[0][0].values())) > 30
    assert outcomes[0] == outcomes[1]
    if weighed:
        stored = [decode(value) for value in outcomes[0][1].values()]
        assert sum(len(state.body_weights) for state in stored) > 10
        converted = [v for state in stored for order in state.orders.values()
                     for v in order.versions
                     if v.mg_per_kg_per_day is not None
                     and v.prednisone_equivalent_mg_per_day is not None]
        assert len(converted) > 10


async def test_a_failed_publish_drops_the_changed_cached_states() -> None:
    lines = EXAMPLES.read_bytes().splitlines()
    core, store, publisher, _ = make_core()
    await core.handle_batch(records(lines[:2]))  # MRN-1001 is stored and cached
    assert len(core.store) > 0
    publisher.fail = True
    with pytest.raises(ConnectionError):
        await core.handle_batch(records(lines[2:]))
    publisher.fail = False
    await core.handle_batch(records(lines[2:]))  # redelivered: must see the stored state

    fresh, fresh_store, fresh_publisher, _ = make_core()
    await fresh.handle_batch(records(lines[:2]))
    await fresh.handle_batch(records(lines[2:]))
    assert per_patient(publisher.alerts) == per_patient(fresh_publisher.alerts)
    assert store.values == fresh_store.values


def test_a_state_that_cannot_be_rebuilt_fails_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = PatientBatch(Store().load)
    batch.process(record(statin()))
    real_apply = engine.apply

    def broken(state: PatientState, evt: Any, config: Any = None) -> Any:
        raise RuntimeError("not deterministic")  # fails even for the event that worked

    monkeypatch.setattr(engine, "apply", broken)
    with pytest.raises(StateRebuildError):
        batch.process(record(diagnosis(), offset=1))
    monkeypatch.setattr(engine, "apply", real_apply)
