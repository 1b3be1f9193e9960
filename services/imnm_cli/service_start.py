"""What every long-running service command (``imnm console``, ``imnm ingest``) does first."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from imnm_common.settings import Settings, get_settings


def service_settings(command: str, what: str) -> Settings | None:
    """The settings, with logging configured; None after saying why when a setting is invalid
    or no broker is named (these services join a running suite; ``imnm up`` starts a broker
    and them)."""
    try:
        settings = get_settings()
    except ValidationError as error:
        for problem in error.errors():
            variable = "IMNM_" + "_".join(str(part) for part in problem["loc"]).upper()
            message = str(problem["msg"]).removeprefix("Value error, ")
            print(f"imnm {command}: {variable}: {message}", file=sys.stderr)
        return None
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if not settings.kafka_bootstrap:
        print(f"imnm {command}: set IMNM_KAFKA_BOOTSTRAP to the broker's host:port (or run "
              f"`imnm up`, which starts a local broker and {what})", file=sys.stderr)
        return None
    return settings
