"""The ceiling for a faust worker: the tracker's faust, with none of the tracker's work.

    python -m bench.faust_passthrough APP_ID DATA_DIR SINK TOTAL RESULT_FILE

A child process (faust owns its event loop and signal handlers), configured from the environment
as ``imnm tracker`` is (``IMNM_*``: the bench's ``TrackerCluster.env()``). It builds its app with
the tracker's own settings (``imnm_tracker.app.faust_settings``), consumes the events topic with
``noack_take`` at the tracker's batch size and window, writes each batch to SINK through the
tracker's changelog writer (one produce batch per partition, every acknowledgement awaited), then
acks the batch's events: the tracker's agent with parsing, rules, state encoding and alert
publishing taken out. Set beside the raw aiokafka pass-through it splits the tracker's distance
from that ceiling into what faust's consumer machinery costs and what the tracker's own work
costs.

After TOTAL messages it writes ``{"events", "seconds"}`` to RESULT_FILE: seconds from
the first batch received to the last batch acked. The bench then stops it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import faust
from faust.streams import Stream
from faust.types import EventT, StreamT

from imnm_common.runtime import tune_gc_for_service
from imnm_common.settings import Settings
from imnm_tracker import faust_fixes
from imnm_tracker.app import aiokafka_producer, faust_settings, raw_topic
from imnm_tracker.changelog import ChangelogRecord, write_changelog
from imnm_tracker.options import resolve


def _ignore_offsets(*_: object) -> None:
    """The sink is not a changelog: nothing resumes from its offsets."""


def build_app(app_id: str, data_dir: str, sink: str, total: int, result: Path) -> faust.App:
    options = resolve(Settings(), app_id=app_id, data_dir=data_dir, metrics_port=0)
    faust_fixes.install()  # the tracker runs faust with these
    app = faust.App(options.app_id, **faust_settings(options, options.partitions))
    events = raw_topic(app, options.topics.events)
    seen = 0
    first: float | None = None

    async def relay(stream: StreamT[bytes]) -> None:
        nonlocal seen, first
        source = cast(Stream[bytes], stream)
        async for batch in source.noack_take(options.batch_size, within=options.batch_window):
            first = first if first is not None else time.perf_counter()
            received = cast(Sequence[EventT[bytes]], batch)
            records = [ChangelogRecord(e.message.partition, cast(bytes, e.message.key),
                                       cast(bytes, e.message.value)) for e in received]
            await write_changelog(aiokafka_producer(app), sink, records, _ignore_offsets)
            for event in received:
                await source.ack(event)
            seen += len(received)
            if seen >= total:
                done = {"events": seen, "seconds": time.perf_counter() - first}
                partial = result.with_suffix(".tmp")
                partial.write_text(json.dumps(done))
                partial.replace(result)  # the bench polls for it: never half written

    app.agent(events, name="bench.faust_passthrough", concurrency=1)(relay)
    return app


def main(argv: list[str]) -> None:
    app_id, data_dir, sink, total, result = argv
    app = build_app(app_id, data_dir, sink, int(total), Path(result))
    tune_gc_for_service()  # as the tracker's worker does
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
