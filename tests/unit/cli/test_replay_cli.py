"""`imnm replay` / `imnm state` as a user runs them: output, stderr report and exit status."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "events.jsonl"


def imnm(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "imnm_cli.main", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def transitions(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_replay_prints_alert_transitions_and_reports_rejected_lines() -> None:
    result = imnm("replay", str(EXAMPLE), "--now", "2025-06-01T00:00:00Z")
    assert result.returncode == 3  # the example holds one implausible CK
    out = transitions(result)
    rules = {(t["patient_id"], t["rule"], t["status"]) for t in out}
    assert ("MRN-1001", "statin_active", "open") in rules
    assert ("MRN-1001", "statin_active", "resolved") in rules
    assert ("MRN-2002", "methotrexate_daily_dosing", "open") in rules
    err = result.stderr.decode()
    bad_line = next(
        n for n, line in enumerate(EXAMPLE.read_text().splitlines(), 1) if "2500000" in line
    )
    assert f"line {bad_line}: value: creatine kinase" in err
    assert "duplicates 1" in err and "rejected 1" in err
    assert "rejected implausible_value: 1" in err
    assert "transitions statin_active:open: 1" in err


def test_replay_is_deterministic_and_raised_times_never_go_backwards_per_patient() -> None:
    first = imnm("replay", str(EXAMPLE), "--now", "2025-06-01T00:00:00Z")
    second = imnm("replay", str(EXAMPLE), "--now", "2025-06-01T00:00:00Z")
    assert first.stdout == second.stdout and first.stdout


def test_now_advances_the_clock_so_later_rules_fire() -> None:
    early = transitions(imnm("replay", str(EXAMPLE)))
    late = transitions(imnm("replay", str(EXAMPLE), "--now", "2025-12-31T00:00:00Z"))
    assert len(late) > len(early)
    assert early == late[: len(early)]


def test_clean_file_exits_zero(tmp_path: Path) -> None:
    good = [line for line in EXAMPLE.read_text().splitlines() if "2500000" not in line]
    path = tmp_path / "good.jsonl"
    path.write_text("\n".join(good) + "\n\n")
    result = imnm("replay", str(path))
    assert result.returncode == 0, result.stderr.decode()


def test_stdin_and_table_format() -> None:
    result = imnm("replay", "-", "--format", "table", stdin=EXAMPLE.read_bytes())
    lines = result.stdout.decode().splitlines()
    assert lines[0].split()[:5] == ["raised_at", "status", "severity", "patient", "rule"]
    assert any("statin_active" in line and "critical" in line for line in lines[1:])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "/no/such/file.jsonl"], "cannot read /no/such/file.jsonl"),
        (["replay", str(EXAMPLE), "--now", "tomorrow"], "--now: not an RFC 3339 timestamp"),
        (["replay", str(EXAMPLE), "--now", "2025-01-01T00:00:00"], "needs a UTC offset"),
        (["replay", str(EXAMPLE), "--rules-config", "/no/such.yaml"], "cannot read"),
        (["replay", str(EXAMPLE), "--jobs", "0"], "--jobs: at least 1"),
        (["replay", "/no/such/file.jsonl", "--jobs", "2"], "cannot read /no/such/file.jsonl"),
    ],
)
def test_usage_and_io_errors_exit_two_with_a_message(args: list[str], message: str) -> None:
    result = imnm(*args)
    assert result.returncode == 2
    assert message in result.stderr.decode()


def _report(result: subprocess.CompletedProcess[bytes]) -> str:
    """stderr without the timing, which differs from run to run."""
    return re.sub(r", [\d.]+ s \([\d,]+ events/s\)", "", result.stderr.decode())


def test_jobs_give_the_same_output_report_and_status_in_worker_processes(tmp_path: Path) -> None:
    path = tmp_path / "year.jsonl"
    generated = imnm("generate", "--patients", "60", "--seed", "5", "--bad-fraction", "0.01",
                     "-o", str(path))
    assert generated.returncode == 0, generated.stderr.decode()
    config = tmp_path / "rules.yaml"
    config.write_text("pjp_prophylaxis_missing:\n  min_days: 14\n")
    common = ("--now", "2025-06-01T00:00:00Z", "--rules-config", str(config))
    one = imnm("replay", str(path), *common)
    assert one.returncode == 3 and len(one.stdout.splitlines()) > 100
    for jobs in ("2", "3"):
        shared = imnm("replay", str(path), *common, "--jobs", jobs)
        assert shared.returncode == 3
        assert shared.stdout == one.stdout
        assert _report(shared) == _report(one)
    table = imnm("replay", str(path), *common, "--jobs", "2", "--format", "table")
    assert table.stdout == imnm("replay", str(path), *common, "--format", "table").stdout
    piped = imnm("replay", "-", *common, "--jobs", "2", stdin=path.read_bytes())
    assert piped.returncode == 3 and piped.stdout == one.stdout
    assert _report(piped) == _report(one)


def test_rules_config_disables_a_rule_and_rejects_typos(tmp_path: Path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text("statin_active:\n  enabled: false\n")
    out = transitions(imnm("replay", str(EXAMPLE), "--rules-config", str(config)))
    assert out and all(t["rule"] != "statin_active" for t in out)
    config.write_text("pjp_prophylaxis_missing:\n  min_mg_per_dya: 10\n")
    result = imnm("replay", str(EXAMPLE), "--rules-config", str(config))
    assert result.returncode == 2
    assert "pjp_prophylaxis_missing.min_mg_per_dya" in result.stderr.decode()


def test_state_shows_phase_dose_and_open_alerts() -> None:
    result = imnm(
        "state", str(EXAMPLE), "--patient", "MRN-1001", "--now", "2025-04-01T00:00:00Z"
    )
    summary = json.loads(result.stdout)
    assert summary["tracked"] is True
    assert summary["phase"] == "taper"
    assert summary["prednisone_equivalent_mg_per_day"] == 50.0
    assert summary["course_peak_mg_per_day"] == 60.0
    assert "taper_relapse_risk" in summary["state"]["open_alerts"]
    missing = imnm("state", str(EXAMPLE), "--patient", "MRN-0000")
    assert missing.returncode == 2 and "no events for patient" in missing.stderr.decode()


@pytest.mark.parametrize("command", [["replay"], ["state", "--patient", "MRN-1001"]])
def test_the_batch_commands_set_the_batch_gc_thresholds(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    import gc

    from imnm_cli.main import main
    from imnm_common.runtime import BATCH_GC_THRESHOLDS

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # CPython's defaults
        assert main([command[0], str(EXAMPLE), *command[1:]]) in (0, 3)
        assert gc.get_threshold() == BATCH_GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)


def test_generate_weight_based_weighs_patients_and_writes_doses_per_kg(tmp_path: Path) -> None:
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for path in paths:
        done = imnm("generate", "--patients", "20", "--seed", "4", "--weight-based",
                    "-o", str(path))
        assert done.returncode == 0, done.stderr.decode()
    assert paths[0].read_bytes() == paths[1].read_bytes()  # seeded
    events = [json.loads(line) for line in paths[0].read_text().splitlines()]
    weights = [e for e in events if e.get("loinc") == "29463-7"]
    assert {e["patient_id"] for e in weights} == {e["patient_id"] for e in events}
    assert any((e.get("dose") or {}).get("unit") == "mg/kg" for e in events)
    replayed = transitions(imnm("replay", str(paths[0]), "--now", "2026-01-01T00:00:00Z"))
    assert any("converted with the body weight" in t["detail"] for t in replayed)


def test_generate_orders_as_schedules_replays_to_the_same_alerts(tmp_path: Path) -> None:
    stepped, ahead = tmp_path / "stepped.jsonl", tmp_path / "ahead.jsonl"
    for path, extra in ((stepped, []), (ahead, ["--orders-as-schedules"])):
        done = imnm("generate", "--patients", "15", "--seed", "6", *extra, "-o", str(path))
        assert done.returncode == 0, done.stderr.decode()
    events = [json.loads(line) for line in ahead.read_text().splitlines()]
    assert any(e.get("dose_schedule") for e in events) and any(e.get("ends_at") for e in events)
    assert len(events) < len(stepped.read_text().splitlines())

    def judged(path: Path) -> list[dict[str, object]]:
        replayed = transitions(imnm("replay", str(path), "--now", "2026-06-01T00:00:00Z"))
        return [{k: v for k, v in t.items() if k != "evidence"} for t in replayed]

    expected = judged(stepped)
    assert expected and judged(ahead) == expected
