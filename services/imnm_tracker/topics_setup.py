"""Create the tracker's topics before faust starts, and check they can work together.

A topic with another partition count than configured is reported and used as it is (Kafka
cannot shrink partitions, and growing them would move patients between partitions). What must
hold is co-partitioning: the state changelog needs exactly as many partitions as the events
topic, because a patient's state lives in the changelog partition of its events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from imnm_common.kafka.topics import TopicsReport, create_topics
from imnm_tracker.errors import TopicLayoutError
from imnm_tracker.options import TrackerOptions

log = logging.getLogger(__name__)

STATE_TABLE = "patient-state"


def changelog_topic(app_id: str) -> str:
    """The name faust gives the state table's changelog."""
    return f"{app_id}-{STATE_TABLE}-changelog"


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
    state = await create_topics(
        options.bootstrap,
        [changelog],
        partitions,
        options.replication_factor,
        configs={"cleanup.policy": "compact"},
    )
    if state.mismatched:
        actual = state.mismatched[0].actual
        raise TopicLayoutError(
            f"state changelog {changelog} has {actual} partitions but {topics.events} has "
            f"{partitions}: the state would not follow its events. Use another app id "
            "(--app-id) or recreate the changelog with the same partition count."
        )
    log.info("topics ready (%s); %d partitions", report.summary(), partitions)
    return TopicLayout(partitions, report)
