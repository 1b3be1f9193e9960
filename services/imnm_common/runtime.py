"""Process-wide garbage-collector settings of the entry points.

CPython's cyclic collector runs a young-generation pass every 700 net new container objects and
a full pass over the whole heap whenever the long-lived objects grew by a quarter. Both the
replay and the tracker hold every patient's state (with its derived pictures) and create
millions of short-lived lists and tuples in the rules, so at the defaults:

- a 5,000-patient year of ``imnm replay`` spent 6.25 s in 1,475 collections, 11 of them full
  passes of up to 815 ms (one-off measurement);
- a tracker worker processing a 2,000-patient year (97,000 events) spent 4.6 s in 2,738
  collections, 3.5 s of them in 21 full passes of up to 0.34 s (one-off, gc.callbacks). Objects
  that live for one batch (its messages, events and transitions) survive the 700-object young
  passes, are promoted, and count as long-lived growth: they trigger full passes over every
  patient's state although they are gone a few milliseconds later.

Batch (``imnm replay``, ``imnm state``): young passes every 50,000 net new objects. The same
replay made 20 collections taking 1.29 s, with the same peak RSS. A young pass can then scan up
to ~1 million objects at once (pauses of ~0.1-0.4 s were seen), which a replay does not mind.

Service (``imnm tracker``): young passes every 20,000 net new objects, the older generations as
CPython's defaults. A batch's objects are then mostly freed (by reference counting) before a
young pass sees them, so they are no longer promoted: the same tracker run spent 0.8 s in 29
collections, one of them full. A young pass over 20,000 objects takes a few milliseconds, far
inside the 100 ms latency goal. The worker reports every pause in
``imnm_tracker_gc_pause_seconds``.

In both, the full passes are still gated by the quarter-growth rule, so unreachable cycles (a
state dropped with its cached picture) are collected as before.
"""

from __future__ import annotations

import gc

BATCH_GC_THRESHOLDS = (50_000, 20, 1)
SERVICE_GC_THRESHOLDS = (20_000, 10, 10)


def tune_gc_for_batch() -> None:
    gc.set_threshold(*BATCH_GC_THRESHOLDS)


def tune_gc_for_service() -> None:
    gc.set_threshold(*SERVICE_GC_THRESHOLDS)
