"""Pipeline benchmarks on the real local broker: throughput vs a raw aiokafka pass-through and a
faust pass-through, event-to-alert latency at fixed offered loads, and one worker vs two.

Each figure is the median of ``runs`` runs; nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import REPO, median
from imnm_common.kafka.local_broker import LocalKafkaBroker
from imnm_common.kafka.topics import create_topics
from imnm_demo.generator import StreamSpec, generate_lines
from imnm_tracker.testing import (
    TrackerCluster,
    WorkerProcess,
    one_more_result_each,
    sample_total,
)

PARTITIONS = 6
# The tracker runs' timer, and how long the published count must stay still to end a run: long
# enough for the tick after the catch-up, which judges every patient at ``now``.
TIMER_SECONDS = 1.0
SETTLE_SECONDS = 2 * TIMER_SECONDS + 1.0
RUN_TIMEOUT_SECONDS = 900.0  # a run that has not processed the stream by then is stuck


async def _produce_all(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = []
        for line in lines:
            key = orjson.loads(line)["patient_id"].encode()
            futures.append(await producer.send(topic, key=key, value=line))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def passthrough(bootstrap: str, lines: list[bytes], tag: str) -> float:
    """The ceiling for a Python consumer: read every message, produce it again, keyed."""
    source, sink = f"bench.pass.{tag}.in", f"bench.pass.{tag}.out"
    await create_topics(bootstrap, [source, sink], PARTITIONS, 1)
    await _produce_all(bootstrap, source, lines)
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"pass-{tag}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_poll_records=1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    seen = 0
    started: float | None = None
    try:
        while seen < len(lines):
            batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            futures = []
            for records in batch.values():
                for record in records:
                    started = started or time.perf_counter()
                    futures.append(await producer.send(sink, key=record.key, value=record.value))
            seen += len(futures)
            await asyncio.gather(*futures)
            if futures:
                await consumer.commit()
        return len(lines) / (time.perf_counter() - (started or time.perf_counter()))
    finally:
        await consumer.stop()
        await producer.stop()


async def faust_passthrough(bootstrap: str, lines: list[bytes], workdir: Path, tag: str) -> float:
    """The ceiling for a faust worker (bench/faust_passthrough.py): the tracker's faust settings,
    batching and batched produce, without the tracker's work. Events/s from its first batch to
    its last batch acked, as the child measures them."""
    cluster = TrackerCluster(bootstrap, f"bench.fpass.{tag}", workdir / tag,
                             partitions=PARTITIONS, **PRODUCT_DEFAULTS)
    sink, result = f"bench.fpass.{tag}.out", cluster.workdir / "result.json"
    await create_topics(bootstrap, [cluster.topics.events, sink], PARTITIONS, 1)
    await _produce_all(bootstrap, cluster.topics.events, lines)
    log_path = cluster.workdir / "faust-passthrough.log"
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.faust_passthrough", cluster.app_id,
             str(cluster.workdir / "data"), sink, str(len(lines)), str(result)],
            env=cluster.env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while not result.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the faust pass-through did not finish:\n{tail}")
            await asyncio.sleep(POLL_SECONDS)
        done = orjson.loads(result.read_bytes())
        written = await _records_in(bootstrap, sink)
        if done["events"] != len(lines) or written != len(lines):
            raise RuntimeError(f"the faust pass-through relayed {done['events']} events and "
                               f"wrote {written} records, for {len(lines)}")
        return float(len(lines) / done["seconds"])
    finally:
        WorkerProcess("faust-passthrough", child, 0, log_path).stop()


@contextlib.asynccontextmanager
async def _reader(bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer outside any group, for looking at a topic's offsets and records."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _records_in(bootstrap: str, topic: str) -> int:
    async with _reader(bootstrap) as consumer:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum((await consumer.end_offsets(partitions)).values())


@dataclass(frozen=True)
class TrackerRun:
    """One throughput run. ``in_batches_share``: the workers' time inside ``handle_batch`` (parse,
    rules, state encoding, publishing and awaiting the broker's acks) over their wall time;
    the rest goes to faust's and aiokafka's consume, changelog and produce machinery."""

    events_per_second: float
    batches: int
    mean_batch_events: float
    in_batches_share: float
    gc_share: float  # the workers' garbage-collector pauses over their wall time


async def tracker_throughput(bootstrap: str, lines: list[bytes], workdir: Path, tag: str,
                             workers: int, now: str, *, rules_config: str | None = None
                             ) -> TrackerRun:
    run, _ = await _tracker_run(bootstrap, lines, workdir, tag, workers, now,
                                rules_config=rules_config)
    return run


async def tracker_long_term(bootstrap: str, lines: list[bytes], runs: int, workdir: Path,
                            now: str, unsettled_days: float, tag: str) -> dict[str, Any]:
    """One worker on a long-term stream, old orders settled (the product) or kept, in
    alternating runs: every table write copies the whole state."""
    kept_rules = workdir / f"rules-keep-orders-{tag}.json"
    kept_rules.write_text(orjson.dumps({"order_history_days": unsettled_days}).decode())
    settled: list[TrackerRun] = []
    kept: list[TrackerRun] = []
    for r in range(runs):
        settled.append(await tracker_throughput(bootstrap, lines, workdir, f"{tag}s{r}", 1, now))
        kept.append(await tracker_throughput(bootstrap, lines, workdir, f"{tag}k{r}", 1, now,
                                             rules_config=str(kept_rules)))
    return {
        "events": len(lines),
        "settled_events_per_second": round(median([r.events_per_second for r in settled])),
        "kept_events_per_second": round(median([r.events_per_second for r in kept])),
        "raw": {"settled": [asdict(r) for r in settled], "kept": [asdict(r) for r in kept]},
    }


async def tracker_restart(bootstrap: str, lines: list[bytes], workdir: Path, tag: str,
                          now: str, store: str, *, compacted: bool = False) -> dict[str, float]:
    """Process the stream with one worker on ``store``, stop it gracefully, start it again:
    seconds until its table has recovered (memory: the changelog is read again; rocksdb: from
    local files and offsets), and the changelog records there were to read.

    ``compacted``: the steady state of a worker that has run for a while. The changelog rolls
    its segments every ``COMPACTED_SEGMENT_SECONDS`` (the product rolls every 10 minutes, longer
    than a run), one more result per patient follows the stream once its last segment is due to
    roll, and the restart waits until the log cleaner has compacted what it can."""
    run, restart = await _tracker_run(bootstrap, lines, workdir, tag, 1, now, store=store,
                                      restart=True, compacted=compacted)
    assert restart is not None
    return {"events_per_second": run.events_per_second,
            "restart_ready_seconds": restart["ready_seconds"],
            "worker_rss_mib": restart["rss_mib"], "patients": restart["patients"],
            "changelog_records": restart["changelog_records"],
            "changelog_writes": restart["changelog_writes"]}


COMPACTED_SEGMENT_SECONDS = 5.0
CLEANER_QUIET_SECONDS = 20.0  # the broker's log cleaner looks for work every 15 s


async def _compacted(cluster: TrackerCluster, worker: WorkerProcess, lines: list[bytes]) -> None:
    """Two more writes per patient, each in a segment of its own, then wait for the log cleaner.
    The cleaner never touches the newest (active) segment, and removes a record only when a
    later one of its key lies in the older segments it cleans: so the stream's writes are
    compacted away against the first extra round, and the second round makes the first one's
    segment cleanable. (With one round, a stream consumed in one batch per patient left nothing
    to remove.)"""
    def consumed_at_least(total: int) -> bool:
        return worker.metric("imnm_tracker_events_consumed_total") >= total

    consumed = len(lines)
    for tag in ("one-more", "two-more"):
        await asyncio.sleep(COMPACTED_SEGMENT_SECONDS + 0.5)  # the segment rolls on this write
        more = one_more_result_each(lines, tag)
        await cluster.publish_lines(more)
        consumed += len(more)
        await worker.wait_for(functools.partial(consumed_at_least, consumed),
                              "the extra results consumed", timeout=300)
    await cluster.wait_caught_up(timeout=300)
    records, _ = await cluster.changelog_records()
    quiet_since = time.monotonic()
    deadline = quiet_since + 300
    while time.monotonic() - quiet_since < CLEANER_QUIET_SECONDS and time.monotonic() < deadline:
        await asyncio.sleep(2)
        now_records, _ = await cluster.changelog_records()
        if now_records < records:
            records, quiet_since = now_records, time.monotonic()


def _rss_mib(pid: int) -> float:
    """Resident set size of a running process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


