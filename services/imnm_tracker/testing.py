"""Tracker workers as child processes on a real broker, for integration tests and smoke checks.

A :class:`TrackerCluster` owns one set of topics, one consumer group (app id), one clock file
and the workers it starts (``imnm tracker`` processes that can be stopped or SIGKILLed).
Workers read "now" from the clock file, which starts at the epoch (before every event).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from aiokafka.structs import ConsumerRecord, RecordMetadata
from prometheus_client.parser import text_string_to_metric_families

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.domain.state import PatientState
from imnm_common.service_layer.replay import Replay
from imnm_common.settings import TopicNames
from imnm_tracker import stored
from imnm_tracker.clock import parse_instant
from imnm_tracker.topics_setup import changelog_topic


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def imnm_executable() -> list[str]:
    """The ``imnm`` script of this environment (so ``pgrep -f "imnm tracker"`` finds workers)."""
    script = Path(sys.executable).with_name("imnm")
    if script.exists():
        return [str(script)]
    found = shutil.which("imnm")
    return [found] if found else [sys.executable, "-m", "imnm_cli.main"]


def sample_total(samples: dict[str, float], name: str) -> float:
    """One sample of :meth:`WorkerProcess.metrics`, or the sum of a labelled family's samples."""
    if name in samples:
        return samples[name]
    return sum(v for k, v in samples.items() if k.startswith(name + "{"))


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    metrics_port: int
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def metrics(self) -> dict[str, float]:
        """Every sample as ``name{label="v",...}`` -> value (no ``_created`` samples)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def metric(self, name: str) -> float:
        """One sample, or the sum of a family's samples (``imnm_tracker_events_rejected_total``)."""
        return sample_total(self.metrics(), name)

    async def wait_for(
        self, check: Callable[[], bool], what: str, timeout: float = 60.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(
                    f"worker {self.name} exited ({self.process.returncode}) waiting for {what}"
                    f":\n{self.log_tail()}"
                )
            try:
                if check():
                    return
            except OSError:
                pass  # metrics endpoint not up yet
            await asyncio.sleep(0.2)
        raise AssertionError(f"worker {self.name}: no {what} within {timeout} s:\n"
                             f"{self.log_tail()}")

    async def wait_ready(self, timeout: float = 60.0, recoveries: int = 1) -> float:
        """Wait for the table to have recovered ``recoveries`` times; seconds since start."""
        await self.wait_for(
            lambda: self.metric("imnm_tracker_recoveries_total") >= recoveries,
            f"recovery #{recoveries}", timeout,
        )
        return time.monotonic() - self.started_at

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no leaving the group."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait (graceful: commits and leaves the consumer group)."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class TrackerCluster:
    def __init__(
        self,
        bootstrap: str,
        name: str,
        workdir: Path,
        *,
        partitions: int = 3,
        timer_interval: float = 0.3,
        session_timeout: float = 6.0,
        batch_window: float | None = 0.1,  # None: the product's default (benchmarks)
        commit_interval: float | None = 0.5,
        rules_config: str | None = None,  # a rules YAML/JSON file for every worker
        changelog_segment_seconds: float | None = None,  # None: the product's default
    ) -> None:
        self.bootstrap = bootstrap
        self.rules_config = rules_config
        self.changelog_segment_seconds = changelog_segment_seconds
        self.batch_window = batch_window
        self.commit_interval = commit_interval
        self.name = name
        self.workdir = workdir
        self.partitions = partitions
        self.timer_interval = timer_interval
        self.session_timeout = session_timeout
        self.app_id = f"{name}.tracker"
        self.topics = TopicNames(
            events=f"{name}.events",
            alerts=f"{name}.alerts",
            alert_actions=f"{name}.alert-actions",
            deadletter=f"{name}.deadletter",
            raw_hl7v2=f"{name}.raw-hl7v2",
            raw_fhir=f"{name}.raw-fhir",
        )
        self.clock_path = workdir / "clock"
        workdir.mkdir(parents=True, exist_ok=True)
        self.set_clock(0)
        self.workers: list[WorkerProcess] = []

    # ------------------------------------------------------------------ environment
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMNM_")}
        env.update({
            "IMNM_KAFKA_BOOTSTRAP": self.bootstrap,
            "IMNM_TOPIC_PARTITIONS": str(self.partitions),
            "IMNM_TOPIC_EVENTS": self.topics.events,
            "IMNM_TOPIC_ALERTS": self.topics.alerts,
            "IMNM_TOPIC_DEADLETTER": self.topics.deadletter,
            "IMNM_TOPIC_ALERT_ACTIONS": self.topics.alert_actions,
            "IMNM_TOPIC_RAW_HL7V2": self.topics.raw_hl7v2,
            "IMNM_TOPIC_RAW_FHIR": self.topics.raw_fhir,
            "IMNM_TRACKER_SESSION_TIMEOUT_SECONDS": str(self.session_timeout),
            "IMNM_LOG_LEVEL": "INFO",
        })
        if self.batch_window is not None:
            env["IMNM_TRACKER_BATCH_WINDOW_SECONDS"] = str(self.batch_window)
        if self.commit_interval is not None:
            env["IMNM_TRACKER_COMMIT_INTERVAL_SECONDS"] = str(self.commit_interval)
        if self.rules_config is not None:
            env["IMNM_RULES_CONFIG"] = self.rules_config
        if self.changelog_segment_seconds is not None:
            env["IMNM_TRACKER_CHANGELOG_SEGMENT_SECONDS"] = str(self.changelog_segment_seconds)
        return env

    def set_clock(self, instant: float | str) -> None:
        """Move every worker's clock (epoch seconds or RFC 3339); atomic for the readers."""
        tmp = self.clock_path.with_suffix(".tmp")
        tmp.write_text(str(instant))
        tmp.replace(self.clock_path)

    # ------------------------------------------------------------------ workers
    def start_worker(self, name: str | None = None, *extra: str) -> WorkerProcess:
        name = name or f"w{len(self.workers) + 1}"
        port = free_port()
        log_path = self.workdir / f"{name}.log"
        argv = [
            *imnm_executable(), "tracker",
            "--app-id", self.app_id,
            "--timer-interval", str(self.timer_interval),
            "--metrics-port", str(port),
            "--data-dir", str(self.workdir / name / "data"),
            "--clock-file", str(self.clock_path),
            *extra,
        ]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv, env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.workdir,
            )
        worker = WorkerProcess(name, process, port, log_path)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            if worker.alive:
                worker.stop(timeout=15)

    # ------------------------------------------------------------------ Kafka
    async def publish(
        self, messages: Iterable[tuple[bytes | None, bytes | None]], topic: str | None = None
    ) -> list[RecordMetadata]:
        """Send ``(key, value)`` pairs in order; returns where each landed."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            futures = [
                await producer.send(topic or self.topics.events, key=key, value=value)
                for key, value in messages
            ]
            return list(await asyncio.gather(*futures))
        finally:
            await producer.stop()

    async def publish_lines(self, lines: Sequence[bytes]) -> list[RecordMetadata]:
        """Events keyed by their ``patient_id``, as ``imnm publish`` sends them."""
        return await self.publish(
            (orjson.loads(line)["patient_id"].encode(), line) for line in lines
        )

    async def read(
        self, topic: str, *, at_least: int = 0, idle: float = 1.5, timeout: float = 60.0
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Everything on ``topic`` from the start: at least ``at_least`` messages and then
        nothing new for ``idle`` seconds."""
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=self.bootstrap, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        got: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                fresh = [m for messages in batch.values() for m in messages]
                if fresh:
                    got.extend(fresh)
                    quiet_since = time.monotonic()
                elif len(got) >= at_least and time.monotonic() - quiet_since >= idle:
                    break
        finally:
            await consumer.stop()
        got.sort(key=lambda m: (m.partition, m.offset))
        return got

    async def changelog_records(self) -> tuple[int, int]:
        """(records in the state changelog now, state writes ever made: its end offsets). A
        memory-store restart reads the first figure again; compaction brings it down."""
        records = writes = 0
        async for batch, ends in self._changelog():
            records += len(batch)
            writes = ends
        return records, writes

    async def latest_states(self) -> dict[str, PatientState]:
        """Every patient's newest state in the changelog (what a recovery rebuilds)."""
        newest: dict[bytes, bytes] = {}
        async for batch, _ in self._changelog():
            for record in batch:
                if record.key is not None and record.value is not None:
                    newest[record.key] = record.value
        states = (stored.decode(value) for value in newest.values())
        return {state.patient_id: state for state in states}

    async def _changelog(self) -> AsyncIterator[tuple[list[ConsumerRecord[bytes, bytes]], int]]:
        """The state changelog from its start, in fetched batches, each with the writes ever made
        (the sum of its end offsets, fixed when the read starts)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False,
                                    max_partition_fetch_bytes=8 * 1024 * 1024)
        await consumer.start()
        try:
            tps = [TopicPartition(changelog_topic(self.app_id), p)
                   for p in range(self.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            writes = sum(ends.values())
            remaining = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
            if not remaining:
                yield [], writes
            while remaining:
                for tp, batch in (await consumer.getmany(*remaining, timeout_ms=1000)).items():
                    yield batch, writes
                    if batch and batch[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()

    async def wait_caught_up(self, timeout: float = 60.0) -> None:
        """Until the group has committed every message now on the events topic."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await admin.start()
        await consumer.start()
        try:
            tps = [TopicPartition(self.topics.events, p) for p in range(self.partitions)]
            ends = await consumer.end_offsets(tps)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    committed = await admin.list_consumer_group_offsets(self.app_id)
                except GroupCoordinatorNotAvailableError:  # a group that has just been formed
                    committed = {}
                lagging = {
                    tp.partition: ends[tp] - (committed[tp].offset if tp in committed else 0)
                    for tp in tps
                    if ends[tp] and (tp not in committed or committed[tp].offset < ends[tp])
                }
                if not lagging:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"group {self.app_id} still lags: {lagging}")
                await asyncio.sleep(0.3)
        finally:
            await consumer.stop()
            await admin.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0
                     ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"no {what} within {timeout} s")


