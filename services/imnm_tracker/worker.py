"""Run one tracker worker: topics first, then the metrics endpoint, then the faust worker.

Two ways in:

- :func:`run_worker` blocks in the calling (main) thread until the worker stops, and returns
  an exit status; ``imnm tracker`` is exactly this.
- :func:`worker_command` gives the argv of ``imnm tracker`` for a supervisor that prefers a
  child process it can stop or kill on its own (``imnm up``, the integration tests).

faust owns its event loop and installs signal handlers, so a worker cannot share the loop of
another asyncio program; run it as a child process when that matters.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

import faust
from aiokafka.errors import KafkaError

from imnm_common.runtime import tune_gc_for_service
from imnm_tracker.errors import TrackerError
from imnm_tracker.metrics import MetricsServer, TrackerMetrics
from imnm_tracker.options import TrackerOptions
from imnm_tracker.topics_setup import ensure_topics

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def run_worker(options: TrackerOptions) -> int:
    from imnm_tracker.app import TrackerApp  # imports faust's app machinery: only when running

    _log_to_stderr(options.log_level)
    try:
        layout = asyncio.run(ensure_topics(options))
    except TrackerError as error:
        log.error("%s", error)
        return EXIT_CONFIG
    except (TimeoutError, KafkaError, OSError) as error:
        log.error("cannot reach the Kafka broker at %s: %s", options.bootstrap,
                  str(error) or type(error).__name__)
        return EXIT_FAILED
    try:
        options.data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    except OSError as error:
        log.error("data dir %s: %s", options.data_dir, error.strerror or error)
        return EXIT_CONFIG
    metrics = TrackerMetrics()
    server = None
    if options.metrics_port:
        server = MetricsServer(metrics, options.metrics_host, options.metrics_port)
        try:
            server.start()
        except OSError as error:
            log.error("metrics port %s:%d: %s", options.metrics_host, options.metrics_port,
                      error.strerror or error)
            return EXIT_CONFIG
    tracker = TrackerApp(options, layout.partitions, metrics)
    log.info(
        "tracker %s: %s store, timer every %g s, batches of up to %d within %g s, %s",
        options.app_id, options.store, options.timer_interval, options.batch_size,
        options.batch_window, options.processing_guarantee,
    )
    changed = options.rules.model_dump(mode="json", exclude_defaults=True)
    log.info("rules: %s", f"changed from the defaults: {changed}" if changed else "defaults")
    worker = faust.Worker(
        tracker.app, loglevel=options.log_level, logfile=sys.stderr, quiet=True,
    )
    tune_gc_for_service()
    stop_recording_gc = metrics.record_gc_pauses()
    try:
        worker.execute_from_commandline()
    except SystemExit as stopped:
        code = stopped.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_FAILED)
    finally:
        stop_recording_gc()
        if server is not None:
            server.stop()
    return EXIT_OK  # pragma: no cover - execute_from_commandline always raises SystemExit


def worker_command(
    *,
    python: str = sys.executable,
    app_id: str | None = None,
    bootstrap: str | None = None,
    timer_interval: float | None = None,
    store: str | None = None,
    metrics_port: int | None = None,
    data_dir: str | None = None,
    clock_file: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """argv that runs one worker as a child process (``python -m imnm_cli.main tracker``)."""
    argv = [python, "-m", "imnm_cli.main", "tracker"]
    for flag, value in (
        ("--app-id", app_id),
        ("--bootstrap", bootstrap),
        ("--timer-interval", timer_interval),
        ("--store", store),
        ("--metrics-port", metrics_port),
        ("--data-dir", data_dir),
        ("--clock-file", clock_file),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return [*argv, *extra]


def _log_to_stderr(level: str) -> None:
    # Until faust's worker takes over logging (it re-configures the root logger on start).
    logging.basicConfig(
        level=level, stream=sys.stderr, format="[%(asctime)s] [%(levelname)s] %(name)s: %(message)s"
    )
