"""``imnm generate``: write a seeded synthetic events.v1 stream as JSON lines."""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterable
from datetime import datetime

from imnm_demo.generator import (
    StreamSpec,
    generate_lines,
    with_orders_as_schedules,
    with_weight_based_doses,
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("generate", help="write a synthetic IMNM event stream")
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", default="2025-01-01T00:00:00+00:00", help="RFC 3339 start")
    parser.add_argument("--bad-fraction", type=float, default=0.0,
                        help="fraction of malformed lines mixed in (dead-letter demo)")
    parser.add_argument("--renew-every-days", type=float, default=None,
                        help="renew every order in force this often (new order ids; long-term "
                             "care histories, e.g. 90 with --days 1825)")
    parser.add_argument("--weight-based", action="store_true",
                        help="weigh every patient now and then and write half the "
                             "glucocorticoid doses in mg/kg")
    parser.add_argument("--orders-as-schedules", action="store_true",
                        help="write each run of an order's active versions ahead, as the "
                             "first version's dose_schedule (and a completed version as its "
                             "ends_at), as a taper in one FHIR MedicationRequest is")
    parser.add_argument("-o", "--output", default="-", help="file, or '-' for stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
    except ValueError:
        print(f"imnm generate: --start: not an RFC 3339 timestamp: {args.start!r}",
              file=sys.stderr)
        return 2
    if start.tzinfo is None or args.patients < 1 or args.days < 1:
        print("imnm generate: --start needs an offset; --patients and --days must be >= 1",
              file=sys.stderr)
        return 2
    if args.renew_every_days is not None and args.renew_every_days < 1:
        print("imnm generate: --renew-every-days must be >= 1", file=sys.stderr)
        return 2
    spec = StreamSpec(patients=args.patients, days=args.days, start=start, seed=args.seed,
                      bad_fraction=args.bad_fraction, renew_every_days=args.renew_every_days)
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    lines: Iterable[str] = generate_lines(spec)
    if args.weight_based:
        lines = with_weight_based_doses(list(lines), random.Random(f"{args.seed}:weights"))
    if args.orders_as_schedules:
        lines = with_orders_as_schedules(list(lines))
    with out:
        for line in lines:
            out.write(line + "\n")
    return 0