async def _tracker_run(bootstrap: str, lines: list[bytes], workdir: Path, tag: str,
                       workers: int, now: str, *, store: str = "memory://",
                       restart: bool = False, compacted: bool = False,
                       rules_config: str | None = None
                       ) -> tuple[TrackerRun, dict[str, float] | None]:
    # The stream is a backlog from before ``now``: the workers catch up on its event times, and
    # the timer then judges every patient at ``now`` (what a replay's finish does), within the
    # measured run.
    cluster = TrackerCluster(bootstrap, f"bench.trk.{tag}", workdir / tag,
                             partitions=PARTITIONS, timer_interval=TIMER_SECONDS,
                             rules_config=rules_config,
                             changelog_segment_seconds=(
                                 COMPACTED_SEGMENT_SECONDS if compacted else None),
                             **PRODUCT_DEFAULTS)
    try:
        await create_topics(bootstrap, cluster.topics.all(), PARTITIONS, 1)
        await _produce_all(bootstrap, cluster.topics.events, lines)
        cluster.set_clock(now)
        started = [cluster.start_worker(f"w{i}", "--store", store) for i in range(workers)]
        run = await _processing_rate(cluster, started, len(lines))
        if not restart:
            return run, None
        worker = started[0]
        if compacted:
            await _compacted(cluster, worker, lines)
        tracked = worker.metric("imnm_tracker_tracked_patients")
        rss_mib = _rss_mib(worker.process.pid)
        if worker.stop() != 0:
            raise RuntimeError("the tracker did not stop cleanly")
        records, writes = await cluster.changelog_records()
        again = cluster.start_worker(worker.name, "--store", store)  # same data dir
        ready = await again.wait_ready(timeout=600)
        if again.metric("imnm_tracker_tracked_patients") != tracked:
            raise RuntimeError("the restarted tracker does not track the same patients")
        return run, {"ready_seconds": ready, "rss_mib": rss_mib, "patients": tracked,
                     "changelog_records": records, "changelog_writes": writes}
    finally:
        cluster.close()


