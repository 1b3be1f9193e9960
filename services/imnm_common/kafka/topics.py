"""Create the topics a service needs, idempotently, with aiokafka's admin client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from imnm_common.kafka.errors import TopicCreationError

__all__ = ["PartitionMismatch", "TopicsReport", "create_topics", "describe_topic_configs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionMismatch:
    """An existing topic whose partition count is not the one asked for."""

    topic: str
    expected: int
    actual: int

    def __str__(self) -> str:
        return f"{self.topic} has {self.actual} partitions, expected {self.expected}"


@dataclass(frozen=True)
class TopicsReport:
    """What :func:`create_topics` did: created, already there, and mismatched counts."""

    created: tuple[str, ...]
    existing: tuple[str, ...]
    mismatched: tuple[PartitionMismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatched

    def summary(self) -> str:
        parts = [f"created {len(self.created)}", f"already existed {len(self.existing)}"]
        if self.mismatched:
            parts.append("MISMATCHED: " + "; ".join(str(m) for m in self.mismatched))
        return ", ".join(parts)


async def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int = 1,
    *,
    configs: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    client_id: str = "imnm-topic-admin",
) -> TopicsReport:
    """Create the missing topics among ``names``; report existing ones with other counts.

    An existing topic with a different partition count is not an error (Kafka cannot
    shrink partitions, and growing them re-keys patients): it is logged as a warning and
    listed in :attr:`TopicsReport.mismatched`. Returns once the created topics have
    leaders, so producers can use them straight away. Raises
    :class:`~imnm_common.kafka.errors.TopicCreationError` if the broker refuses a topic.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if replication_factor < 1:
        raise ValueError(f"replication_factor must be >= 1, got {replication_factor}")
    wanted = list(dict.fromkeys(names))  # unique, in order
    if not wanted:
        return TopicsReport(created=(), existing=(), mismatched=())
    deadline = time.monotonic() + timeout_s
    async with _admin(bootstrap, timeout_s, client_id) as admin:
        present = set(await admin.list_topics())
        missing = [name for name in wanted if name not in present]
        created: list[str] = []
        existing = [name for name in wanted if name in present]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=partitions,
                        replication_factor=replication_factor,
                        topic_configs=dict(configs or {}),
                    )
                    for name in missing
                ],
                timeout_ms=int(timeout_s * 1000),
            )
            failures: list[str] = []
            for topic, code, *rest in response.topic_errors:
                if code == 0:
                    created.append(topic)
                elif code == TopicAlreadyExistsError.errno:  # created concurrently
                    existing.append(topic)
                else:
                    message = rest[0] if rest and rest[0] else for_code(code).__name__
                    failures.append(f"{topic}: {message} (error code {code})")
            if failures:
                raise TopicCreationError(
                    f"the broker at {bootstrap} refused to create topics: " + "; ".join(failures)
                )
            await _wait_for_leaders(admin, created, deadline)
        mismatched: list[PartitionMismatch] = []
        if existing:
            # A topic another worker is creating right now is listed before its partitions
            # are: wait for them so it is not misreported as having 0 partitions.
            await _wait_for_leaders(admin, existing, deadline)
            for meta in await admin.describe_topics(existing):
                actual = len(meta["partitions"])
                if actual != partitions:
                    mismatch = PartitionMismatch(meta["topic"], partitions, actual)
                    mismatched.append(mismatch)
                    log.warning(
                        "topic %s already exists with %d partitions but %d are configured; "
                        "leaving it as it is (keyed messages would move between partitions "
                        "if it were changed)",
                        mismatch.topic,
                        mismatch.actual,
                        mismatch.expected,
                    )
        order = {name: i for i, name in enumerate(wanted)}
        return TopicsReport(
            created=tuple(sorted(created, key=order.__getitem__)),
            existing=tuple(sorted(existing, key=order.__getitem__)),
            mismatched=tuple(sorted(mismatched, key=lambda m: order[m.topic])),
        )


async def describe_topic_configs(
    bootstrap: str,
    topic: str,
    names: Iterable[str],
    *,
    timeout_s: float = 30.0,
    client_id: str = "imnm-topic-admin",
) -> dict[str, str]:
    """The values of the configs ``names`` of an existing topic (its own or the broker's
    default). Raises the broker's error (e.g. ``UnknownTopicOrPartitionError``) as a
    ``KafkaError``."""
    async with _admin(bootstrap, timeout_s, client_id) as admin:
        wanted = dict.fromkeys(names)  # aiokafka filters on the keys
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, wanted)]
        )
    found: dict[str, str] = {}
    for response in responses:
        for code, message, _type, _name, entries in response.resources:
            if code != 0:
                raise for_code(code)(f"describe configs of {topic}: {message or code}")
            for name, value, *_ in entries:
                found[name] = value
    return found


@asynccontextmanager
async def _admin(
    bootstrap: str, timeout_s: float, client_id: str
) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        request_timeout_ms=int(timeout_s * 1000),
    )
    await asyncio.wait_for(admin.start(), timeout=timeout_s)
    try:
        yield admin
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str], deadline: float) -> None:
    """Wait until every partition of ``topics`` has a leader (bounded by ``deadline``)."""
    pending = list(topics)
    while pending:
        described: list[dict[str, Any]] = await admin.describe_topics(pending)
        ready = {
            meta["topic"]
            for meta in described
            if meta["error_code"] == 0
            and meta["partitions"]
            and all(p["leader"] >= 0 for p in meta["partitions"])
        }
        pending = [name for name in pending if name not in ready]
        if not pending:
            return
        if time.monotonic() >= deadline:
            log.warning("topics created but without leaders yet: %s", ", ".join(pending))
            return
        await asyncio.sleep(0.1)