# ---------------------------------------------------------------------- comparing with Replay
Row = tuple[str, str, str, str, str | None]
"""(alert_id, status, rule, raised_at, resolved_at): what must match, patient by patient."""


def rows_by_patient(transitions: Iterable[AlertTransition]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for t in transitions:
        out.setdefault(t.patient_id, []).append((
            t.alert_id, t.status, t.rule, t.raised_at.isoformat(),
            None if t.resolved_at is None else t.resolved_at.isoformat(),
        ))
    return out


def replay_rows(lines: Sequence[bytes], now: str) -> dict[str, list[Row]]:
    """What ``imnm replay --now NOW`` gives for ``lines``, patient by patient."""
    replay = Replay()
    end = parse_instant(now)
    return rows_by_patient([*replay.feed_lines(lines), *replay.finish(end)])


def first_occurrences(rows: dict[str, list[Row]]) -> tuple[dict[str, list[Row]], int]:
    """Drop repeated ``(alert_id, status)`` (at-least-once re-deliveries); count them."""
    kept_rows: dict[str, list[Row]] = {}
    repeats = 0
    for patient, sequence in rows.items():
        seen: set[tuple[str, str]] = set()
        kept = kept_rows[patient] = []
        for row in sequence:
            if (row[0], row[1]) in seen:
                repeats += 1
            else:
                seen.add((row[0], row[1]))
                kept.append(row)
    return kept_rows, repeats


def one_more_result_each(lines: Sequence[bytes], tag: str = "one-more") -> list[bytes]:
    """A normal creatine kinase result for every patient in ``lines``, at their latest instant:
    one more state write per patient, on every partition the patients live in. Another ``tag``
    gives other event ids, so another write."""
    decoded = [orjson.loads(line) for line in lines]
    last = max(event["occurred_at"] for event in decoded)
    return [
        orjson.dumps({
            "event_id": f"{tag}-ck-{pid}", "patient_id": pid, "event_type": "lab_result",
            "occurred_at": last, "loinc": "2157-6", "value": 150, "unit": "U/L",
            "reference_high": 200, "result_id": f"{tag}-ck-{pid}",
        })
        for pid in sorted({event["patient_id"] for event in decoded})
    ]


def synthetic_history(patients: int, seed: int, *, with_examples: bool = True) -> list[bytes]:
    """examples/events.jsonl (if found) plus a generated cohort, in ``occurred_at`` order."""
    from imnm_demo.generator import StreamSpec, generate_lines

    spec = StreamSpec(patients=patients, days=240, seed=seed,
                      start=datetime(2025, 1, 1, tzinfo=UTC))
    lines = [line.encode() for line in generate_lines(spec)]
    examples = Path(__file__).resolve().parents[2] / "examples" / "events.jsonl"
    if with_examples and examples.is_file():
        lines += [line for line in examples.read_bytes().splitlines() if line.strip()]
    return sorted(lines, key=lambda line: str(orjson.loads(line).get("occurred_at", "")))


def unapplied_events(lines: Sequence[bytes], states: dict[str, PatientState]
                     ) -> dict[str, list[str]]:
    """The event ids in ``lines`` that their patient's state does not remember, by patient.

    With the rules' ``seen_event_ids_kept`` above any patient's event count, a state remembers
    every event the tracker applied to it (stale and out-of-order ones included), so whatever is
    missing here was never applied: lost between the topic and the state."""
    missing: dict[str, list[str]] = {}
    remembered = {patient: set(state.seen_event_ids) for patient, state in states.items()}
    for line in lines:
        event = orjson.loads(line)
        patient, event_id = event["patient_id"], event["event_id"]
        if event_id not in remembered.get(patient, ()):
            missing.setdefault(patient, []).append(event_id)
    return missing