async def _processing_rate(cluster: TrackerCluster, workers: list[WorkerProcess],
                           total: int) -> TrackerRun:
    """Events/s from the first event consumed until the last alert transition is on the alerts
    topic. Only the metrics are polled during the run (a consumer reading along would take CPU
    from the tracker on a small machine). The tracker counts a batch's events before it publishes
    the batch's transitions, and the transitions once the broker has them: the run is over when
    every event is consumed and the published count has been still for ``SETTLE_SECONDS`` (long
    enough for the timer's tick after the catch-up, which judges everybody at ``now``). The end
    is then the broker timestamp of the newest transition, or, if later, the last poll that still
    saw events unconsumed. The start is the last poll that saw nothing consumed. Both are known to
    within one poll. A poll's time is taken when its scrape returns, so a tiny stream can be
    consumed, and its alerts published, while the scrape that still reports nothing consumed is
    on its way back: then no observation lies after the start but before the end, and the end is
    the first poll that saw everything consumed (an upper bound, within one poll), never a
    run of 0 s."""
    first: float | None = None
    idle = time.time()  # the last poll at which nothing was consumed yet
    gc_before = 0.0  # the workers' collector time at that poll
    pending = idle  # the last poll at which some events were not consumed yet
    complete: float | None = None  # the first poll at which every event was consumed
    settled: tuple[float, float] | None = None  # (published count, since when)
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        consumed = published = batch_seconds = batches = gc_seconds = 0.0
        unknown = False
        for worker in workers:
            try:
                samples = worker.metrics()  # one scrape: each costs the worker CPU and the GIL
            except OSError as error:
                if _refused(error):
                    continue  # its metrics server, started first, is not up: nothing consumed
                # Too busy to answer in time: this poll knows nothing. Counted as "nothing
                # consumed" it moved the start past a tiny stream's last alert (a run of 0 s:
                # ZeroDivisionError in the rocksdb restart test, once).
                unknown = True
                break
            consumed += sample_total(samples, "imnm_tracker_events_consumed_total")
            published += sample_total(samples, "imnm_tracker_alert_transitions_total")
            batch_seconds += sample_total(samples, "imnm_tracker_batch_seconds_sum")
            batches += sample_total(samples, "imnm_tracker_batch_seconds_count")
            gc_seconds += sample_total(samples, "imnm_tracker_gc_pause_seconds_sum")
        if unknown:
            await asyncio.sleep(POLL_SECONDS)
            continue
        now = time.time()
        if not consumed:
            idle = now
            gc_before = gc_seconds
        elif first is None:
            first = idle
        if consumed < total:
            pending = now
        else:
            if complete is None:
                complete = now
            if settled is None or settled[0] != published:
                settled = (published, now)
            elif now - settled[1] >= SETTLE_SECONDS:
                assert first is not None and complete is not None
                last_alert = await _newest_timestamp(cluster.bootstrap, [
                    TopicPartition(cluster.topics.alerts, p) for p in range(cluster.partitions)
                ])
                seconds = max(last_alert, pending) - first
                if seconds <= 0:
                    seconds = complete - first
                return TrackerRun(
                    events_per_second=total / seconds,
                    batches=int(batches),
                    mean_batch_events=round(total / max(batches, 1), 1),
                    # the last batch's publish and saves can end after the run's end: an
                    # upper bound, by at most one batch
                    in_batches_share=round(batch_seconds / (seconds * len(workers)), 3),
                    gc_share=round((gc_seconds - gc_before) / (seconds * len(workers)), 3),
                )
        await asyncio.sleep(POLL_SECONDS)
    raise RuntimeError(f"the tracker did not process the stream within {RUN_TIMEOUT_SECONDS:g} s")


