"""`make bench`: measure, compare with the ceiling in the same run, print a table, save JSON.

Benchmarks are not tests: nothing here asserts a time. Figures are medians of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import RESULTS, UNSETTLED_DAYS, machine, median, run_json, save
from imnm_demo.generator import StreamSpec, generate_lines, with_orders_as_schedules


def _year_stream(patients: int, workdir: Path) -> Path:
    """The seeded one-year stream every in-process section reads, written once per run."""
    path = workdir / f"stream-{patients}.jsonl"
    if not path.exists():
        with path.open("w") as out:
            for line in generate_lines(StreamSpec(patients=patients, seed=2025)):
                out.write(line + "\n")
    return path


def _written_ahead(path: Path) -> Path:
    """The same year with each run of an order's versions written ahead as a dose schedule
    (``imnm generate --orders-as-schedules``): the same history, fewer and larger events."""
    ahead = path.with_name(path.stem + "-schedules.jsonl")
    if not ahead.exists():
        lines = path.read_text().splitlines()
        ahead.write_text("".join(line + "\n" for line in with_orders_as_schedules(lines)))
    return ahead


REPLAY_JOBS = 2  # worker processes for ``imnm replay --jobs``: this machine kind's cores


def replay_benchmark(patients: int, runs: int, workdir: Path) -> dict[str, Any]:
    path = _year_stream(patients, workdir)
    replays = [run_json(["-m", "bench.replay_step", "replay", str(path)]) for _ in range(runs)]
    ceilings = [run_json(["-m", "bench.replay_step", "validate", str(path)]) for _ in range(runs)]
    memories = [run_json(["-m", "bench.replay_step", "memory", str(path)]) for _ in range(runs)]
    clis = [run_json(["-m", "bench.replay_step", "cli", str(path)]) for _ in range(runs)]
    jobs = [run_json(["-m", "bench.replay_step", "cli", str(path), str(REPLAY_JOBS)])
            for _ in range(runs)]
    ahead = _written_ahead(path)
    scheduled = [run_json(["-m", "bench.replay_step", "replay", str(ahead)])
                 for _ in range(runs)]
    engine = median([r["events_per_second"] for r in replays])
    ceiling = median([r["events_per_second"] for r in ceilings])
    last = replays[-1]
    return {
        "events": last["events"],
        "patients": last["patients"],
        "transitions": last["transitions"],
        "replay_events_per_second": engine,
        "validate_only_events_per_second": ceiling,
        "ratio_to_ceiling": round(engine / ceiling, 3),
        "replay_peak_rss_mib": median([r["peak_rss_mib"] for r in memories]),
        "cli_events_per_second": median([r["events_per_second"] for r in clis]),
        "cli_peak_rss_mib": median([r["peak_rss_mib"] for r in clis]),
        "cli_first_output_seconds": median([r["first_output_seconds"] for r in clis]),
        "cli_jobs": REPLAY_JOBS,
        "cli_jobs_events_per_second": median([r["events_per_second"] for r in jobs]),
        "cli_jobs_peak_rss_mib": median([r["peak_rss_mib"] for r in jobs]),
        "cli_jobs_first_output_seconds": median([r["first_output_seconds"] for r in jobs]),
        "cli_jobs_parent_peak_rss_mib": median([r["process_peak_rss_mib"] for r in jobs]),
        "cli_jobs_worker_peak_rss_mib": median([r["largest_child_peak_rss_mib"] for r in jobs]),
        "cli_jobs_same_transitions": all(r["transitions"] == clis[0]["transitions"]
                                         for r in [*clis, *jobs]),
        # The history written ahead: its events per second, and the seconds for the same
        # history against the replay above (same transitions, judged at the same times).
        "schedules_events": scheduled[-1]["events"],
        "schedules_events_per_second": median([r["events_per_second"] for r in scheduled]),
        "schedules_seconds": median([r["seconds"] for r in scheduled]),
        "replay_seconds": median([r["seconds"] for r in replays]),
        "schedules_same_transitions": all(r["transitions"] == last["transitions"]
                                          for r in scheduled),
        "state_bytes_per_patient_mean": last["state_bytes_per_patient_mean"],
        "state_bytes_per_patient_max": last["state_bytes_per_patient_max"],
        "state_json_bytes_per_patient_mean": last["state_json_bytes_per_patient_mean"],
        "state_json_bytes_per_patient_max": last["state_json_bytes_per_patient_max"],
        "rss_mib_per_10k_patients": median([r["rss_mib_per_10k_patients"] for r in memories]),
        "runs": runs,
        "raw": {"replay": replays, "validate": ceilings, "memory": memories, "cli": clis,
                "cli_jobs": jobs, "schedules": scheduled},
    }


def console_benchmark(patients: int, runs: int, workdir: Path) -> dict[str, Any]:
    path = _year_stream(patients, workdir)
    done = [run_json(["-m", "bench.console_step", str(path)]) for _ in range(runs)]
    last = done[-1]
    return {
        "transitions": last["transitions"],
        "alerts": last["alerts"],
        "open_alerts": last["open_alerts"],
        "ingest_transitions_per_second": median(
            [r["ingest_transitions_per_second"] for r in done]),
        "redelivery_transitions_per_second": median(
            [r["redelivery_transitions_per_second"] for r in done]),
        "pages": {
            page: {q: median([r["pages"][page][q] for r in done]) for q in ("p50_ms", "p99_ms")}
            for page in last["pages"]
        },
        "page_requests": last["page_requests"],
        "runs": runs,
        "raw": done,
    }


def ingest_benchmark(patients: int, runs: int, workdir: Path) -> dict[str, Any]:
    path = _year_stream(patients, workdir)
    done = [run_json(["-m", "bench.ingest_step", str(path)]) for _ in range(runs)]
    last = done[-1]
    counts = ("messages", "events", "rejected", "first_rejection", "round_trip_mismatches",
              "mismatch_examples")
    return {
        "source_events": last["source_events"],
        **{
            kind: {
                **{key: last[kind][key] for key in counts},
                "messages_per_second": median([r[kind]["messages_per_second"] for r in done]),
                "events_per_second": median([r[kind]["events_per_second"] for r in done]),
            }
            for kind in ("hl7v2", "fhir")
        },
        "runs": runs,
        "raw": done,
    }


LONG_TERM_YEARS = 5
LONG_TERM_RENEW_EVERY_DAYS = 90.0


def long_term_benchmark(patients: int, runs: int, workdir: Path,
                        tracker_patients: int = 0) -> dict[str, Any]:
    """State per tracked patient after five years of care with every order renewed each 90 days
    (a new order id per renewal, so the order history grows), old orders settled or kept; with
    ``tracker_patients``, also one tracker worker on such a stream, settled or kept."""
    path = workdir / f"stream-{patients}-long-term.jsonl"
    spec = StreamSpec(patients=patients, days=365 * LONG_TERM_YEARS, seed=2025,
                      renew_every_days=LONG_TERM_RENEW_EVERY_DAYS)
    with path.open("w") as out:
        for line in generate_lines(spec):
            out.write(line + "\n")
    settled = [run_json(["-m", "bench.replay_step", "replay", str(path)]) for _ in range(runs)]
    kept = [run_json(["-m", "bench.replay_step", "replay_unsettled", str(path)])
            for _ in range(runs)]
    result: dict[str, Any] = {
        "years": LONG_TERM_YEARS, "renew_every_days": LONG_TERM_RENEW_EVERY_DAYS,
        "events": settled[-1]["events"], "patients": settled[-1]["patients"], "runs": runs,
        "settled": _long_term_summary(settled), "kept": _long_term_summary(kept),
    }
    if tracker_patients:
        try:
            from bench.pipeline import tracker_long_term
            from imnm_common.kafka.local_broker import LocalKafkaBroker
        except ImportError as missing:
            print(f"long-term tracker benchmark unavailable: {missing}", file=sys.stderr)
            return result
        tracker_spec = replace(spec, patients=tracker_patients)
        end = tracker_spec.start + timedelta(days=tracker_spec.days + 1)  # after the stream
        lines = [line.encode() for line in generate_lines(tracker_spec)]
        with LocalKafkaBroker() as broker:
            measured = asyncio.run(tracker_long_term(
                broker.bootstrap, lines, runs, workdir, end.isoformat().replace("+00:00", "Z"),
                UNSETTLED_DAYS, "lt"))
        result["tracker"] = {"patients": tracker_patients, **measured}
    return result


def _long_term_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    # sizes and transitions are deterministic (the same in every run); only the rate varies
    sizes = ("state_bytes_per_patient_mean", "state_bytes_per_patient_max",
             "state_json_bytes_per_patient_mean", "state_json_bytes_per_patient_max",
             "orders_per_patient_mean", "transitions")
    return {**{key: runs[-1][key] for key in sizes},
            "events_per_second": median([r["events_per_second"] for r in runs])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only",
                        choices=("replay", "long-term", "console", "ingest", "pipeline",
                                 "throughput", "restart", "latency", "all"),
                        default="all")
    parser.add_argument("--long-term-patients", type=int, default=1000,
                        help="patients in the five-year stream (default 1,000)")
    parser.add_argument("--long-term-tracker-patients", type=int, default=400,
                        help="patients in the tracker's five-year run on the broker (default "
                             "400; 0 skips it)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS,
                        help="where the JSON goes (default bench/results)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="imnm-bench-") as tmp:
        if args.only in ("replay", "all"):
            results["replay"] = replay_benchmark(args.patients, args.runs, Path(tmp))
        if args.only in ("long-term", "all"):
            results["long_term"] = long_term_benchmark(
                args.long_term_patients, args.runs, Path(tmp), args.long_term_tracker_patients)
        if args.only in ("console", "all"):
            results["console"] = console_benchmark(args.patients, args.runs, Path(tmp))
        if args.only in ("ingest", "all"):
            results["ingest"] = ingest_benchmark(args.patients, args.runs, Path(tmp))
        if args.only in ("pipeline", "all"):
            try:
                from bench.pipeline import pipeline_benchmark
            except ImportError as missing:
                print(f"pipeline benchmarks unavailable: {missing}", file=sys.stderr)
            else:
                results["pipeline"] = pipeline_benchmark(args.patients, args.runs, Path(tmp))
        # throughput, restart and latency are the parts of the pipeline section of a full run
        if args.only == "throughput":
            from bench.pipeline import throughput_benchmark

            results["throughput"] = throughput_benchmark(args.patients, args.runs, Path(tmp))
        if args.only == "restart":
            from bench.pipeline import restart_benchmark

            results["restart"] = restart_benchmark(args.patients, args.runs, Path(tmp))
        if args.only == "latency":
            from bench.pipeline import latency_benchmark

            results["latency"] = latency_benchmark(args.runs, Path(tmp))
    path = save("bench", results, args.results_dir)
    _print(results)
    print(f"\nsaved {path}")
    return 0


def _print(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
          f"Python {m['python']}")
    replay = results.get("replay")
    if replay:
        print(f"\nreplay: {replay['events']:,} events, {replay['patients']:,} patients, "
              f"median of {replay['runs']} runs")
        rows = [
            ("replay engine (in-process, lines in memory)",
             f"{replay['replay_events_per_second']:,} events/s"),
            ("parse+validate only (ceiling)",
             f"{replay['validate_only_events_per_second']:,} events/s"),
            ("ratio engine/ceiling", f"{replay['ratio_to_ceiling']:.3f}"),
            ("replay peak RSS (streaming the file)", f"{replay['replay_peak_rss_mib']} MiB"),
            ("imnm replay FILE > file (whole CLI)",
             f"{replay['cli_events_per_second']:,} events/s, "
             f"peak RSS {replay['cli_peak_rss_mib']} MiB, "
             f"first line after {replay['cli_first_output_seconds']} s"),
            (f"imnm replay FILE --jobs {replay['cli_jobs']} > file",
             f"{replay['cli_jobs_events_per_second']:,} events/s, "
             f"first line after {replay['cli_jobs_first_output_seconds']} s, "
             f"parent {replay['cli_jobs_parent_peak_rss_mib']} MiB, largest worker "
             f"{replay['cli_jobs_worker_peak_rss_mib']} MiB, same transitions: "
             f"{'yes' if replay['cli_jobs_same_transitions'] else 'NO'}"),
            ("the year with orders written ahead",
             f"{replay['schedules_events']:,} events (dose schedules) in "
             f"{replay['schedules_seconds']} s against {replay['replay_seconds']} s, "
             f"{replay['schedules_events_per_second']:,} events/s, same transitions: "
             f"{'yes' if replay['schedules_same_transitions'] else 'NO'}"),
            ("state per patient in the table (mean/max)",
             f"{replay['state_bytes_per_patient_mean']:,} / "
             f"{replay['state_bytes_per_patient_max']:,} bytes"),
            ("  of which JSON before LZ4 (mean/max)",
             f"{replay['state_json_bytes_per_patient_mean']:,} / "
             f"{replay['state_json_bytes_per_patient_max']:,} bytes"),
            ("RSS held by states per 10,000 patients",
             f"{replay['rss_mib_per_10k_patients']} MiB"),
        ]
        for label, value in rows:
            print(f"  {label:<40} {value}")
    long_term = results.get("long_term")
    if long_term:
        print(f"\nlong-term care: {long_term['events']:,} events, {long_term['patients']:,} "
              f"patients, {long_term['years']} years, orders renewed every "
              f"{long_term['renew_every_days']:g} days, median of {long_term['runs']} runs")
        for label, key in (("old orders settled (the product)", "settled"),
                           ("every order kept (settling off)", "kept")):
            r = long_term[key]
            print(f"  {label:<40} state {r['state_bytes_per_patient_mean']:,} / "
                  f"{r['state_bytes_per_patient_max']:,} bytes (JSON "
                  f"{r['state_json_bytes_per_patient_mean']:,} / "
                  f"{r['state_json_bytes_per_patient_max']:,}), "
                  f"{r['orders_per_patient_mean']} orders, {r['events_per_second']:,} events/s")
        tracker = long_term.get("tracker")
        if tracker:
            print(f"  {'tracker, 1 worker, ' + format(tracker['patients'], ',') + ' patients':<40} "
                  f"settled {tracker['settled_events_per_second']:,} events/s, kept "
                  f"{tracker['kept_events_per_second']:,} ({tracker['events']:,} events)")
    console = results.get("console")
    if console:
        print(f"\nconsole: {console['transitions']:,} transitions of the replay ("
              f"{console['alerts']:,} alerts, {console['open_alerts']:,} open), SQLite, "
              f"median of {console['runs']} runs")
        print(f"  {'into the store (batches of 500)':<40} "
              f"{console['ingest_transitions_per_second']:,} transitions/s")
        print(f"  {'the same again (all duplicates)':<40} "
              f"{console['redelivery_transitions_per_second']:,} transitions/s")
        for page, t in console["pages"].items():
            print(f"  {page + ' (in-process), p50 / p99':<40} "
                  f"{t['p50_ms']} / {t['p99_ms']} ms")
    ingest = results.get("ingest")
    if ingest:
        hl7, fhir = ingest["hl7v2"], ingest["fhir"]
        print(f"\ningest: {ingest['source_events']:,} events of the stream as "
              f"{hl7['messages']:,} HL7 v2 and {fhir['messages']:,} FHIR messages, converted "
              f"in-process, median of {ingest['runs']} runs")
        for label, r in (("HL7 v2 (ORU^R01, RDE^O11)", hl7),
                         ("FHIR R4 (Observation, MedRequest, Cond.)", fhir)):
            print(f"  {label:<40} {r['messages_per_second']:,} messages/s, "
                  f"{r['events_per_second']:,} events/s")
        print(f"  {'rejected / round-trip mismatches':<40} "
              f"HL7 v2 {hl7['rejected']:,} / {hl7['round_trip_mismatches']:,}, "
              f"FHIR {fhir['rejected']:,} / {fhir['round_trip_mismatches']:,}")
        for name, r in (("HL7 v2", hl7), ("FHIR", fhir)):
            if r["first_rejection"]:
                print(f"    {name} first rejection: {r['first_rejection']}")
            for example in r["mismatch_examples"]:
                print(f"    {name} mismatch: {example}")
    for section in ("pipeline", "throughput", "restart", "latency"):
        for label, value in results.get(section, {}).get("table", []):
            print(f"  {label:<40} {value}")


if __name__ == "__main__":
    sys.exit(main())
