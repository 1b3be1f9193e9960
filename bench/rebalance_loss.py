"""Does a rebalance during a backlog lose events? Workers join, leave and die while the group
works through a published history; afterwards every event must be in its patient's state.

The check does not rely on alerts or metrics (a killed worker's are gone, and a lost event need
not change an alert): the workers run with ``seen_event_ids_kept`` above any patient's event
count, so each patient's final state in the changelog names every event applied to it
(:func:`imnm_tracker.testing.unapplied_events`). A round where the group's committed offsets
reach the end of the events topic but some event is not in its state lost that event; a round
whose group never catches up is stuck. Either is a failure of the tracker's at-least-once
promise.

    python -m bench.rebalance_loss --rounds 10 --patients 1000 --steps 8

writes bench/results/rebalance-loss-<stamp>.json and exits 1 if any round lost events, got stuck
or had a worker exit on its own (a crash: a supervisor would restart it, so it loses nothing by
itself, but it is a defect; the round goes on without it). Each round's plan of membership
changes comes from its seed, so a failing round can be run again (``--seed``, ``--rounds 1``);
``--keep DIR`` keeps the workers' logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.common import machine, save
from imnm_common.kafka.local_broker import LocalKafkaBroker
from imnm_common.kafka.topics import create_topics
from imnm_demo.generator import StreamSpec, generate_lines
from imnm_tracker.testing import TrackerCluster, WorkerProcess, unapplied_events

PARTITIONS = 6
NOW = "2026-01-01T00:00:00Z"  # after the generated year: a backlog, judged on its event times
KEEP_EVERY_EVENT_ID = 100_000  # seen_event_ids_kept above any generated patient's event count
MAX_WORKERS = 3
Action = Literal["join", "stop", "kill"]


@dataclass(frozen=True)
class Step:
    after_seconds: float  # since the previous step
    action: Action
    worker: str


@dataclass
class RoundResult:
    seed: int
    events: int
    patients: int
    plan: list[Step]
    outcome: Literal["complete", "lost", "stuck"] = "complete"
    lost_events: int = 0
    patients_with_lost_events: int = 0
    # where the lost events were: "partition:first-last" runs of offsets on the events topic
    lost_offsets: list[str] = field(default_factory=list)
    # workers that exited without being told to (a supervisor would restart them; here the
    # round goes on without them): "w3 (exit 1)"
    crashed_workers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    detail: str = ""


def offset_runs(places: Iterable[tuple[int, int]]) -> list[str]:
    """``(partition, offset)`` pairs as sorted runs of consecutive offsets: ``"2:40-57"``."""
    runs: list[list[int]] = []
    for partition, offset in sorted(places):
        if runs and runs[-1][0] == partition and runs[-1][2] == offset - 1:
            runs[-1][2] = offset
        else:
            runs.append([partition, offset, offset])
    return [f"{p}:{first}-{last}" for p, first, last in runs]


def churn_plan(seed: int, steps: int, *, min_gap: float = 2.0, max_gap: float = 6.0
               ) -> list[Step]:
    """Membership changes from one running worker ("w1"): joins up to ``MAX_WORKERS``, graceful
    stops (leave the group at once) and SIGKILLs (the group notices after the session timeout),
    never leaving the group empty."""
    rng = random.Random(seed)
    members = ["w1"]
    started = 1
    plan: list[Step] = []
    for _ in range(steps):
        if len(members) == 1:
            action: Action = "join"
        elif len(members) >= MAX_WORKERS:
            action = rng.choice(["stop", "kill"])
        else:
            action = rng.choice(["join", "stop", "kill"])
        if action == "join":
            started += 1
            worker = f"w{started}"
            members.append(worker)
        else:
            worker = rng.choice(members)
            members.remove(worker)
        plan.append(Step(round(rng.uniform(min_gap, max_gap), 2), action, worker))
    return plan


async def churn_round(bootstrap: str, lines: list[bytes], workdir: Path, tag: str, seed: int,
                      steps: int, *, settle_timeout: float = 600.0,
                      plan: list[Step] | None = None) -> RoundResult:
    """One round: ``plan`` (default: :func:`churn_plan` of ``seed`` and ``steps``) from "w1"
    alone, then the wait for the group to commit everything, then the check."""
    plan = churn_plan(seed, steps) if plan is None else plan
    patients = {json.loads(line)["patient_id"] for line in lines}
    result = RoundResult(seed=seed, events=len(lines), patients=len(patients), plan=plan)
    rules = workdir / tag / "rules.json"
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(json.dumps({"seen_event_ids_kept": KEEP_EVERY_EVENT_ID}))
    # the product's batch window and commit interval: the harness tests what ships
    cluster = TrackerCluster(bootstrap, f"stress.{tag}", workdir / tag, partitions=PARTITIONS,
                             timer_interval=1.0, batch_window=None, commit_interval=None,
                             rules_config=str(rules))
    started = time.monotonic()
    try:
        await create_topics(bootstrap, cluster.topics.all(), PARTITIONS, 1)
        landed = await cluster.publish_lines(lines)
        cluster.set_clock(NOW)
        workers: dict[str, WorkerProcess] = {"w1": cluster.start_worker("w1")}
        for step in plan:
            await asyncio.sleep(step.after_seconds)
            note_crashes(workers, result)
            if step.action == "join":
                workers[step.worker] = cluster.start_worker(step.worker)
            elif (leaving := workers.pop(step.worker, None)) is None:
                continue  # it crashed before its turn (noted above)
            elif step.action == "stop":
                leaving.stop()
            else:
                leaving.kill()
        stuck = ""
        try:
            await cluster.wait_caught_up(timeout=settle_timeout)
        except AssertionError as error:
            stuck = str(error)
        note_crashes(workers, result)
        if stuck:
            result.outcome, result.detail = "stuck", stuck
            return result
        for worker in workers.values():
            if worker.stop() != 0:  # graceful: its last states are in the changelog
                raise RuntimeError(f"worker {worker.name} did not stop cleanly:\n"
                                   f"{worker.log_tail()}")
        missing = unapplied_events(lines, await cluster.latest_states())
        if missing:  # where they were: decodes the stream again, so only when something is lost
            lost_ids = {event_id for ids in missing.values() for event_id in ids}
            result.outcome = "lost"
            result.lost_events = sum(len(ids) for ids in missing.values())
            result.patients_with_lost_events = len(missing)
            result.lost_offsets = offset_runs(
                (meta.partition, meta.offset) for line, meta in zip(lines, landed, strict=True)
                if json.loads(line)["event_id"] in lost_ids
            )
        return result
    finally:
        cluster.close()
        result.seconds = round(time.monotonic() - started, 1)


def note_crashes(workers: dict[str, WorkerProcess], result: RoundResult) -> None:
    """Move the workers that exited on their own from ``workers`` to the round's crash list."""
    for name, worker in list(workers.items()):
        if not worker.alive:
            del workers[name]
            result.crashed_workers.append(f"{name} (exit {worker.process.returncode})")


