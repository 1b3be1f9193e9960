"""``imnm console``: the pharmacy alert console (worklist, alert pages, JSON API, metrics)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from imnm_cli.service_start import service_settings


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "console", help="serve the pharmacy alert console (needs IMNM_KAFKA_BOOTSTRAP)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = service_settings("console", "the console")
    if settings is None:
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
