"""What every long-running service command (``imnm console``, ``imnm ingest``) does first."""

from __future__ import annotations

import logging
import sys

from imnm_common.settings import Settings, get_settings


def service_settings(command: str, what: str) -> Settings | None:
    """The settings, with logging configured; None after saying why when no broker is named
    (these services join a running suite; ``imnm up`` starts a broker and them)."""
    settings = get_settings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if not settings.kafka_bootstrap:
        print(f"imnm {command}: set IMNM_KAFKA_BOOTSTRAP to the broker's host:port (or run "
              f"`imnm up`, which starts a local broker and {what})", file=sys.stderr)
        return None
    return settings
