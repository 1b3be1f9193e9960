"""``--bootstrap``: which Kafka broker a command talks to, for every command that needs one."""

from __future__ import annotations

import argparse
import logging
import sys

from imnm_common.settings import Settings


def add_bootstrap(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka host:port (default: IMNM_KAFKA_BOOTSTRAP)")


def broker_of(args: argparse.Namespace, settings: Settings, command: str) -> str | None:
    """``--bootstrap``, else ``IMNM_KAFKA_BOOTSTRAP``; None (having said why) when neither.

    Also labels the Kafka client's own warnings (a produce retried while a new topic's
    leader settles, a broker briefly away) with the command and the library they come
    from, so they cannot be read as a line of the command's report on stderr.
    """
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"imnm {command}: %(levelname)s %(name)s: %(message)s")
    broker = (args.bootstrap or settings.kafka_bootstrap).strip()
    if not broker:
        print(f"imnm {command}: no Kafka broker: set IMNM_KAFKA_BOOTSTRAP or pass --bootstrap",
              file=sys.stderr)
        return None
    return broker
