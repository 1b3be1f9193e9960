"""One measured run in a fresh process: ``replay`` (the engine in-process, input read up front),
``replay_unsettled`` (the same with every old order kept), ``validate`` (the ceiling),
``memory`` (RSS the states hold) or ``cli`` (``imnm replay FILE``; ``cli FILE N``: with
``--jobs N``).

Prints one JSON line: events, seconds, events/s, peak RSS, and for replay the state sizes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from bench.common import UNSETTLED_DAYS
from imnm_common.contracts.events import parse_event
from imnm_common.domain import engine
from imnm_common.domain.config import RulesConfig
from imnm_common.runtime import tune_gc_for_batch
from imnm_common.service_layer.replay import Replay
from imnm_tracker import stored


def rss_mib() -> float:
    """Peak resident set size of this process so far (VmHWM). Not ``ru_maxrss``: Linux carries
    the parent's RSS at fork over the exec, so a step started by a ``make bench`` holding a
    5,000-patient stream reported the parent's ~240 MiB, whatever the step used."""
    return _status_kib("VmHWM") / 1024.0


def current_rss_mib() -> float:
    """Resident set size now (the peak hides what the patient states take after the input)."""
    return _status_kib("VmRSS") / 1024.0


def _status_kib(field: str, pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


class ProcessWatch:
    """Samples the high-water RSS (VmHWM) of a process and of its children every ``interval``
    seconds from /proc, in a thread: ``imnm replay --jobs N`` is a parent that merges and writes
    and N workers, and the question is what each of them holds, which one rusage cannot tell.
    VmHWM only grows, so a sample misses at most what a process gained in its last interval.
    Given the file the process writes to, it also notes when the first output arrived, in
    seconds since ``started`` (to an interval): a file, not a pipe, so that reading the output
    takes no CPU from the process."""

    def __init__(
        self, pid: int, started: float, *, output: int | None = None, interval: float = 0.02
    ) -> None:
        self.pid = pid
        self.parent_kib = 0
        self.largest_child_kib = 0
        self.first_output_seconds: float | None = None
        self._output = output
        self._started = started
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # output written in the last interval (the process may be gone)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def _sample(self) -> None:
        self.parent_kib = max(self.parent_kib, _hwm_kib(self.pid))
        for child in _children(self.pid):
            self.largest_child_kib = max(self.largest_child_kib, _hwm_kib(child))
        if (self.first_output_seconds is None and self._output is not None
                and os.fstat(self._output).st_size > 0):
            self.first_output_seconds = time.perf_counter() - self._started


def _hwm_kib(pid: int) -> int:
    try:
        return _status_kib("VmHWM", pid)
    except (OSError, RuntimeError):  # gone, or a zombie without memory
        return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def memory(path: str) -> None:
    """Stream the file (no input held) and report what the patient states occupy."""
    before = current_rss_mib()
    replay = Replay()
    with open(path, "rb") as handle:
        for _ in replay.feed_lines(handle):
            pass
    for _ in replay.finish():
        pass
    held = current_rss_mib() - before
    patients = len(replay.states)
    print(json.dumps({
        "mode": "memory", "patients": patients, "rss_held_mib": round(held, 1),
        "rss_mib_per_10k_patients": round(held / patients * 10_000, 1),
        "peak_rss_mib": round(rss_mib(), 1),
    }))


def state_sizes(replay: Replay) -> dict[str, float]:
    """Per tracked patient: the table value the tracker stores (header + LZ4 body, what the
    changelog and RocksDB hold), the uncompressed positional JSON inside it, and the orders
    kept."""
    tracked = [s for s in replay.states.values() if s.diagnosis is not None]
    table = [len(stored.encode(s, 0, engine.next_due(s))) for s in tracked]  # as core._save
    plain = [len(s.to_bytes()) for s in tracked]
    count = max(len(tracked), 1)
    return {
        "orders_per_patient_mean": round(sum(len(s.orders) for s in tracked) / count, 1),
        "state_bytes_per_patient_mean": round(sum(table) / count),
        "state_bytes_per_patient_max": max(table, default=0),
        "state_json_bytes_per_patient_mean": round(sum(plain) / count),
        "state_json_bytes_per_patient_max": max(plain, default=0),
    }


def cli(path: str, jobs: int = 1) -> None:
    """``imnm replay FILE [--jobs N]`` as a user runs it: a fresh process streaming the file and
    writing every transition as a JSON line (to a temporary file); wall time includes
    interpreter start-up (and, with ``--jobs``, starting the worker processes)."""
    from imnm_tracker.testing import imnm_executable  # here: it imports aiokafka, which the
    # other steps' RSS figures should not include

    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen([*imnm_executable(), "replay", path, "--jobs", str(jobs)],
                                   stdout=output, stderr=errors)
        with ProcessWatch(process.pid, started, output=output.fileno()) as watch:
            returncode = process.wait()
        seconds = time.perf_counter() - started
        first_output = watch.first_output_seconds
        errors.seek(0)
        stderr = errors.read().decode()
    if returncode not in (0, 3):  # 3: some lines rejected, still a complete replay
        raise SystemExit(f"imnm replay failed ({returncode}): {stderr[-2000:]}")
    summary = re.search(r"events read (\d+),.*\(([\d,]+) events/s\)", stderr)
    if summary is None:
        raise SystemExit(f"no summary line from imnm replay: {stderr[-2000:]}")
    events = int(summary.group(1))
    print(json.dumps({
        "mode": "cli", "jobs": jobs, "events": events, "seconds": round(seconds, 3),
        "events_per_second": round(events / seconds),
        "reported_events_per_second": int(summary.group(2).replace(",", "")),
        "first_output_seconds": None if first_output is None else round(first_output, 3),
        # sampled from /proc: the CLI process (with --jobs the parent that merges and writes)
        # and its largest child (a worker); 0 without --jobs
        "process_peak_rss_mib": round(watch.parent_kib / 1024.0, 1),
        "largest_child_peak_rss_mib": round(watch.largest_child_kib / 1024.0, 1),
        # the summary's counts by rule and status: the same whatever --jobs
        "transitions": dict(re.findall(r"transitions (\S+): (\d+)", stderr)),
        # the largest process: the CLI, or with --jobs its largest worker
        "peak_rss_mib": round(max(watch.parent_kib, watch.largest_child_kib) / 1024.0, 1),
    }))


# ``replay_unsettled``: settling pushed beyond any stream, every order is kept
CONFIGS = {"replay": RulesConfig(),
           "replay_unsettled": RulesConfig(order_history_days=UNSETTLED_DAYS)}


def main(mode: str, path: str, jobs: int = 1) -> None:
    if mode != "cli":  # the CLI sets it itself
        tune_gc_for_batch()  # as `imnm replay` does
    if mode == "memory":
        memory(path)
        return
    if mode == "cli":
        cli(path, jobs)
        return
    with open(path, "rb") as handle:
        lines = handle.readlines()  # read up front: measure the engine, not the disk
    started = time.perf_counter()
    result: dict[str, object] = {"mode": mode, "events": len(lines)}
    if mode == "validate":
        for line in lines:
            parse_event(line)
    else:
        replay = Replay(CONFIGS[mode])
        transitions = sum(1 for _ in replay.feed_lines(lines))
        transitions += sum(1 for _ in replay.finish())
        result["transitions"] = transitions
    seconds = time.perf_counter() - started
    if mode in CONFIGS:  # sizes after the clock stopped: encoding them is not replay's work
        result["patients"] = len(replay.states)
        result.update(state_sizes(replay))
    result["seconds"] = round(seconds, 3)
    result["events_per_second"] = round(len(lines) / seconds)
    result["peak_rss_mib"] = round(rss_mib(), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(arg) for arg in sys.argv[3:4]))
