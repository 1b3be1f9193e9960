"""deploy/prometheus/imnm-alerts.yml names only metrics and labels the services export, routes
every alert by severity, and links a runbook section that exists. (promtool's own checks and a
real Prometheus run are in tests/integration/test_prometheus.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from imnm_console.domain.worklist import WorkState
from imnm_console.metrics import ConsoleMetrics
from imnm_ingest.metrics import IngestMetrics
from imnm_tracker.metrics import TrackerMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "imnm-alerts.yml"
RUNBOOK = ROOT / "docs" / "operations.md"
# What Prometheus adds to every scraped series, and a histogram's bucket bound.
TARGET_LABELS = {"job", "instance"}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
             "gauge": ("",)}


def exported() -> dict[str, set[str]]:
    """Series name -> label names, for every metric the three services define."""
    series: dict[str, set[str]] = {}
    console = ConsoleMetrics()
    console.watch_worklist(lambda: dict.fromkeys(WorkState, 0))
    for metrics in (TrackerMetrics(), IngestMetrics(), console):
        for metric in vars(metrics).values():
            if not isinstance(metric, MetricWrapperBase):
                continue
            # prometheus_client keeps a metric's name, type and label names private
            name, kind, labels = metric._name, metric._type, set(metric._labelnames)
            for suffix in _SUFFIXES[kind]:
                series[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for family in console.registry.collect():  # the worklist gauge, a custom collector
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    series["up"] = set()
    return series


def alerting_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(series name, label names matched) of every vector selector in ``expr``."""
    found = []
    for match in re.finditer(r"\b(up|imnm_[a-z0-9_]+)\b(\{[^}]*\})?", expr):
        matchers = set(re.findall(r"([a-z_]+)\s*=~?", match.group(2) or ""))
        found.append((match.group(1), matchers))
    return found


def _grouping(expr: str) -> list[set[str]]:
    return [{label.strip() for label in labels.split(",")}
            for labels in re.findall(r"\bby\s*\(([^)]*)\)", expr)]


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_the_rule_reads_what_the_services_export(rule: dict[str, Any]) -> None:
    series = exported()
    names = _selectors(rule["expr"])
    assert names, rule["expr"]
    known_labels: set[str] = set(TARGET_LABELS)
    for name, matched in names:
        assert name in series, f"{rule['alert']}: no service exports {name}"
        assert matched <= series[name] | TARGET_LABELS, (rule["alert"], name, matched)
        known_labels |= series[name]
    for labels in _grouping(rule["expr"]):
        assert labels <= known_labels, (rule["alert"], labels)


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_is_routed_and_has_a_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert rule["annotations"]["summary"]
    runbook = rule["annotations"]["runbook"]
    assert runbook == f"docs/operations.md#{rule['alert'].lower()}"
    assert f"\n### {rule['alert']}\n" in RUNBOOK.read_text()


def test_no_rule_groups_by_a_patient() -> None:
    for rule in alerting_rules():
        assert "patient" not in rule["expr"], rule["alert"]


def test_the_selector_reading_catches_an_unknown_metric() -> None:
    assert _selectors('increase(imnm_tracker_nope_total{reason="x"}[5m])') == [
        ("imnm_tracker_nope_total", {"reason"})]
    assert "imnm_tracker_nope_total" not in exported()
