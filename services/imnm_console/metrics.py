"""Prometheus metrics of the console. Labels are categories only: never a patient or alert id."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from imnm_console.domain.worklist import WorkState


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.transitions = Counter(
            "imnm_console_transitions_consumed",
            "alert.v1 transitions consumed, by outcome (new, updated, duplicate).",
            ["outcome"], registry=r,
        )
        self.rejected = Counter(
            "imnm_console_messages_rejected",
            "alert.v1 messages dead-lettered, by reason code.", ["reason"], registry=r,
        )
        self.actions = Counter(
            "imnm_console_actions",
            "Pharmacist actions recorded and published, by action.", ["action"], registry=r,
        )
        self.actions_refused = Counter(
            "imnm_console_actions_refused",
            "Actions not taken, by reason (invalid, wrong_user, not_found, refused, conflict, "
            "publish_failed).", ["reason"], registry=r,
        )
        self.unsigned_requests = Counter(
            "imnm_console_unsigned_requests",
            "Requests refused (401) for want of the sign-in proxy's user header.", registry=r,
        )

    def watch_worklist(self, counts: Callable[[], dict[WorkState, int]]) -> None:
        """Report the worklist's size per work state at every scrape (snoozes expire)."""
        self.registry.register(_WorklistCollector(counts))


class _WorklistCollector(Collector):
    def __init__(self, counts: Callable[[], dict[WorkState, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "imnm_console_worklist_alerts", "Alerts in the console, by work state.",
            labels=["state"],
        )
        for state, count in self._counts().items():
            family.add_metric([state.value], count)
        yield family

