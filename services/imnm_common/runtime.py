"""Process-wide settings of the batch entry points (``imnm replay``, ``imnm state``).

CPython's cyclic garbage collector runs a young-generation pass every 700 net new container
objects and a full pass over the whole heap whenever the long-lived objects grew by a quarter.
A replay builds its heap steadily (every patient's state, with its derived pictures) and creates
millions of short-lived lists and tuples in the rules, so the default thresholds spent 6.25 s of
a 5,000-patient year in 1,475 collections, 11 of them full passes of up to 815 ms (one-off
measurement). At the thresholds below the same replay made 20 collections taking 1.29 s, with
the same peak RSS: the full passes are still gated by the quarter-growth rule, so unreachable
cycles (a state dropped with its cached picture) are collected as before.

Batch only: a young pass now scans up to ~1 million objects at once (pauses of ~0.1-0.4 s were
seen), which a replay does not mind and a latency-bound tracker would.
"""

from __future__ import annotations

import gc

BATCH_GC_THRESHOLDS = (50_000, 20, 1)


def tune_gc_for_batch() -> None:
    gc.set_threshold(*BATCH_GC_THRESHOLDS)
