"""``imnm``: the command line of imnm-safety. Each sub-command lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from imnm_cli import generate_cmd, replay_cmd, schemas_cmd, up_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imnm", description="IMNM medication-safety suite: stream processing and tools."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    replay_cmd.register(commands)
    schemas_cmd.register(commands)
    generate_cmd.register(commands)
    up_cmd.register(commands)
    _register_optional(commands)
    return parser


def _register_optional(commands: argparse._SubParsersAction) -> None:
    """Commands whose modules pull in Kafka/faust are imported lazily by their own register()."""
    import importlib

    for name in ("imnm_cli.stream_cmds", "imnm_cli.console_cmd", "imnm_cli.ingest_cmds",
                 "imnm_cli.redrive_cmd"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as missing:
            if missing.name != name:
                raise
            continue
        module.register(commands)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
