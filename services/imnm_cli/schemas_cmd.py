"""``imnm schemas``: write or check ``schemas/`` from the pydantic contracts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imnm_common.contracts import export


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("schemas", help="generate or check schemas/ from the models")
    parser.add_argument("--dir", default="schemas", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if schemas/ is stale")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.check:
        stale = export.drift(args.dir)
        if stale:
            print(f"schemas out of date: {', '.join(stale)}; run `imnm schemas`", file=sys.stderr)
            return 1
        return 0
    for path in export.write(args.dir):
        print(path)
    return 0
