"""``imnm console``: the pharmacy alert console (worklist, alert pages, JSON API, metrics)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from imnm_common.settings import get_settings


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "console", help="serve the pharmacy alert console (needs IMNM_KAFKA_BOOTSTRAP)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if not settings.kafka_bootstrap:
        print("imnm console: set IMNM_KAFKA_BOOTSTRAP to the broker's host:port "
              "(or run `imnm up`, which starts a local broker and the console)", file=sys.stderr)
        return 2
    from imnm_console.entrypoints.process import FeedFailed, serve

    # uvicorn shuts down gracefully on SIGTERM, restores this handler, then raises the signal
    # again: with the default handler a clean stop would exit as "killed" (-15).
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        asyncio.run(serve(settings, settings.kafka_bootstrap))
    except FeedFailed as error:
        print(f"imnm console: {error}", file=sys.stderr)
        return 1
    return 0
