"""The demo's event source: a year of history that ends now, then a slow live trickle.

History makes alerts appear within seconds of `imnm up --demo` (the tracker judges past events
against the wall clock); the trickle keeps the console moving (new CK results, the occasional
statin or daily methotrexate order, which raise critical alerts at once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from imnm_demo.generator import StreamSpec, generate

log = logging.getLogger(__name__)

Send = Callable[[str, bytes], Awaitable[None]]  # (patient_id key, JSON value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def run_demo(
    send: Send,
    *,
    patients: int = 60,
    rate_per_second: float = 400.0,
    live_interval_seconds: float = 3.0,
    seed: int = 11,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    start = now() - timedelta(days=365)
    spec = StreamSpec(patients=patients, days=365, start=start, seed=seed, id_prefix="DEMO")
    history = [e for e in generate(spec) if e["occurred_at"] <= _iso(now())]
    log.info("demo: publishing %d historical events for %d patients", len(history), patients)
    for index, event in enumerate(history, start=1):
        await send(event["patient_id"], json.dumps(event).encode())
        if index % 50 == 0:
            await asyncio.sleep(50 / rate_per_second)
    log.info("demo: history published; live events every %.0f s", live_interval_seconds)
    rng = random.Random(seed)
    counter = 0
    while True:
        await asyncio.sleep(live_interval_seconds)
        counter += 1
        patient_id = f"DEMO-{rng.randrange(patients):06d}"
        event = _live_event(rng, patient_id, counter, now())
        await send(patient_id, json.dumps(event).encode())


def _live_event(rng: random.Random, patient_id: str, n: int, at: datetime) -> dict[str, object]:
    base = {"event_id": f"{patient_id}-LIVE{n:06d}", "patient_id": patient_id,
            "occurred_at": _iso(at), "source": "demo-live"}
    roll = rng.random()
    if roll < 0.06:
        return {**base, "event_type": "medication_order", "order_id": f"{patient_id}-LIVE-ST{n}",
                "status": "active",
                "medication": {"rxnorm": "83367", "name": "atorvastatin 20 mg tablet"},
                "dose": {"value": 20, "unit": "mg"},
                "frequency": {"times": 1, "period": 1, "unit": "d"}}
    if roll < 0.1:
        return {**base, "event_type": "medication_order", "order_id": f"{patient_id}-LIVE-MTX{n}",
                "status": "active",
                "medication": {"rxnorm": "6851", "name": "methotrexate 2.5 mg tablet"},
                "dose": {"value": 10, "unit": "mg"},
                "frequency": {"times": 1, "period": 1, "unit": "d"}}
    if roll < 0.7:
        return {**base, "event_type": "lab_result", "loinc": "2157-6",
                "value": round(rng.uniform(90, 4000)), "unit": "U/L", "reference_high": 200,
                "result_id": f"{patient_id}-LIVE-CK{n}"}
    return {**base, "event_type": "muscle_assessment", "instrument": "MMT8",
            "score": round(rng.uniform(80, 150))}
