"""The console benchmark's code on a tiny stream: it runs, and its figures are consistent.
Nothing here asserts a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import main as bench_main

REPO = Path(__file__).resolve().parents[3]


def test_make_bench_console_section_on_a_tiny_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)  # the step runs as a ``python -m bench.console_step`` child
    assert bench_main(["--patients", "8", "--runs", "1", "--only", "console",
                       "--results-dir", str(tmp_path)]) == 0
    console = json.loads((tmp_path / "bench-latest.json").read_text())["console"]
    # every transition is an open or a resolve of one alert: at most two per alert
    assert 0 < console["alerts"] <= console["transitions"] <= 2 * console["alerts"]
    assert 0 <= console["open_alerts"] <= console["alerts"]
    assert console["ingest_transitions_per_second"] > 0
    assert set(console["pages"]) == {"worklist_html", "worklist_api", "alert_html"}
    for page in console["pages"].values():
        assert 0 < page["p50_ms"] <= page["p99_ms"]
    assert "console:" in capsys.readouterr().out
