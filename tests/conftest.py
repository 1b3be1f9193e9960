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
        if "postgres_server" in getattr(item, "fixturenames", ()):
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


# --------------------------------------------------------------------------- PostgreSQL
import glob  # noqa: E402 - appended section
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): install "
                    "Debian's postgresql (.ci/run does) or set IMNM_TEST_POSTGRES_URL")
    return Path(found[-1]).parent


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """``postgresql+psycopg://...`` of a real PostgreSQL server (a throwaway cluster started
    here, trust auth on loopback), or the one named by ``IMNM_TEST_POSTGRES_URL``."""
    external = os.environ.get("IMNM_TEST_POSTGRES_URL", "").strip()
    if external:
        yield external
        return
    bin_dir = _postgres_bin()
    root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if root else []  # postgres refuses root
    data = Path(tempfile.mkdtemp(prefix="imnm-pg-"))
    if root:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    server = subprocess.Popen(
        [*run_as, str(bin_dir / "postgres"), "-D", str(data / "db"), "-p", str(port),
         "-k", str(data), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the test PostgreSQL server did not start")
            time.sleep(0.2)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server: str) -> str:
    """URL of a new, empty database on the test server (one per test)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    dsn = postgres_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"