def run(rounds: int, patients: int, steps: int, seed: int, workdir: Path,
        settle_timeout: float = 600.0) -> dict[str, Any]:
    lines = [line.encode() for line in generate_lines(StreamSpec(patients=patients, seed=2025))]
    results: list[RoundResult] = []
    with LocalKafkaBroker() as broker:
        for number in range(rounds):
            result = asyncio.run(churn_round(broker.bootstrap, lines, workdir,
                                             f"r{number}-s{seed + number}", seed + number,
                                             steps, settle_timeout=settle_timeout))
            results.append(result)
            crashed = (f", crashed: {', '.join(result.crashed_workers)}"
                       if result.crashed_workers else "")
            print(f"round {number + 1}/{rounds} seed {result.seed}: {result.outcome}, "
                  f"{result.lost_events} events lost, {result.seconds} s{crashed}",
                  file=sys.stderr, flush=True)
    return {
        "machine": machine(),
        "rounds": rounds,
        "patients": patients,
        "events": len(lines),
        "steps_per_round": steps,
        "settle_timeout_seconds": settle_timeout,
        "complete": sum(r.outcome == "complete" for r in results),
        "lost": sum(r.outcome == "lost" for r in results),
        "stuck": sum(r.outcome == "stuck" for r in results),
        "lost_events": sum(r.lost_events for r in results),
        "crashed_workers": sum(len(r.crashed_workers) for r in results),
        "results": [asdict(r) for r in results],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rebalance_loss",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=8, help="membership changes per round")
    parser.add_argument("--seed", type=int, default=1, help="the first round's seed")
    parser.add_argument("--keep", type=Path, help="keep the workers' logs under this directory")
    parser.add_argument("--settle-timeout", type=float, default=600.0,
                        help="seconds after the last change for the group to commit everything")
    parser.add_argument("--devlog", action="store_true",
                        help="workers log faust's developer messages (seeks, dropped messages)")
    args = parser.parse_args(argv)
    if args.devlog:
        os.environ["DEVLOG"] = "1"  # read by mode when a worker imports it
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        summary = run(args.rounds, args.patients, args.steps, args.seed, args.keep,
                      args.settle_timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="imnm-rebalance-") as tmp:
            summary = run(args.rounds, args.patients, args.steps, args.seed, Path(tmp),
                          args.settle_timeout)
    path = save("rebalance-loss", summary)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("results", "machine")}))
    print(f"wrote {path}", file=sys.stderr)
    return 0 if summary["complete"] == summary["rounds"] and not summary["crashed_workers"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
