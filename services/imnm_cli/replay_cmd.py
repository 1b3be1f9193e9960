"""``imnm replay`` and ``imnm state``: run a JSON-lines history through the domain core."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO

import orjson

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.domain.config import RulesConfig
from imnm_common.domain.picture import ClinicalPicture
from imnm_common.runtime import tune_gc_for_batch
from imnm_common.service_layer import rules_config
from imnm_common.service_layer.replay import Rejection, Replay, ReplayStats
from imnm_common.service_layer.replay_shares import ShareError, replay_in_shares

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3


class UsageError(Exception):
    pass


def register(commands: argparse._SubParsersAction) -> None:
    replay = commands.add_parser(
        "replay",
        help="replay canonical events (JSON lines) and print alert transitions",
        description="Exit status: 0 all lines accepted, 3 some rejected, 2 usage or I/O error, "
        "1 a worker of --jobs failed.",
    )
    replay.add_argument("file", help="events.v1 JSON lines; '-' reads standard input")
    _common(replay)
    replay.add_argument("--format", choices=("json", "table"), default="json")
    replay.add_argument(
        "--jobs", type=int, default=1, metavar="N",
        help="worker processes, each judging a share of the patients; the output is the same "
        "as with one ('-' is spooled to a temporary file first)",
    )
    replay.set_defaults(handler=run_replay)

    state = commands.add_parser("state", help="replay a file and show one patient's state")
    state.add_argument("file")
    state.add_argument("--patient", required=True, help="patient_id (MRN)")
    _common(state)
    state.set_defaults(handler=run_state)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--now", help="advance the clock to this RFC 3339 time at the end (default: last event)"
    )
    parser.add_argument("--rules-config", help="YAML or JSON file of rule thresholds")


def parse_now(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--now: not an RFC 3339 timestamp: {text!r}") from None
    if moment.tzinfo is None:
        raise UsageError("--now: the timestamp needs a UTC offset, e.g. 2025-06-01T00:00:00Z")
    return moment.timestamp()


def load_rules_config(path: str | None) -> RulesConfig:
    try:
        return rules_config.load_rules_config(path)
    except rules_config.RulesConfigError as error:
        raise UsageError(f"--rules-config: {error}") from None


def _lines(path: str) -> Iterator[bytes]:
    if path == "-":
        yield from sys.stdin.buffer
        return
    with _open(path) as handle:
        yield from handle


def _open(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")  # the caller closes it
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None


def run_replay(args: argparse.Namespace) -> int:
    try:
        now = parse_now(args.now)
        config = load_rules_config(args.rules_config)
        if args.jobs < 1:
            raise UsageError(f"--jobs: at least 1, not {args.jobs}")
        if args.jobs > 1:
            return _replay_in_shares(args, config, now)
        tune_gc_for_batch()
        replay = Replay(config)
        started = time.perf_counter()
        table = args.format == "table"
        if table:
            _table_header(sys.stdout)
        for transition in _all(replay, _lines(args.file), now):
            _write(transition, table)
        sys.stdout.buffer.flush()
        elapsed = time.perf_counter() - started
    except UsageError as error:
        print(f"imnm replay: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ShareError as error:
        print(f"imnm replay: {error}", file=sys.stderr)
        return EXIT_FAILED
    _report(replay.stats, replay.rejections, len(replay.states), elapsed, sys.stderr)
    return EXIT_REJECTED if replay.stats.rejected_total else EXIT_OK


def _replay_in_shares(args: argparse.Namespace, config: RulesConfig, now: float | None) -> int:
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        path = args.file
        if path == "-":
            # Every worker reads the whole stream, so standard input is spooled to a file first.
            spool = stack.enter_context(
                tempfile.NamedTemporaryFile(prefix="imnm-replay-", suffix=".jsonl")
            )
            shutil.copyfileobj(sys.stdin.buffer, spool)
            spool.flush()
            path = spool.name
        else:
            _open(path).close()  # a usage error here, not a traceback from every worker
        shared = stack.enter_context(replay_in_shares(path, args.jobs, config, now))
        table = args.format == "table"
        if table:
            _table_header(sys.stdout)
        out = sys.stdout.buffer
        for document in shared.transitions():
            if table:
                _table_row(sys.stdout, AlertTransition.model_validate_json(document))
            else:
                out.write(document + b"\n")
        out.flush()
    elapsed = time.perf_counter() - started
    _report(shared.stats, shared.rejections, shared.patients, elapsed, sys.stderr)
    return EXIT_REJECTED if shared.stats.rejected_total else EXIT_OK


def _write(transition: AlertTransition, table: bool) -> None:
    if table:
        _table_row(sys.stdout, transition)
    else:
        sys.stdout.buffer.write(transition.model_dump_json().encode() + b"\n")


def _all(replay: Replay, lines: Iterator[bytes], now: float | None) -> Iterator[AlertTransition]:
    yield from replay.feed_lines(lines)
    yield from replay.finish(now)


def _report(
    s: ReplayStats, rejections: list[Rejection], patients: int, elapsed: float, err: IO[str]
) -> None:
    for rejection in rejections:
        print(f"line {rejection.line}: {rejection.reason}", file=err)
    rate = s.read / elapsed if elapsed > 0 else 0.0
    print(
        f"events read {s.read}, accepted {s.accepted}, duplicates {s.duplicates}, "
        f"stale order versions {s.stale_versions}, rejected {s.rejected_total}, "
        f"patients {patients}, {elapsed:.2f} s ({rate:,.0f} events/s)",
        file=err,
    )
    for code, count in sorted(s.rejected.items()):
        print(f"  rejected {code}: {count}", file=err)
    for key, count in sorted(s.transitions.items()):
        print(f"  transitions {key}: {count}", file=err)


_COLUMNS = (("raised_at", 17), ("status", 8), ("severity", 8), ("patient", 12), ("rule", 30))


def _table_header(out: IO[str]) -> None:
    out.write(" ".join(name.ljust(width) for name, width in _COLUMNS) + " summary\n")


def _table_row(out: IO[str], t: AlertTransition) -> None:
    when = (t.resolved_at or t.raised_at).strftime("%Y-%m-%d %H:%M")
    cells = (when, t.status, t.severity, t.patient_id[:12], t.rule)
    out.write(
        " ".join(c.ljust(w) for c, (_, w) in zip(cells, _COLUMNS, strict=True))
        + f" {t.summary}\n"
    )


def run_state(args: argparse.Namespace) -> int:
    try:
        now = parse_now(args.now)
        config = load_rules_config(args.rules_config)
        tune_gc_for_batch()
        replay = Replay(config)
        for _ in _all(replay, _lines(args.file), now):
            pass
    except UsageError as error:
        print(f"imnm state: {error}", file=sys.stderr)
        return EXIT_USAGE
    state = replay.states.get(args.patient)
    if state is None:
        print(f"imnm state: no events for patient {args.patient!r}", file=sys.stderr)
        return EXIT_USAGE
    at = replay.clock or 0.0
    picture = ClinicalPicture(state, at, config.pulse_threshold_mg_per_day)
    summary = {
        "as_of": _iso(at),
        "tracked": state.tracked_at(at),
        "phase": picture.phase.value,
        "prednisone_equivalent_mg_per_day": round(picture.prednisone_equivalent_mg_per_day, 3),
        "course_peak_mg_per_day": picture.course_peak_mg_per_day,
        "taper_started_at": _iso(picture.taper_started_at),
        "treatment_started_at": _iso(picture.treatment_started_at),
        "state": state.to_dict(),
    }
    sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return EXIT_REJECTED if replay.stats.rejected_total else EXIT_OK


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()
