"""The faust app around :class:`~imnm_tracker.core.TrackerCore`.

- source: the events topic, raw bytes (we parse, so we decide what is rejected and why);
- state: a table of ``patient_id -> imnm-state/2 bytes`` (:mod:`imnm_tracker.stored`) whose
  changelog is co-partitioned with the source; memory store by default, RocksDB optional;
- agent (concurrency 1): batches of messages via ``noack_take``. Acks are ours: a batch is
  acked only after its output is published and its states written, and a batch that cannot be
  published is never acked (faust acks a message whose agent raised, which would lose it);
- timer: every ``timer_interval`` seconds, fire what is due on this worker's partitions;
- rebalances: revoked partitions leave the due index at once; after every table recovery the
  index is rebuilt for the partitions now owned.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn, cast

import faust
from aiokafka import AIOKafkaProducer
from faust.streams import Stream
from faust.types import TP, EventT, StreamT, TableT
from faust.types.stores import StoreT

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.deadletter import DeadLetter
from imnm_common.domain.state import PatientState
from imnm_tracker import faust_fixes, stored
from imnm_tracker.changelog import ChangelogRecord, write_changelog
from imnm_tracker.core import TrackerCore
from imnm_tracker.faust_context import partition_context
from imnm_tracker.metrics import TrackerMetrics
from imnm_tracker.options import TrackerOptions
from imnm_tracker.records import SourceRecord
from imnm_tracker.stored import StoredHeader, StoredValueError
from imnm_tracker.topics_setup import STATE_TABLE

log = logging.getLogger(__name__)

EXIT_BATCH_FAILED = 70  # EX_SOFTWARE: output could not be published; nothing was committed


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


class FaustStateStore:
    """:class:`~imnm_tracker.core.StateStore` on a faust table keyed by patient id bytes.

    With ``batched`` (at-least-once processing) a save writes the table's store only and
    :meth:`flush` sends the changelog records in per-partition batches (:mod:`.changelog`).
    Otherwise (exactly-once, where faust sends changelog records inside its transactions) a
    save is a plain table assignment and faust sends the record itself.
    """

    def __init__(
        self, app: faust.App, table: TableT[bytes, bytes], source_topic: str, *, batched: bool
    ) -> None:
        self.app = app
        self.table = table
        self.source_topic = source_topic
        self.batched = batched
        self._unsent: list[ChangelogRecord] = []

    def load(self, patient_id: str, partition: int) -> PatientState | None:
        with partition_context(self.app, self.source_topic, partition):
            raw = self.table.get(patient_id.encode())
        return None if raw is None else stored.decode(raw)

    def save(self, patient_id: str, partition: int, state: PatientState, due: float | None) -> None:
        key, value = patient_id.encode(), stored.encode(state, partition, due)
        # the current event tells a RocksDB store which partition's database to write
        with partition_context(self.app, self.source_topic, partition):
            if self.batched:
                self.table.data[key] = value
            else:
                self.table[key] = value  # reassignment: faust logs it to the changelog
        if self.batched:
            self._unsent.append(ChangelogRecord(partition, key, value))

    async def flush(self) -> None:
        if not self._unsent:
            return
        records, self._unsent = self._unsent, []
        try:
            await write_changelog(
                aiokafka_producer(self.app),
                self.table.changelog_topic.get_topic_name(),
                records,
                cast(StoreT[bytes, bytes], self.table.data).set_persisted_offset,
            )
        except BaseException:
            # The store has these values already: keep their records for the next flush (a
            # timer tick is retried; a failed batch ends the worker, see TrackerApp).
            self._unsent = records + self._unsent
            raise

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        # Only a failed timer flush leaves records here; written after a rebalance they could
        # overwrite newer states of the partition's new owner.
        gone = set(partitions)
        self._unsent = [record for record in self._unsent if record.partition not in gone]

    def headers(self) -> Iterable[tuple[str, StoredHeader | StoredValueError]]:
        for key, raw in list(self.table.items()):
            try:
                yield key.decode(), stored.peek(raw)
            except StoredValueError as error:
                yield key.decode(errors="replace"), error


def aiokafka_producer(app: faust.App) -> AIOKafkaProducer:
    """The started aiokafka producer inside faust's (faust 0.15 names it ``_ensure_producer``):
    the same connection, settings and lifecycle as everything else the app sends."""
    return cast(AIOKafkaProducer, cast(Any, app.producer)._ensure_producer())


class FaustPublisher:
    """:class:`~imnm_tracker.core.Publisher` on the app's producer, keyed by patient id.

    Straight to the producer rather than through ``Topic.send``: the values are bytes already,
    and we wait for every acknowledgement right here, so faust's channel, serializer and
    publish-on-commit machinery would only add per-message cost.
    """

    def __init__(self, app: faust.App, alerts_topic: str, dead_letters_topic: str) -> None:
        self.app = app
        self.alerts_topic = alerts_topic
        self.dead_letters_topic = dead_letters_topic

    async def publish(
        self, transitions: Sequence[AlertTransition], dead_letters: Sequence[DeadLetter]
    ) -> None:
        producer = self.app.producer
        pending = []
        for transition in transitions:
            pending.append(await producer.send(
                self.alerts_topic, transition.patient_id.encode(),
                transition.model_dump_json().encode(), None, None, None,
            ))
        for letter in dead_letters:
            pending.append(await producer.send(
                self.dead_letters_topic, None if letter.key is None else letter.key.encode(),
                letter.model_dump_json().encode(), None, None, None,
            ))
        for future in pending:
            await future


MAX_FETCH_BYTES_PER_PARTITION = 4 * 1024 * 1024
MAX_PRODUCE_BATCH_BYTES = 512 * 1024  # under the broker's default message.max.bytes (1 MiB)


def faust_settings(options: TrackerOptions, partitions: int) -> dict[str, Any]:
    """The faust app settings of a tracker worker (also the bench's faust pass-through's, so that
    baseline runs faust exactly as the tracker does)."""
    conf: dict[str, Any] = {
        "broker": options.broker_url,
        "store": options.store,
        "datadir": str(options.data_dir),
        "topic_partitions": partitions,
        "topic_replication_factor": options.replication_factor,
        "topic_disable_leader": True,  # no leader-only timers: skip the extra topic
        "processing_guarantee": options.processing_guarantee,
        "table_standby_replicas": options.standby_replicas,
        "consumer_auto_offset_reset": "earliest",
        "web_enabled": False,  # /metrics is served by prometheus_client (metrics.py)
        "worker_redirect_stdouts": False,
        "autodiscover": False,
        # Changelog recovery is bound by fetch round trips, not CPU (the worker uses under one
        # core while recovering). One-off runs, 3,000 patients after a year, LZ4 values: ready
        # after a memory:// restart in 23.7 s at 384 KiB per partition fetch, 12.2-13.1 s at
        # faust's 1 MiB default, 7.9-8.4 s at 4 MiB. `make bench`, 5,000 patients: 15.8 s at
        # 1 MiB, 8.9 s at 4 MiB, for more worker RSS (223 -> 251 MiB). docs/tracker.md "Recovery".
        "consumer_max_fetch_size": MAX_FETCH_BYTES_PER_PARTITION,
        # A batch's state writes go out as one produce batch per changelog partition
        # (imnm_tracker.changelog); at the 16 KiB default they would be split every ~10.
        "producer_max_batch_size": MAX_PRODUCE_BATCH_BYTES,
    }
    if options.session_timeout is not None:
        conf["broker_session_timeout"] = options.session_timeout
        conf["broker_heartbeat_interval"] = max(options.session_timeout / 6, 0.5)
    if options.commit_interval is not None:
        conf["broker_commit_interval"] = options.commit_interval
    return conf


class TrackerApp:
    """One worker's faust app. ``partitions`` is the events topic's (see topics_setup)."""

    def __init__(self, options: TrackerOptions, partitions: int, metrics: TrackerMetrics) -> None:
        faust_fixes.install()
        self.options = options
        self.metrics = metrics
        self.app = faust.App(options.app_id, **faust_settings(options, partitions))
        self.events = raw_topic(self.app, options.topics.events)
        self.table = self.app.Table(
            STATE_TABLE,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
            on_recover=self._on_recovered,
        )
        self.core = TrackerCore(
            FaustStateStore(self.app, self.table, options.topics.events,
                            batched=options.processing_guarantee == "at_least_once"),
            FaustPublisher(self.app, options.topics.alerts, options.topics.deadletter),
            options.clock,
            metrics,
            options.rules,
            cached_patients=options.cached_patients,
            source_highwater=self._source_highwater,
        )
        self._heap_frozen = False
        self.app.agent(self.events, name="imnm_tracker.events", concurrency=1)(self._consume)
        self.app.timer(options.timer_interval, name="imnm_tracker.timer")(self._tick)
        # faust calls receivers as (sender, *args, signal=..., **kwargs)
        self.app.on_partitions_revoked.connect(cast(Any, self._on_revoked))

    def _source_highwater(self, partition: int) -> int | None:
        """The events partition's end as the consumer last fetched it (core: catching up)."""
        try:
            end = self.app.consumer.highwater(TP(self.options.topics.events, partition))
        except Exception:  # not started, or no longer assigned: judged on the clock, as before
            return None
        return end if isinstance(end, int) else None

    # faust calls these ------------------------------------------------------------
    async def _consume(self, stream: StreamT[bytes]) -> None:
        source = cast(Stream[bytes], stream)  # the concrete Stream has noack_take and ack
        async for batch in source.noack_take(
            self.options.batch_size, within=self.options.batch_window
        ):
            events = cast(Sequence[EventT[bytes]], batch)  # noack_take yields events, not values
            records = [
                SourceRecord(
                    e.message.topic, e.message.partition, e.message.offset,
                    e.message.key, e.message.value,
                )
                for e in events
            ]
            try:
                await self.core.handle_batch(records)
            except Exception as error:
                self._exit_unacknowledged(error, len(records))
            for event in events:
                await source.ack(event)

    def _exit_unacknowledged(self, error: Exception, size: int) -> NoReturn:
        # The batch is not acked, so its offsets must never be committed: the messages are then
        # processed again by whichever worker owns their partitions next. Not app.crash(): faust's
        # orderly shutdown commits what it believes is done, and after an agent gave up that can
        # reach past this batch (seen in tests/integration/test_tracker_failures.py). So leave
        # the way SIGKILL does; a supervisor (systemd, Kubernetes) restarts us (`imnm up`, the
        # development runner, stops the whole suite and names the worker that exited).
        self.metrics.batch_failures.inc()
        log.critical(
            "a batch of %d messages could not be published or stored (%s: %s); exiting without "
            "acknowledging it", size, type(error).__name__, error,
        )
        logging.shutdown()  # flush the log handlers; os._exit skips every other cleanup
        os._exit(EXIT_BATCH_FAILED)

    async def _tick(self) -> None:
        if self.app.rebalancing:
            return  # the index is being rebuilt; the next tick catches up
        try:
            await self.core.tick()
        except Exception as error:
            log.error("timer tick failed (%s: %s); retried on the next tick",
                      type(error).__name__, error)

    async def _on_revoked(self, sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        await self.core.on_revoked(
            tp.partition for tp in revoked if tp.topic == self.options.topics.events
        )

    async def _on_recovered(self) -> None:
        active = {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.options.topics.events
        }
        await self.core.on_recovered(active)
        if not self._heap_frozen:
            # Once, when first ready: the app, faust and every module are built, and the table
            # holds bytes only (not tracked by the collector). Frozen, they drop out of every
            # full collection from now on. Only once: objects frozen later could become garbage
            # (the states a rebalance drops) that is never collected.
            gc.freeze()
            self._heap_frozen = True