# How often the run polls the workers' metrics: the start is known to within this (< 0.5% of a
# run), and a worker serving 20 scrapes/s spent ~6% of its samples in its HTTP thread (py-spy).
POLL_SECONDS = 0.25


def _refused(error: OSError) -> bool:
    """A connection refused (urllib wraps it in URLError): nothing listens on the port."""
    reason = getattr(error, "reason", error)
    return isinstance(reason, ConnectionRefusedError)


async def _newest_timestamp(bootstrap: str, partitions: list[TopicPartition]) -> float:
    """The latest record timestamp (seconds, the producer's clock: this host) among the last
    record of each partition."""
    async with _reader(bootstrap) as consumer:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        newest = 0.0
        for tp, end in ends.items():
            if end == 0:
                continue
            consumer.seek(tp, end - 1)
            records = await consumer.getmany(tp, timeout_ms=5000)
            for record in records.get(tp, []):
                newest = max(newest, record.timestamp / 1000.0)
        return newest


# The tracker as shipped: no test overrides of its batch window or commit interval.
PRODUCT_DEFAULTS: dict[str, Any] = {"batch_window": None, "commit_interval": None}
LATENCY_PATIENTS = [f"LAT-{i:05d}" for i in range(1000)]


async def latency(bootstrap: str, workdir: Path, rate: int, seconds: float,
                  tag: str) -> dict[str, Any]:
    """Offered load of CK results with statin-order probes; probe -> statin alert latency."""
    cluster = TrackerCluster(bootstrap, f"bench.lat.{tag}", workdir / tag,
                             partitions=PARTITIONS, timer_interval=1.0, **PRODUCT_DEFAULTS)
    try:
        await create_topics(bootstrap, cluster.topics.all(), PARTITIONS, 1)
        cluster.set_clock("2100-01-01T00:00:00Z")
        worker = cluster.start_worker()
        seed = [orjson.dumps({"event_id": f"{p}-dx", "patient_id": p, "event_type": "diagnosis",
                              "occurred_at": "2026-01-01T00:00:00Z", "condition": "IMNM"})
                for p in LATENCY_PATIENTS]
        await _produce_all(bootstrap, cluster.topics.events, seed)
        await worker.wait_for(
            lambda: worker.metric("imnm_tracker_events_consumed_total") >= len(seed),
            "seed events", 120)
        return await _offer_load(bootstrap, cluster.topics.events, cluster.topics.alerts, rate,
                                 seconds, tag)
    finally:
        cluster.close()


