"""``imnm redrive``: send dead letters back to the topic they were read from, once their cause is
fixed (docs/operations.md, "Re-driving dead letters")."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from imnm_cli.broker_args import add_bootstrap, broker_of
from imnm_common.settings import get_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(commands: argparse._SubParsersAction) -> None:
    redrive = commands.add_parser(
        "redrive",
        help="send dead letters back to their input topic, once their cause is fixed",
        description="Reads the dead-letter topic from where the last run stopped (the consumer "
        "group IMNM_REDRIVE_GROUP_ID, default imnm-redrive) to its end, and sends the chosen "
        "letters' original messages, with their keys, to the input topic each was read from "
        "(events or raw HL7 v2 / FHIR). A message still refused is dead-lettered again with its "
        "reason. Prints counts only (no message content). Exit status: 0 done, 1 broker "
        "unreachable or failed (nothing committed: the next run sends them again), 2 usage.",
    )
    add_bootstrap(redrive)
    redrive.add_argument("--reason-code", action="append", default=[], metavar="CODE",
                         help="only letters with this reason code (repeatable), e.g. "
                         "invalid_field")
    redrive.add_argument("--service", action="append", default=[], metavar="NAME",
                         help="only letters from this service (repeatable): imnm-tracker, "
                         "imnm-ingest")
    redrive.add_argument("--topic", action="append", default=[],
                         help="only letters read from this topic (repeatable)")
    redrive.add_argument("--rejected-since", type=_instant, metavar="TIME",
                         help="only letters rejected at or after TIME (RFC 3339 with offset, or "
                         "epoch seconds)")
    redrive.add_argument("--rejected-before", type=_instant, metavar="TIME",
                         help="only letters rejected before TIME (RFC 3339 with offset, or "
                         "epoch seconds)")
    redrive.add_argument("--from-beginning", action="store_true",
                         help="look at every letter again, not only those after the last run")
    redrive.add_argument("--dry-run", action="store_true",
                         help="count what would be sent; send and commit nothing")
    redrive.set_defaults(handler=run_redrive)


def _instant(text: str) -> datetime:
    from imnm_tracker.clock import parse_instant  # the tracker's --fixed-now reads times alike

    try:
        return datetime.fromtimestamp(parse_instant(text), UTC)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_redrive(args: argparse.Namespace) -> int:
    from imnm_common.kafka.dead_letters import RedriveRun, redrive
    from imnm_common.service_layer.redrive import RedriveChoice

    settings = get_settings()
    broker = broker_of(args, settings, "redrive")
    if broker is None:
        return EXIT_USAGE
    topics = settings.topics
    choice = RedriveChoice(
        input_topics=frozenset({topics.events, topics.raw_hl7v2, topics.raw_fhir}),
        reason_codes=frozenset(args.reason_code), services=frozenset(args.service),
        topics=frozenset(args.topic), rejected_since=args.rejected_since,
        rejected_before=args.rejected_before,
    )
    run = RedriveRun(broker, topics.deadletter, settings.redrive_group_id,
                     from_beginning=args.from_beginning, dry_run=args.dry_run)
    try:
        tally = asyncio.run(redrive(run, choice))
    except Exception as error:  # broker unreachable, a send refused ...
        print(f"imnm redrive: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(tally.summary(args.dry_run), file=sys.stderr)
    return EXIT_OK
