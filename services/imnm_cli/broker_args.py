"""``--bootstrap``: which Kafka broker a command talks to, for every command that needs one."""

from __future__ import annotations

import argparse
import sys

from imnm_common.settings import Settings


def add_bootstrap(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka host:port (default: IMNM_KAFKA_BOOTSTRAP)")


def broker_of(args: argparse.Namespace, settings: Settings, command: str) -> str | None:
    """``--bootstrap``, else ``IMNM_KAFKA_BOOTSTRAP``; None (having said why) when neither."""
    broker = (args.bootstrap or settings.kafka_bootstrap).strip()
    if not broker:
        print(f"imnm {command}: no Kafka broker: set IMNM_KAFKA_BOOTSTRAP or pass --bootstrap",
              file=sys.stderr)
        return None
    return broker