async def relay_latency(bootstrap: str, rate: int, seconds: float, tag: str) -> dict[str, Any]:
    """The floor for a Python consumer: the same load through a raw aiokafka consumer that
    parses each event and, for a probe, produces an alert naming it (no state, no rules)."""
    events, alerts = f"bench.relay.{tag}.events", f"bench.relay.{tag}.alerts"
    await create_topics(bootstrap, [events, alerts], PARTITIONS, 1)
    consumer = AIOKafkaConsumer(events, bootstrap_servers=bootstrap, group_id=f"relay.{tag}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()

    async def relay() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            futures = []
            for records in batch.values():
                for record in records:
                    event = orjson.loads(record.value)
                    if event["event_type"] == "medication_order":
                        futures.append(await producer.send(alerts, key=record.key, value=(
                            orjson.dumps({"evidence": [event["event_id"]]}))))
            for future in futures:
                await future

    relaying = asyncio.create_task(relay())
    try:
        await asyncio.sleep(1.0)  # assignment settles
        return await _offer_load(bootstrap, events, alerts, rate, seconds, tag)
    finally:
        relaying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relaying
        await consumer.stop()
        await producer.stop()


async def _offer_load(bootstrap: str, events_topic: str, alerts_topic: str, rate: int,
                      seconds: float, tag: str) -> dict[str, Any]:
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    consumer = AIOKafkaConsumer(alerts_topic, bootstrap_servers=bootstrap,
                                group_id=None, auto_offset_reset="latest")
    await consumer.start()
    await asyncio.sleep(1.0)  # assignment settles before the first probe

    async def collect() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    alert = orjson.loads(record.value)
                    for event_id in alert["evidence"]:
                        if event_id in sent and event_id not in received:
                            received[event_id] = now

    collector = asyncio.create_task(collect())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        rng = random.Random(rate)
        total = int(rate * seconds)
        started = time.perf_counter()
        for n in range(total):
            target = started + n / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            patient = rng.choice(LATENCY_PATIENTS)
            event_id = f"{tag}-{n}"
            event: dict[str, Any]
            if n % 20 == 0:
                event = {"event_id": event_id, "patient_id": patient,
                         "event_type": "medication_order", "occurred_at": "2026-06-01T00:00:00Z",
                         "order_id": f"{tag}-ord-{n}", "status": "active",
                         "medication": {"rxnorm": "83367", "name": "atorvastatin 20 mg"}}
                sent[event_id] = time.perf_counter()
            else:
                event = {"event_id": event_id, "patient_id": patient,
                         "event_type": "lab_result", "occurred_at": "2026-06-01T00:00:00Z",
                         "loinc": "2157-6", "value": rng.randint(100, 3000), "unit": "U/L"}
            await producer.send(events_topic, key=patient.encode(), value=orjson.dumps(event))
        achieved = total / (time.perf_counter() - started)
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        await producer.stop()
        await consumer.stop()
    waits = sorted((received[e] - sent[e]) * 1000 for e in received)
    q = statistics.quantiles(waits, n=100) if len(waits) >= 2 else [float("nan")] * 99
    return {"offered_per_second": rate, "achieved_per_second": round(achieved),
            "probes": len(sent), "answered": len(received),
            "p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "p99_ms": round(q[98], 1)}


def _median_load(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: median([s[key] for s in samples]) if key.endswith(("_ms", "_second"))
            else samples[-1][key] for key in samples[0]}


# (store, changelog compacted first) per restart measurement
RESTARTS = {"memory://": ("memory://", False), "memory://, compacted": ("memory://", True),
            "rocksdb://": ("rocksdb://", False)}


def restart_measurements(bootstrap: str, lines: list[bytes], runs: int, workdir: Path,
                         now: str) -> dict[str, dict[str, Any]]:
    measured: dict[str, dict[str, Any]] = {}
    for name, (store, compacted) in RESTARTS.items():
        runs_ = [asyncio.run(tracker_restart(bootstrap, lines, workdir,
                                             f"re{store[:4]}{'c' if compacted else ''}{r}",
                                             now, store, compacted=compacted))
                 for r in range(runs)]
        measured[name] = {
            "ready_seconds": median([r["restart_ready_seconds"] for r in runs_]),
            "events_per_second": round(median([r["events_per_second"] for r in runs_])),
            # the whole process (Python, faust, aiokafka included), not only the states
            "worker_rss_mib": round(median([r["worker_rss_mib"] for r in runs_]), 1),
            "patients": runs_[0]["patients"],
            "changelog_records": round(median([r["changelog_records"] for r in runs_])),
            "changelog_writes": round(median([r["changelog_writes"] for r in runs_])),
            "raw": runs_,
        }
    return measured


def restart_table(restart: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (f"tracker on {name}: throughput; ready after a graceful restart; changelog records "
         "to read (of writes); worker RSS",
         f"{m['events_per_second']:,} events/s; {m['ready_seconds']:.1f} s; "
         f"{m['changelog_records']:,} ({m['changelog_writes']:,}); "
         f"{m['worker_rss_mib']} MiB with {m['patients']:,.0f} patients")
        for name, m in restart.items()
    ]


def restart_benchmark(patients: int, runs: int, workdir: Path) -> dict[str, Any]:
    """The restart measurements alone (``--only restart``), on the pipeline's stream."""
    lines = [line.encode() for line in generate_lines(StreamSpec(patients=patients, seed=2025))]
    with LocalKafkaBroker() as broker:
        restart = restart_measurements(broker.bootstrap, lines, runs, workdir,
                                       "2026-01-01T00:00:00Z")
    return {"events": len(lines), "runs": runs, "restart": restart,
            "table": [(f"restart ({len(lines):,} events, median of {runs})", ""),
                      *restart_table(restart)]}


def throughput_measurements(bootstrap: str, lines: list[bytes], runs: int, workdir: Path,
                            now: str) -> dict[str, Any]:
    """The raw pass-through (the ceiling), the faust pass-through (the ceiling for a faust
    worker), then one worker and two workers, ``runs`` each."""
    ceiling = [asyncio.run(passthrough(bootstrap, lines, f"p{r}")) for r in range(runs)]
    faust_ceiling = [asyncio.run(faust_passthrough(bootstrap, lines, workdir, f"f{r}"))
                     for r in range(runs)]
    one_runs = [asyncio.run(tracker_throughput(bootstrap, lines, workdir, f"one{r}", 1, now))
                for r in range(runs)]
    two_runs = [asyncio.run(tracker_throughput(bootstrap, lines, workdir, f"two{r}", 2, now))
                for r in range(runs)]
    one = [run.events_per_second for run in one_runs]
    two = [run.events_per_second for run in two_runs]
    return {
        "passthrough_events_per_second": round(median(ceiling)),
        "faust_passthrough_events_per_second": round(median(faust_ceiling)),
        "ratio_faust_passthrough_to_passthrough": round(median(faust_ceiling) / median(ceiling), 3),
        "ratio_tracker_to_faust_passthrough": round(median(one) / median(faust_ceiling), 3),
        "tracker_one_worker_events_per_second": round(median(one)),
        "tracker_two_workers_events_per_second": round(median(two)),
        "ratio_tracker_to_passthrough": round(median(one) / median(ceiling), 3),
        "tracker_one_worker_in_batches_share": median([r.in_batches_share for r in one_runs]),
        "tracker_one_worker_mean_batch_events": median([r.mean_batch_events for r in one_runs]),
        "tracker_one_worker_gc_share": median([r.gc_share for r in one_runs]),
        "raw": {"passthrough": ceiling, "faust_passthrough": faust_ceiling,
                "one": [asdict(run) for run in one_runs],
                "two": [asdict(run) for run in two_runs]},
    }


def throughput_table(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("raw aiokafka pass-through (ceiling)",
         f"{result['passthrough_events_per_second']:,} events/s"),
        ("faust pass-through (the tracker's faust, no tracker work)",
         f"{result['faust_passthrough_events_per_second']:,} events/s"),
        ("tracker, 1 worker", f"{result['tracker_one_worker_events_per_second']:,} events/s"),
        ("tracker, 2 workers", f"{result['tracker_two_workers_events_per_second']:,} events/s"),
        ("ratio tracker/ceiling", f"{result['ratio_tracker_to_passthrough']:.3f}"),
        ("ratio faust pass-through/ceiling; tracker/faust pass-through",
         f"{result['ratio_faust_passthrough_to_passthrough']:.3f}; "
         f"{result['ratio_tracker_to_faust_passthrough']:.3f}"),
        ("1 worker: time in handle_batch; mean batch",
         f"{result['tracker_one_worker_in_batches_share']:.0%} of wall time; "
         f"{result['tracker_one_worker_mean_batch_events']:,} events"),
        ("1 worker: garbage-collector pauses",
         f"{result['tracker_one_worker_gc_share']:.1%} of wall time"),
    ]


LATENCY_RATES = (200, 1000, 5000)


def latency_measurements(bootstrap: str, runs: int, workdir: Path,
                         rates: tuple[int, ...] = LATENCY_RATES,
                         seconds: float = 10.0) -> dict[str, Any]:
    """Each offered load through the tracker, then through the raw relay (the floor)."""
    loads = []
    floors = []
    for rate in rates:
        samples = [asyncio.run(latency(bootstrap, workdir, rate, seconds, f"l{rate}r{r}"))
                   for r in range(runs)]
        loads.append(_median_load(samples))
        floors.append(_median_load([
            asyncio.run(relay_latency(bootstrap, rate, seconds, f"f{rate}r{r}"))
            for r in range(runs)
        ]))
    return {"latency": loads, "latency_raw_relay": floors}


def latency_table(result: dict[str, Any]) -> list[tuple[str, str]]:
    table = []
    for load, floor in zip(result["latency"], result["latency_raw_relay"], strict=True):
        table.append((f"latency at {load['offered_per_second']:,}/s offered "
                      f"({load['achieved_per_second']:,}/s sent)",
                      f"p50 {load['p50_ms']} ms, p95 {load['p95_ms']} ms, "
                      f"p99 {load['p99_ms']} ms ({load['answered']}/{load['probes']} probes)"))
        table.append(("  raw aiokafka relay, same load (floor)",
                      f"p50 {floor['p50_ms']} ms, p95 {floor['p95_ms']} ms, "
                      f"p99 {floor['p99_ms']} ms ({floor['answered']}/{floor['probes']} probes)"))
    return table


def throughput_benchmark(patients: int, runs: int, workdir: Path) -> dict[str, Any]:
    """The throughput measurements alone (``--only throughput``), on the pipeline's stream."""
    lines = [line.encode() for line in generate_lines(StreamSpec(patients=patients, seed=2025))]
    with LocalKafkaBroker() as broker:
        result = throughput_measurements(broker.bootstrap, lines, runs, workdir,
                                         "2026-01-01T00:00:00Z")
    result.update(events=len(lines), runs=runs)
    result["table"] = [(f"throughput ({len(lines):,} events, median of {runs})", ""),
                       *throughput_table(result)]
    return result


def latency_benchmark(runs: int, workdir: Path) -> dict[str, Any]:
    """The latency measurements alone (``--only latency``)."""
    with LocalKafkaBroker() as broker:
        result = latency_measurements(broker.bootstrap, runs, workdir)
    result["runs"] = runs
    result["table"] = [(f"latency (median of {runs})", ""), *latency_table(result)]
    return result


def pipeline_benchmark(patients: int, runs: int, workdir: Path) -> dict[str, Any]:
    lines = [line.encode() for line in generate_lines(StreamSpec(patients=patients, seed=2025))]
    now = "2026-01-01T00:00:00Z"
    with LocalKafkaBroker() as broker:
        bootstrap = broker.bootstrap
        throughput = throughput_measurements(bootstrap, lines, runs, workdir, now)
        restart = restart_measurements(bootstrap, lines, runs, workdir, now)
        latencies = latency_measurements(bootstrap, runs, workdir)
    result: dict[str, Any] = {"events": len(lines), **throughput, **latencies,
                              "restart": restart, "runs": runs}
    result["table"] = [
        (f"pipeline ({len(lines):,} events, median of {runs})", ""),
        *throughput_table(result),
        *restart_table(restart),
        *latency_table(result),
    ]
    return result
