"""The console's share of `make bench`: how fast alert transitions go into its store, and how
long its pages take with a year of alerts in it. One run per process (``python -m
bench.console_step STREAM``), printing one JSON line.

Transitions come from replaying the benchmark's stream through the real engine. Pages are
requested in-process through the ASGI app (FastAPI's TestClient): the store, the queries and the
templates, not the network.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median, quantiles
from typing import Any

from imnm_common.contracts.actions import AlertAction
from imnm_common.service_layer.replay import Replay
from imnm_console.adapters.store import AlertStore, Received
from imnm_console.domain.worklist import WorkState
from imnm_console.entrypoints.http import create_app
from imnm_console.metrics import ConsoleMetrics
from imnm_console.service_layer.actions import ActionService

BATCH = 500  # the feed's max_records per poll
PAGE_REQUESTS = 200


class _Discard:
    async def publish(self, action: AlertAction) -> None:
        return None


def _ms(samples: list[float]) -> dict[str, float]:
    cuts = quantiles(samples, n=100)
    return {"p50_ms": round(median(samples) * 1000, 2), "p99_ms": round(cuts[98] * 1000, 2)}


def main(stream: Path) -> dict[str, Any]:
    replay = Replay()
    with stream.open("rb") as lines:
        transitions = [*replay.feed_lines(lines), *replay.finish()]
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="imnm-console-bench-") as tmp:
        store = AlertStore(f"sqlite:///{Path(tmp) / 'console.db'}")
        items = [(t, Received("imnm.alerts.v1", 0, i)) for i, t in enumerate(transitions)]
        started = time.perf_counter()
        for i in range(0, len(items), BATCH):
            store.apply_transitions(items[i:i + BATCH], now)
        ingest = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(0, len(items), BATCH):
            store.apply_transitions(items[i:i + BATCH], now)
        redelivery = time.perf_counter() - started
        counts = store.counts(now)

        from fastapi.testclient import TestClient

        metrics = ConsoleMetrics()
        service = ActionService(store, _Discard(), metrics, lambda: now)
        client = TestClient(create_app(store, service, metrics, lambda: now))
        some_alert = store.worklist(None, now, limit=1).cards[0].alert_id
        pages = {
            "worklist_html": "/",
            "worklist_api": "/api/alerts?limit=50",
            "alert_html": f"/alerts/{some_alert}",
        }
        timings: dict[str, dict[str, float]] = {}
        for name, path in pages.items():
            client.get(path)  # templates compiled, caches warm
            samples = []
            for _ in range(PAGE_REQUESTS):
                started = time.perf_counter()
                response = client.get(path)
                samples.append(time.perf_counter() - started)
                assert response.status_code == 200, (path, response.status_code)
            timings[name] = _ms(samples)
        store.close()
    return {
        "transitions": len(transitions),
        "alerts": sum(counts.values()),
        "open_alerts": counts[WorkState.NEEDS_ACTION],
        "ingest_transitions_per_second": round(len(transitions) / ingest),
        "redelivery_transitions_per_second": round(len(transitions) / redelivery),
        "pages": timings,
        "page_requests": PAGE_REQUESTS,
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
