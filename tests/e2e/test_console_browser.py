"""The pharmacist's path through the console, in real headless Chromium, on the suite that
`make run` starts: real broker, tracker, console and demo patients. An alert raised by the tracker
appears on the worklist, its page says why it fired, a bad form is refused with a reason, an
acknowledgement moves it off the "needs action" list and is published as alert-action.v1."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from playwright.sync_api import Browser, expect, sync_playwright
from running_suite import RunningSuite, suite_env

from imnm_tracker.testing import free_port

pytestmark = pytest.mark.integration
CHROMIUM = os.environ.get("IMNM_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (.ci/run does) or set "
                    "IMNM_TEST_CHROMIUM")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            # Off-line machine: no background fetches (they fail noisily, many at a time).
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for_alerts(console: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get_json(f"{console}/api/alerts?state=needs_action")["total"] > 0:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(1)
    raise AssertionError(f"no alert needing action on the console within {timeout} s")


async def published_actions(bootstrap: str, want_alert: str, timeout: float) -> list[dict]:
    consumer = AIOKafkaConsumer(
        "imnm.alert-actions.v1", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    found: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(
            a["alert_id"] == want_alert for a in found
        ):
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                found.extend(
                    {**orjson.loads(r.value), "_key": r.key.decode()} for r in records
                )
    finally:
        await consumer.stop()
    return found


def test_pharmacist_works_an_alert_in_the_browser(tmp_path: Path, browser: Browser) -> None:
    console_port = free_port()
    console = f"http://127.0.0.1:{console_port}"
    env = suite_env(
        console_port=str(console_port), tracker_metrics_port=str(free_port()),
        ingest_metrics_port=str(free_port()),
        tracker_data_dir=str(tmp_path / "tracker"), tracker_timer_interval_seconds="2",
        tracker_app_id=f"imnm-e2e-console-{os.getpid()}", topic_partitions="3",
    )
    suite = RunningSuite(tmp_path, env, "--demo", "--demo-patients", "20")
    try:
        bootstrap = suite.wait_until_up()
        assert f"worklist {console}/" in suite.printed()
        wait_for_alerts(console, timeout=90)

        page = browser.new_page()
        page.goto(f"{console}/")
        rows = page.locator("[data-testid=worklist] tbody tr")
        expect(rows.first).to_be_visible()
        alert_id = rows.first.get_attribute("data-alert-id")
        assert alert_id
        expected = get_json(f"{console}/api/alerts/{alert_id}")
        rows.first.get_by_role("link").click()
        expect(page).to_have_url(f"{console}/alerts/{alert_id}")

        # "why did this fire?": the tracker's own explanation, and the events behind it
        expect(page.get_by_test_id("why")).to_have_text(expected["detail"])
        for event_id in expected["evidence"]:
            expect(page.get_by_test_id("evidence")).to_contain_text(event_id)
        expect(page.get_by_test_id("work-state")).to_have_text("needs action")

        # a snooze without a duration is refused with the reason, and nothing is recorded
        page.get_by_label("Snooze", exact=True).check()
        page.get_by_label("Your name").fill("pharm.e2e")
        page.get_by_role("button", name="Record").click()
        expect(page.get_by_test_id("error")).to_contain_text("how long to snooze")
        assert get_json(f"{console}/api/alerts/{alert_id}")["actions"] == []

        # the form kept what was typed; acknowledge it
        expect(page.get_by_label("Your name")).to_have_value("pharm.e2e")
        page.get_by_label("Acknowledge").check()
        page.get_by_label("Reason").select_option("prescriber_contacted")
        page.get_by_label("Comment").fill("Called Dr. Doe; statin stopped at 14:05")
        page.get_by_role("button", name="Record").click()
        expect(page).to_have_url(f"{console}/alerts/{alert_id}")
        expect(page.get_by_test_id("work-state")).to_have_text("acknowledged")
        expect(page.get_by_test_id("history")).to_contain_text(
            "acknowledge: prescriber contacted"
        )
        page.screenshot(path=str(tmp_path / "alert.png"))

        # off the "needs action" list, on the "acknowledged" one
        page.goto(f"{console}/?state=acknowledged")
        expect(page.locator(f"tr[data-alert-id='{alert_id}']")).to_be_visible()
        after = get_json(f"{console}/api/alerts?state=needs_action&limit=500")
        assert alert_id not in {a["alert_id"] for a in after["alerts"]}
        page.close()

        # Playwright's sync API keeps an event loop in this thread: consume from another one.
        with ThreadPoolExecutor(1) as pool:
            actions = pool.submit(
                asyncio.run, published_actions(bootstrap, alert_id, timeout=30)
            ).result()
        mine = [a for a in actions if a["alert_id"] == alert_id]
        assert len(mine) == 1, actions
        assert mine[0]["action"] == "acknowledge"
        assert mine[0]["reason"] == "prescriber_contacted"
        assert mine[0]["user"] == "pharm.e2e"
        assert mine[0]["patient_id"] == expected["patient_id"] == mine[0]["_key"]
    finally:
        code = suite.stop()
    assert code == 0, suite.printed()
    suite.assert_nothing_left()
    console_log = (tmp_path / ".imnm-data" / "logs" / "console.log").read_text()
    assert "DEMO-" not in console_log  # no patient ids in the console's log
