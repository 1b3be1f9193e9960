"""`make bench`: measure, compare with the ceiling in the same run, print a table, save JSON.

Benchmarks are not tests: nothing here asserts a time. Figures are medians of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import RESULTS, machine, median, run_json, save
from imnm_demo.generator import StreamSpec, generate_lines


def replay_benchmark(patients: int, runs: int, workdir: Path) -> dict[str, Any]:
    path = workdir / f"stream-{patients}.jsonl"
    with path.open("w") as out:
        for line in generate_lines(StreamSpec(patients=patients, seed=2025)):
            out.write(line + "\n")
    replays = [run_json(["-m", "bench.replay_step", "replay", str(path)]) for _ in range(runs)]
    ceilings = [run_json(["-m", "bench.replay_step", "validate", str(path)]) for _ in range(runs)]
    memories = [run_json(["-m", "bench.replay_step", "memory", str(path)]) for _ in range(runs)]
    clis = [run_json(["-m", "bench.replay_step", "cli", str(path)]) for _ in range(runs)]
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
        "state_bytes_per_patient_mean": last["state_bytes_per_patient_mean"],
        "state_bytes_per_patient_max": last["state_bytes_per_patient_max"],
        "state_json_bytes_per_patient_mean": last["state_json_bytes_per_patient_mean"],
        "state_json_bytes_per_patient_max": last["state_json_bytes_per_patient_max"],
        "rss_mib_per_10k_patients": median([r["rss_mib_per_10k_patients"] for r in memories]),
        "runs": runs,
        "raw": {"replay": replays, "validate": ceilings, "memory": memories, "cli": clis},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("replay", "pipeline", "all"), default="all")
    parser.add_argument("--results-dir", type=Path, default=RESULTS,
                        help="where the JSON goes (default bench/results)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="imnm-bench-") as tmp:
        if args.only in ("replay", "all"):
            results["replay"] = replay_benchmark(args.patients, args.runs, Path(tmp))
        if args.only in ("pipeline", "all"):
            try:
                from bench.pipeline import pipeline_benchmark
            except ImportError as missing:
                print(f"pipeline benchmarks unavailable: {missing}", file=sys.stderr)
            else:
                results["pipeline"] = pipeline_benchmark(args.patients, args.runs, Path(tmp))
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
            ("imnm replay FILE > /dev/null (whole CLI)",
             f"{replay['cli_events_per_second']:,} events/s, "
             f"peak RSS {replay['cli_peak_rss_mib']} MiB"),
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
    pipeline = results.get("pipeline")
    if pipeline:
        for label, value in pipeline.get("table", []):
            print(f"  {label:<40} {value}")


if __name__ == "__main__":
    sys.exit(main())
