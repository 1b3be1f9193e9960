"""Shared pytest fixtures.

``kafka_bootstrap`` starts ONE real local Kafka broker (``LocalKafkaBroker``) for the whole
session, or uses the cluster named by ``IMNM_TEST_KAFKA_BOOTSTRAP``. Tests that use it are
marked ``integration`` automatically (``-m "not integration"`` skips them).
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterator

import pytest

_name_counter = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a running Kafka broker shared by every test in the session."""
    external = os.environ.get("IMNM_TEST_KAFKA_BOOTSTRAP", "").strip()
    if external:
        yield external
        return
    from imnm_common.kafka.local_broker import LocalKafkaBroker

    broker = LocalKafkaBroker()
    broker.start()  # raises with the reason and the broker log tail if it cannot start
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of topic / group names unique to this test: ``unique_name("events")``."""
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:80]

    def make(prefix: str = "t") -> str:
        return f"{prefix}.{test}.{next(_name_counter)}-{uuid.uuid4().hex[:8]}"

    return make


# --------------------------------------------------------------------------- tracker workers
from pathlib import Path  # noqa: E402 - appended section

from imnm_tracker.testing import TrackerCluster  # noqa: E402


@pytest.fixture
def tracker_cluster(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> Iterator[TrackerCluster]:
    """Topics, a consumer group and a clock file for ``imnm tracker`` child processes.

    Start workers with ``tracker_cluster.start_worker()``; all of them are stopped (SIGTERM,
    then SIGKILL) when the test ends.
    """
    cluster = TrackerCluster(kafka_bootstrap, unique_name("trk"), tmp_path / "tracker")
    try:
        yield cluster
    finally:
        cluster.close()
