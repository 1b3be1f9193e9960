"""deploy/prometheus with the real Prometheus tools (Debian's `prometheus` package): promtool
accepts the configuration and passes the rules' test cases, and a real Prometheus scraping the
suite that `make run` starts sees every service up and evaluates every rule without error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from running_suite import RunningSuite, suite_env

from imnm_tracker.testing import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: install Debian's prometheus package (.ci/run does)")
    return found


def test_promtool_accepts_the_configuration_and_passes_the_rule_tests() -> None:
    checked = subprocess.run([tool("promtool"), "check", "config", "prometheus.yml"],
                             cwd=DEPLOY, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout
    tested = subprocess.run([tool("promtool"), "test", "rules", "imnm-alerts.test.yml"],
                            cwd=DEPLOY, capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def api(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}/api/v1/{path}", timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as error:
            last = error
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout} s; last: {last}")


def test_a_real_prometheus_scrapes_the_suite_and_evaluates_every_rule(tmp_path: Path) -> None:
    ports = {"tracker": free_port(), "ingest": free_port(), "console": free_port()}
    env = suite_env(
        console_port=str(ports["console"]), tracker_metrics_port=str(ports["tracker"]),
        ingest_metrics_port=str(ports["ingest"]), tracker_data_dir=str(tmp_path / "tracker"),
        tracker_timer_interval_seconds="2", tracker_app_id=f"imnm-e2e-prom-{os.getpid()}",
        topic_partitions="3",
    )
    # The shipped configuration, with this run's ports and a 1 s rhythm.
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / "imnm-alerts.yml")]
    for job in config["scrape_configs"]:
        service = job["job_name"].removeprefix("imnm-")
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[service]}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    web = f"127.0.0.1:{free_port()}"
    base = f"http://{web}"

    suite = RunningSuite(tmp_path, env, "--demo", "--demo-patients", "10")
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        suite.wait_until_up()
        with (tmp_path / "prometheus.log").open("wb") as log:
            prometheus = subprocess.Popen(
                [tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address={web}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

        def all_targets_up() -> dict[str, str]:
            targets = api(base, "targets")["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in targets}
            return health if len(health) == 3 and set(health.values()) == {"up"} else {}

        health = wait_for("every target up", all_targets_up, 60)
        assert set(health) == {"imnm-tracker", "imnm-ingest", "imnm-console"}

        expected = {rule["alert"] for group in yaml.safe_load(
            (DEPLOY / "imnm-alerts.yml").read_text())["groups"] for rule in group["rules"]}

        def every_rule_evaluated() -> list[dict[str, Any]]:
            rules = [rule for group in api(base, "rules")["groups"] for rule in group["rules"]]
            done = all(rule["lastEvaluation"] > "2000" for rule in rules)
            return rules if done and len(rules) == len(expected) else []

        rules = wait_for("every rule evaluated", every_rule_evaluated, 30)
        assert {rule["name"] for rule in rules} == expected
        assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []

        # series from each service, as the rules read them
        def has(query: str) -> bool:
            return bool(api(base, f"query?query={urllib.parse.quote(query)}")["result"])

        wait_for("the worklist gauge", lambda: has("imnm_console_worklist_alerts"), 30)
        wait_for("timer ticks", lambda: has("increase(imnm_tracker_timer_runs_total[1m]) > 0"),
                 60)
        assert has('sum(imnm_tracker_assigned_partitions) == 3')
        # pending as well as firing: a target down for one evaluation would show here
        active = [a["labels"]["alertname"] for a in api(base, "alerts")["alerts"]]
        assert "ImnmServiceDown" not in active and "ImnmNoTrackerRunning" not in active
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(30)
        code = suite.stop()
    assert code == 0, suite.printed()
    suite.assert_nothing_left()
