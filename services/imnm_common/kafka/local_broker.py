"""A real single-node Apache Kafka 4.x broker on loopback, run from Maven Central jars.

The broker runs in KRaft combined mode (one JVM is both broker and controller). Its jars
are pinned in ``deploy/kafka/pom.xml`` and copied once into ``deploy/kafka/lib/`` by
:func:`fetch_jars`; no Docker and no Kafka tarball are needed, only Java 17+ and Maven.

Typical use::

    with LocalKafkaBroker() as broker:
        print(broker.bootstrap)          # "127.0.0.1:<free port>"

Every run gets free loopback ports and a fresh temporary data directory (removed on
:meth:`LocalKafkaBroker.stop`), unless a ``data_dir`` is given, in which case the storage
is formatted once and reused on later runs. When the broker cannot start,
:class:`~imnm_common.kafka.errors.BrokerStartError` says why (port taken, process exited
with code N, timed out ...) and carries the last lines of the broker log.

``python -m imnm_common.kafka.local_broker`` runs a broker until Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from imnm_common.kafka.errors import (
    BrokerError,
    BrokerStartError,
    JarFetchError,
    JavaMissingError,
    PortInUseError,
)

__all__ = [
    "DEFAULT_HEAP",
    "LOOPBACK",
    "LocalKafkaBroker",
    "default_deploy_dir",
    "fetch_jars",
    "find_java",
    "jars_present",
    "pinned_kafka_version",
    "probe_metadata",
]

log = logging.getLogger(__name__)

LOOPBACK: Final = "127.0.0.1"
DEFAULT_HEAP: Final = ("256m", "512m")
DEFAULT_LOG_TAIL_LINES: Final = 40
_FALLBACK_KAFKA_VERSION: Final = "4.1.2"
_BROKER_LOG: Final = "broker.log"
_SERVER_PROPERTIES: Final = "server.properties"
_PORTS_FILE: Final = "ports"
_MAIN_CLASS: Final = "kafka.Kafka"
_STORAGE_TOOL: Final = "kafka.tools.StorageTool"


# --------------------------------------------------------------------------- jars


def default_deploy_dir() -> Path:
    """``deploy/kafka`` of this checkout (found next to the sources, else under the cwd)."""
    in_tree = Path(__file__).resolve().parents[3] / "deploy" / "kafka"
    if (in_tree / "pom.xml").is_file():
        return in_tree
    in_cwd = Path.cwd() / "deploy" / "kafka"
    if (in_cwd / "pom.xml").is_file():
        return in_cwd
    return in_tree


def pinned_kafka_version(deploy_dir: Path | None = None) -> str:
    """The ``kafka.version`` property of ``deploy/kafka/pom.xml`` (the single pin)."""
    pom = (deploy_dir or default_deploy_dir()) / "pom.xml"
    try:
        root = ET.parse(pom).getroot()
    except (OSError, ET.ParseError):
        return _FALLBACK_KAFKA_VERSION
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = root.find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        return _FALLBACK_KAFKA_VERSION
    return (node.text or "").strip()


def jars_present(deploy_dir: Path | None = None) -> bool:
    """True when ``lib/`` holds the pinned broker jar and the Log4j 2 backend + binding."""
    deploy = deploy_dir or default_deploy_dir()
    lib = deploy / "lib"
    version = pinned_kafka_version(deploy)
    return (
        (lib / f"kafka_2.13-{version}.jar").is_file()
        and any(lib.glob("log4j-core-*.jar"))
        and any(lib.glob("log4j-slf4j-impl-*.jar"))
    )


def fetch_jars(
    deploy_dir: Path | None = None,
    *,
    force: bool = False,
    mvn: str | None = None,
    timeout_s: float = 900.0,
) -> Path:
    """Copy the broker's runtime jars into ``deploy/kafka/lib`` with Maven, once.

    Skips Maven when the jars are already there (unless ``force``). Safe to call from
    several processes at once (a file lock serialises the fetch). Returns the lib dir.
    """
    deploy = deploy_dir or default_deploy_dir()
    pom = deploy / "pom.xml"
    lib = deploy / "lib"
    if not force and jars_present(deploy):
        return lib
    if not pom.is_file():
        raise JarFetchError(f"no pom at {pom}; cannot fetch the Kafka broker jars")
    mvn_path = mvn or shutil.which("mvn")
    if mvn_path is None:
        raise JarFetchError(
            f"the Kafka broker jars are not in {lib} and Maven ('mvn') is not on PATH. "
            "Install Maven (e.g. `apt-get install maven`) and Java 17+, or run "
            f"`mvn -B -q -f {pom} dependency:copy-dependencies` where Maven is available."
        )
    lib.mkdir(parents=True, exist_ok=True)
    with _file_lock(lib / ".fetch.lock"):
        if not force and jars_present(deploy):  # another process fetched meanwhile
            return lib
        cmd = [mvn_path, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies"]
        log.info("fetching Kafka broker jars: %s", " ".join(cmd))
        try:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except FileNotFoundError as exc:
            raise JarFetchError(f"cannot run Maven at {mvn_path!r}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise JarFetchError(
                f"`{' '.join(cmd)}` did not finish within {timeout_s:.0f} s"
            ) from exc
        if done.returncode != 0:
            tail = "\n".join(done.stdout.splitlines()[-40:])
            raise JarFetchError(
                f"`{' '.join(cmd)}` failed with exit code {done.returncode}:\n{tail}"
            )
    if not jars_present(deploy):
        raise JarFetchError(
            f"Maven finished but {lib} still lacks kafka_2.13-{pinned_kafka_version(deploy)}"
            ".jar / log4j-core / log4j-slf4j-impl; check deploy/kafka/pom.xml"
        )
    return lib


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- java


def find_java(java: str | os.PathLike[str] | None = None) -> str:
    """Path of the ``java`` to use: the given one, else ``$JAVA_HOME/bin/java``, else PATH."""
    if java is not None:
        candidate = os.fspath(java)
        resolved = shutil.which(candidate)
        if resolved is None:
            raise JavaMissingError(
                f"java executable {candidate!r} not found or not executable; "
                "Kafka 4.x needs Java 17 or newer"
            )
        return resolved
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        from_home = Path(java_home) / "bin" / "java"
        if os.access(from_home, os.X_OK):
            return str(from_home)
    found = shutil.which("java")
    if found is None:
        raise JavaMissingError(
            "no `java` on PATH (and JAVA_HOME does not point at one); the local Kafka "
            "broker needs Java 17 or newer (e.g. `apt-get install openjdk-17-jre-headless`)"
        )
    return found


# --------------------------------------------------------------------------- helpers


def _free_port(host: str, exclude: Sequence[int] = ()) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port
    raise BrokerError(f"could not find a free port on {host}")


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the JVM sets on its server sockets, so TIME_WAIT leftovers of a
        # previous broker do not count as "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):  # Kafka's Uuid.randomUuid() avoids these too
            return cid


def _read_tail(path: Path, lines: int, max_bytes: int = 256 * 1024) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


_STACK_FRAME = re.compile(r"^\s+(at |\.\.\. \d+ more)")
_BIND_FAILED = re.compile(r"failed to bind to (\S+?):? Address already in use", re.IGNORECASE)


def _diagnose(log_text: str) -> tuple[str | None, bool]:
    """A one-line cause found in the broker log, and whether it is a port conflict."""
    match = _BIND_FAILED.search(log_text)
    if match:
        return f"port already in use: {match.group(1)} (Address already in use)", True
    if "Address already in use" in log_text:
        return "a port the broker needs is already in use (Address already in use)", True
    if "UnsupportedClassVersionError" in log_text:
        return "this Java is too old for Kafka 4.x (it needs Java 17 or newer)", False
    if "Could not find or load main class" in log_text or "NoClassDefFoundError" in log_text:
        return (
            "broker classes missing from the classpath; re-fetch the jars with "
            "fetch_jars(force=True)",
            False,
        )
    if "OutOfMemoryError" in log_text or "Could not reserve enough space" in log_text:
        return "the JVM ran out of memory (see heap settings)", False
    if "already formatted" in log_text:
        return "the data directory is already formatted for another cluster", False
    return None, False


# --------------------------------------------------------------------------- probe


def _kafka_string(raw: bytes, offset: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", raw, offset)
    offset += 2
    if length < 0:
        return None, offset
    return raw[offset : offset + length].decode("utf-8", errors="replace"), offset + length


def probe_metadata(host: str, port: int, timeout_s: float = 2.0) -> tuple[str | None, int]:
    """One synchronous Kafka Metadata (v4) request: returns ``(cluster_id, broker_count)``.

    Raises ``OSError`` (or ``struct.error``) when the broker is not serving yet. Plain
    sockets on purpose: it works from any thread, inside or outside an event loop.
    """
    client_id = b"imnm-local-broker-probe"
    correlation_id = 7
    header = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    body = struct.pack(">ib", 0, 0)  # topics: empty array (= none), no auto-creation
    payload = header + body
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size_raw = _recv_exact(sock, 4)
        (size,) = struct.unpack(">i", size_raw)
        raw = _recv_exact(sock, size)
    got_id, _throttle, n_brokers = struct.unpack_from(">iii", raw, 0)
    if got_id != correlation_id:
        raise OSError(f"unexpected correlation id {got_id}")
    offset = 12
    for _ in range(n_brokers):
        offset += 4  # node_id
        _host, offset = _kafka_string(raw, offset)
        offset += 4  # port
        _rack, offset = _kafka_string(raw, offset)
    cluster_id, offset = _kafka_string(raw, offset)
    return cluster_id, n_brokers


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        chunks.extend(chunk)
    return bytes(chunks)


# --------------------------------------------------------------------------- broker

_LIVE: set[LocalKafkaBroker] = set()
_LIVE_LOCK = threading.Lock()


def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        brokers = list(_LIVE)
    for broker in brokers:
        with contextlib.suppress(Exception):
            broker.stop()


atexit.register(_stop_all_at_exit)


class LocalKafkaBroker:
    """One KRaft broker+controller JVM on loopback; a context manager.

    ``port``/``controller_port`` default to free ports picked at start. ``data_dir``
    defaults to a fresh temporary directory that :meth:`stop` removes (``keep_data``
    keeps it); a given ``data_dir`` is kept and its formatted storage reused next time.
    ``extra_properties`` override any generated ``server.properties`` entry.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        host: str = LOOPBACK,
        data_dir: str | os.PathLike[str] | None = None,
        keep_data: bool | None = None,
        deploy_dir: str | os.PathLike[str] | None = None,
        java: str | os.PathLike[str] | None = None,
        heap: tuple[str, str] = DEFAULT_HEAP,
        extra_properties: Mapping[str, str | int | bool] | None = None,
        extra_jvm_args: Sequence[str] = (),
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 20.0,
        fetch: bool = True,
    ) -> None:
        self._requested_port = port
        self._requested_controller_port = controller_port
        self._host = host
        self._given_data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._keep_data = keep_data if keep_data is not None else data_dir is not None
        self._deploy_dir = Path(deploy_dir) if deploy_dir is not None else default_deploy_dir()
        self._java = java
        self._heap = heap
        self._extra_properties = dict(extra_properties or {})
        self._extra_jvm_args = list(extra_jvm_args)
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._fetch = fetch

        self._data_dir: Path | None = None
        self._port: int | None = None
        self._controller_port: int | None = None
        self._cluster_id: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self.startup_seconds: float | None = None

    # ----------------------------------------------------------------- properties

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients; only valid while the broker runs."""
        if self._proc is None or self._port is None:
            raise BrokerError("the local Kafka broker is not running (call start() first)")
        return f"{self._host}:{self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def controller_port(self) -> int | None:
        return self._controller_port

    @property
    def cluster_id(self) -> str | None:
        return self._cluster_id

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir

    @property
    def log_path(self) -> Path | None:
        return self._data_dir / _BROKER_LOG if self._data_dir is not None else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n: int = DEFAULT_LOG_TAIL_LINES) -> str:
        """The last ``n`` lines of the broker log (empty string if there is none)."""
        path = self.log_path
        return _read_tail(path, n) if path is not None else ""

    def _condensed_tail(self, n: int) -> str:
        """Last ``n`` log lines without Java stack frames (``\\tat ...``, ``... N more``)."""
        lines = self.log_tail(max(n * 20, 400)).splitlines()
        kept = [line for line in lines if not _STACK_FRAME.match(line)]
        return "\n".join(kept[-n:])

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalKafkaBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalKafkaBroker:
        """Start the broker and block until it answers a metadata request.

        Raises :class:`JavaMissingError`, :class:`JarFetchError` or
        :class:`BrokerStartError` (with the reason and the broker log tail).
        """
        if self._proc is not None:
            raise BrokerError(f"the local Kafka broker is already running at {self.bootstrap}")
        java = find_java(self._java)
        if self._fetch:
            lib = fetch_jars(self._deploy_dir)
        else:
            lib = self._deploy_dir / "lib"
            if not jars_present(self._deploy_dir):
                raise JarFetchError(
                    f"the Kafka broker jars are not in {lib}; call fetch_jars() first"
                )
        # Free ports are picked by binding port 0 and closing, so another process can grab
        # one before the JVM binds it: retry with new ports (only a fresh temp dir can).
        auto_ports = self._requested_port is None and self._requested_controller_port is None
        attempts = 3 if auto_ports and self._given_data_dir is None else 1
        began = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(java, lib)
            except PortInUseError as exc:
                if attempt == attempts:
                    raise
                log.warning("local Kafka broker: %s; retrying with other ports", exc.reason)
            except BaseException:
                # Anything else (Ctrl-C while waiting, an unexpected error): leave nothing.
                self._terminate(timeout_s=5.0)
                self._cleanup_data()
                raise
            else:
                self.startup_seconds = time.monotonic() - began
                log.info(
                    "local Kafka broker ready at %s (pid %s, %.1f s, data %s)",
                    self.bootstrap,
                    self.pid,
                    self.startup_seconds,
                    self._data_dir,
                )
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout_s: float | None = None) -> None:
        """SIGTERM the broker's process group, SIGKILL it after the timeout, clean up.

        Idempotent. Removes the data directory unless it is kept.
        """
        self._terminate(self._stop_timeout_s if timeout_s is None else timeout_s)
        self._cleanup_data()

    # ----------------------------------------------------------------- internals

    def _start_once(self, java: str, lib: Path) -> None:
        data_dir = self._prepare_data_dir()
        formatted = (data_dir / "logs" / "meta.properties").is_file()
        saved = self._saved_ports(data_dir) if formatted else None
        port = self._requested_port or (saved[0] if saved else None) or _free_port(self._host)
        cport = (
            self._requested_controller_port
            or (saved[1] if saved else None)
            or _free_port(self._host, exclude=(port,))
        )
        self._port, self._controller_port = port, cport
        for which, number in (("broker", port), ("controller", cport)):
            if not _port_is_free(self._host, number):
                self._fail(
                    f"{which} port {number} on {self._host} is already in use",
                    port_conflict=True,
                )
        props = self._write_server_properties(data_dir, port, cport)
        log_path = data_dir / _BROKER_LOG
        self._log_handle = log_path.open("ab")
        jvm = self._jvm_args(lib)
        if formatted:
            self._cluster_id = self._read_cluster_id(data_dir)
        else:
            self._cluster_id = _random_cluster_id()
            self._format(java, jvm, props)
            (data_dir / _PORTS_FILE).write_text(f"{port} {cport}\n")
        try:
            self._proc = subprocess.Popen(
                [java, *jvm, _MAIN_CLASS, str(props)],
                cwd=data_dir,
                stdin=subprocess.DEVNULL,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() signals the group
            )
        except OSError as exc:
            self._close_log()
            raise JavaMissingError(f"cannot run java at {java!r}: {exc}") from exc
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._wait_ready()

    def _prepare_data_dir(self) -> Path:
        if self._given_data_dir is not None:
            self._given_data_dir.mkdir(parents=True, exist_ok=True)
            self._data_dir = self._given_data_dir
        else:
            self._data_dir = Path(tempfile.mkdtemp(prefix="imnm-kafka-"))
        return self._data_dir

    @staticmethod
    def _saved_ports(data_dir: Path) -> tuple[int, int] | None:
        try:
            broker, controller = (data_dir / _PORTS_FILE).read_text().split()
            return int(broker), int(controller)
        except (OSError, ValueError):
            return None

    @staticmethod
    def _read_cluster_id(data_dir: Path) -> str | None:
        try:
            text = (data_dir / "logs" / "meta.properties").read_text()
        except OSError:
            return None
        match = re.search(r"^cluster\.id=(\S+)", text, re.MULTILINE)
        return match.group(1) if match else None

    def _server_properties(self, data_dir: Path, port: int, cport: int) -> dict[str, str]:
        host = self._host
        props: dict[str, str | int | bool] = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.bootstrap.servers": f"{host}:{cport}",
            "log.dirs": str(data_dir / "logs"),
            "num.partitions": 1,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "share.coordinator.state.topic.num.partitions": 1,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": False,
            "delete.topic.enable": True,
            # Small segments: a dev broker should not reserve big files or indexes.
            "log.segment.bytes": 16 * 1024 * 1024,
            "log.index.size.max.bytes": 1024 * 1024,
            "offsets.topic.segment.bytes": 16 * 1024 * 1024,
            "log.retention.hours": 24,
            # A 2-core machine does not need Kafka's server-sized thread pools.
            "num.network.threads": 2,
            "num.io.threads": 4,
            "background.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
        }
        props.update(self._extra_properties)
        return {key: _prop_value(value) for key, value in props.items()}

    def _write_server_properties(self, data_dir: Path, port: int, cport: int) -> Path:
        path = data_dir / _SERVER_PROPERTIES
        lines = ["# generated by imnm_common.kafka.local_broker"]
        lines += [f"{k}={v}" for k, v in self._server_properties(data_dir, port, cport).items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    def _jvm_args(self, lib: Path) -> list[str]:
        xms, xmx = self._heap
        args = [
            f"-Xms{xms}",
            f"-Xmx{xmx}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
        ]
        log_config = self._deploy_dir / "log4j2.yaml"
        if log_config.is_file():
            args.append(f"-Dlog4j2.configurationFile={log_config}")
        if self._data_dir is not None:
            args.append(f"-Dkafka.logs.dir={self._data_dir}")
        args += self._extra_jvm_args
        args += ["-cp", f"{lib}{os.sep}*"]
        return args

    def _format(self, java: str, jvm: list[str], props: Path) -> None:
        assert self._cluster_id is not None and self._log_handle is not None
        cmd = [
            java,
            *jvm,
            _STORAGE_TOOL,
            "format",
            "-t",
            self._cluster_id,
            "-c",
            str(props),
            "--standalone",
        ]
        self._log_handle.write(b"--- formatting storage (kafka.tools.StorageTool) ---\n")
        self._log_handle.flush()
        try:
            done = subprocess.run(
                cmd,
                cwd=self._data_dir,
                stdin=subprocess.DEVNULL,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                timeout=max(30.0, self._start_timeout_s),
                check=False,
            )
        except OSError as exc:
            self._close_log()
            raise JavaMissingError(f"cannot run java at {java!r}: {exc}") from exc
        except subprocess.TimeoutExpired:
            self._fail("formatting the storage (kafka.tools.StorageTool) timed out")
        if done.returncode != 0:
            self._fail(
                f"formatting the storage (kafka.tools.StorageTool) exited with code "
                f"{done.returncode}",
                exit_code=done.returncode,
            )
        self._log_handle.write(b"--- starting broker (kafka.Kafka) ---\n")
        self._log_handle.flush()

    def _wait_ready(self) -> None:
        assert self._proc is not None and self._port is not None
        deadline = time.monotonic() + self._start_timeout_s
        last_error = "no answer yet"
        while True:
            exit_code = self._proc.poll()
            if exit_code is not None:
                self._fail(f"the broker process exited with code {exit_code}", exit_code=exit_code)
            try:
                cluster_id, brokers = probe_metadata(self._host, self._port, timeout_s=2.0)
            except (OSError, struct.error) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if brokers >= 1 and (self._cluster_id is None or cluster_id == self._cluster_id):
                    return
                last_error = f"metadata answered by cluster {cluster_id!r} with {brokers} brokers"
            if time.monotonic() >= deadline:
                self._fail(
                    f"the broker did not answer metadata requests on {self._host}:{self._port} "
                    f"within {self._start_timeout_s:g} s (last: {last_error}); "
                    f"process {self._proc.pid} was killed"
                )
            time.sleep(0.2)

    def _fail(
        self, reason: str, *, exit_code: int | None = None, port_conflict: bool = False
    ) -> None:
        """Kill what was started, collect the log tail and raise BrokerStartError."""
        self._terminate(timeout_s=5.0)
        tail = self._condensed_tail(DEFAULT_LOG_TAIL_LINES)
        cause, conflict_in_log = _diagnose(self.log_tail(400))
        if cause and cause not in reason:
            reason = f"{reason}: {cause}"
        self._cleanup_data()
        log_path = self.log_path if self.log_path is not None and self.log_path.exists() else None
        error_type = PortInUseError if (port_conflict or conflict_in_log) else BrokerStartError
        raise error_type(reason, log_tail=tail, exit_code=exit_code, log_path=log_path)

    def _terminate(self, timeout_s: float) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                self._signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("local Kafka broker pid %s ignored SIGTERM; killing", proc.pid)
                    self._signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=10)
            else:
                # The JVM is gone; make sure nothing it forked lingers in its group.
                self._signal_group(proc, signal.SIGKILL)
            self._proc = None
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self._close_log()

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)  # pgid == pid: started with start_new_session
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def _close_log(self) -> None:
        if self._log_handle is not None:
            with contextlib.suppress(OSError):
                self._log_handle.close()
            self._log_handle = None

    def _cleanup_data(self) -> None:
        if self._data_dir is not None and not self._keep_data:
            shutil.rmtree(self._data_dir, ignore_errors=True)

    def __repr__(self) -> str:
        state = f"running at {self._host}:{self._port}" if self.is_running() else "stopped"
        return f"<LocalKafkaBroker {state} data_dir={self._data_dir}>"


def _prop_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Run a local broker until Ctrl-C (or SIGTERM); prints its bootstrap address."""
    parser = argparse.ArgumentParser(
        prog="python -m imnm_common.kafka.local_broker",
        description="Run a single-node Kafka broker (KRaft) on loopback until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=None, help="broker port (default: free)")
    parser.add_argument("--controller-port", type=int, default=None)
    parser.add_argument(
        "--data-dir", default=None, help="persistent data dir (default: fresh temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir on exit")
    parser.add_argument(
        "--create-topics",
        action="store_true",
        help="create the project topics (imnm_common.settings) once the broker is up",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="start timeout, seconds")
    parser.add_argument(
        "--fetch-only", action="store_true", help="download the broker jars (once) and exit"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.fetch_only:
        try:
            print(f"Kafka jars ready in {fetch_jars()}", flush=True)
        except BrokerError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0

    def _on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)  # also when started with SIGINT ignored
    broker = LocalKafkaBroker(
        port=args.port,
        controller_port=args.controller_port,
        data_dir=args.data_dir,
        keep_data=True if args.keep else None,
        start_timeout_s=args.timeout,
    )
    try:
        broker.start()
    except BrokerError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        print(f"Kafka broker ready: bootstrap={broker.bootstrap}", flush=True)
        print(f"  data dir: {broker.data_dir}  log: {broker.log_path}", flush=True)
        if args.create_topics:
            _create_project_topics(broker.bootstrap)
        print("Press Ctrl-C to stop.", flush=True)
        while broker.is_running():
            time.sleep(0.5)
        print("the broker exited unexpectedly:\n" + broker.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the broker ...", flush=True)
        return 0
    finally:
        broker.stop()


def _create_project_topics(bootstrap: str) -> None:
    import asyncio

    from imnm_common.kafka.topics import create_topics
    from imnm_common.settings import get_settings

    settings = get_settings()
    report = asyncio.run(
        create_topics(
            bootstrap,
            settings.topics.all(),
            settings.topic_partitions,
            settings.topic_replication_factor,
        )
    )
    print(f"  topics: {report.summary()}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
