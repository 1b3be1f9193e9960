"""Create the tracker's topics before faust starts, and check they can work together.

A topic with another partition count than configured is reported and used as it is (Kafka
cannot shrink partitions, and growing them would move patients between partitions). What must
hold is co-partitioning: the state changelog needs exactly as many partitions as the events
topic, because a patient's state lives in the changelog partition of its events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.errors import KafkaError

from imnm_common.kafka.topics import TopicsReport, create_topics, describe_topic_configs
from imnm_tracker.errors import TopicLayoutError
from imnm_tracker.options import TrackerOptions

log = logging.getLogger(__name__)

STATE_TABLE = "patient-state"


def changelog_topic(app_id: str) -> str:
    """The name faust gives the state table's changelog."""
    return f"{app_id}-{STATE_TABLE}-changelog"


def changelog_configs(segment_seconds: float) -> dict[str, str]:
    """The state changelog's topic configs.

    A restart with the memory store reads the changelog again, and faust's recovery costs about
    the same per record whatever its size (a queue wait, offset bookkeeping and a check of every
    partition per record), so ready time follows the records compaction has left. Compaction
    never touches a partition's newest segment, which by Kafka's defaults rolls at 1 GiB or after
    7 days: up to a week of state writes, every one read again. Rolling at least every
    ``segment_seconds`` lets the log cleaner reduce everything older to one record per patient.
    docs/tracker.md "Recovery" has the measurements.
    """
    return {"cleanup.policy": "compact", "segment.ms": str(round(segment_seconds * 1000))}


async def _check_changelog_configs(
    bootstrap: str, changelog: str, wanted: dict[str, str]
) -> None:
    """An existing changelog keeps its configs (Kafka's legacy AlterConfigs, the one aiokafka has,
    would reset every other override): say what to change. Only advice: a broker that refuses
    to describe configs (an ACL without DescribeConfigs) does not stop the worker."""
    try:
        actual = await describe_topic_configs(bootstrap, changelog, wanted)
    except KafkaError as error:
        log.warning("could not check the configs of state changelog %s: %s", changelog,
                    str(error) or type(error).__name__)
        return
    if "compact" not in actual.get("cleanup.policy", "").split(","):
        log.warning(
            "state changelog %s has cleanup.policy=%s, not compact: it keeps every state write and "
            "a restart reads them all", changelog, actual.get("cleanup.policy"),
        )
    segment_ms = int(actual.get("segment.ms", "0") or 0)
    if segment_ms > int(wanted["segment.ms"]):
        log.warning(
            "state changelog %s rolls its segments every %.0f s (segment.ms=%d); restarts read "
            "every state write of the newest segment again. To roll every %s ms: "
            "kafka-configs.sh --alter --entity-type topics --entity-name %s "
            "--add-config segment.ms=%s",
            changelog, segment_ms / 1000, segment_ms, wanted["segment.ms"], changelog,
            wanted["segment.ms"],
        )


@dataclass(frozen=True)
class TopicLayout:
    partitions: int  # of the events topic, and so of the state table
    report: TopicsReport


async def ensure_topics(options: TrackerOptions) -> TopicLayout:
    topics = options.topics
    report = await create_topics(
        options.bootstrap,
        [topics.events, topics.alerts, topics.deadletter],
        options.partitions,
        options.replication_factor,
    )
    partitions = options.partitions
    for mismatch in report.mismatched:
        log.error(
            "topic %s has %d partitions, expected %d (IMNM_TOPIC_PARTITIONS); using it as it is",
            mismatch.topic, mismatch.actual, mismatch.expected,
        )
        if mismatch.topic == topics.events:
            partitions = mismatch.actual
    changelog = changelog_topic(options.app_id)
    configs = changelog_configs(options.changelog_segment_seconds)
    state = await create_topics(
        options.bootstrap, [changelog], partitions, options.replication_factor, configs=configs
    )
    if state.mismatched:
        actual = state.mismatched[0].actual
        raise TopicLayoutError(
            f"state changelog {changelog} has {actual} partitions but {topics.events} has "
            f"{partitions}: the state would not follow its events. Use another app id "
            "(--app-id) or recreate the changelog with the same partition count."
        )
    if state.existing:
        await _check_changelog_configs(options.bootstrap, changelog, configs)
    log.info("topics ready (%s); %d partitions", report.summary(), partitions)
    return TopicLayout(partitions, report)
