"""`imnm console` on the real broker: alert.v1 in (from the real engine), dead letters out for
what is not alert.v1, redelivery and restart change nothing, actions go out as alert-action.v1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from topic_reading import read_topic

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.kafka.topics import create_topics
from imnm_common.service_layer.replay import Replay
from imnm_tracker.clock import parse_instant
from imnm_tracker.testing import free_port, imnm_executable, synthetic_history


@dataclass
class Console:
    url: str
    env: dict[str, str]
    topics: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*imnm_executable(), "console"], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def post(self, path: str, body: dict, headers: dict[str, str] | None = None
             ) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )

    def wait_consumed(self, want: float, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            try:
                seen = (self.metric("imnm_console_transitions_consumed_total")
                        + self.metric("imnm_console_messages_rejected_total"))
                if seen >= want:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"consumed {seen} of {want} within {timeout} s:\n"
                             + self.log.read_text())


@pytest.fixture
def console(kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
            ) -> Iterator[Console]:
    import asyncio

    topics = {"alerts": unique_name("alerts"), "alert_actions": unique_name("actions"),
              "deadletter": unique_name("dlq")}
    asyncio.run(create_topics(kafka_bootstrap, list(topics.values()), 3, 1))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IMNM_")},
        "IMNM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "IMNM_TOPIC_ALERTS": topics["alerts"],
        "IMNM_TOPIC_ALERT_ACTIONS": topics["alert_actions"],
        "IMNM_TOPIC_DEADLETTER": topics["deadletter"],
        "IMNM_CONSOLE_GROUP_ID": unique_name("console"),
        "IMNM_CONSOLE_PORT": str(port),
        "IMNM_DATABASE_URL": f"sqlite:///{tmp_path / 'console.db'}",
    }
    running = Console(f"http://127.0.0.1:{port}", env, topics, tmp_path / "console.log")
    try:
        yield running
    finally:
        if running.process is not None:
            running.stop()


def engine_transitions(patients: int, seed: int) -> list[AlertTransition]:
    replay = Replay()
    lines = synthetic_history(patients, seed, with_examples=False)
    return [*replay.feed_lines(lines), *replay.finish(parse_instant("2025-09-01T00:00:00Z"))]


async def publish(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


def messages_of(transitions: list[AlertTransition]) -> list[tuple[bytes, bytes]]:
    return [(t.patient_id.encode(), t.model_dump_json().encode()) for t in transitions]


def test_console_projects_the_engines_alerts_and_dead_letters_the_rest(
    console: Console, kafka_bootstrap: str
) -> None:
    import asyncio

    transitions = engine_transitions(patients=12, seed=7)
    assert {t.status for t in transitions} == {"open", "resolved"}
    bad = [(b"P-bad", b"{not json"), (b"P-bad", b'{"alert_id": "al-1", "status": "open"}')]
    messages = messages_of(transitions)
    messages[5:5] = bad[:1]
    messages.append(bad[1])
    asyncio.run(publish(kafka_bootstrap, console.topics["alerts"], messages))
    console.start()
    console.wait_consumed(len(messages))

    final: dict[str, AlertTransition] = {}
    for t in transitions:
        final[t.alert_id] = t  # each alert's last word
    status, listing = console.get("/api/alerts?state=all&limit=500")
    assert status == 200
    assert listing["total"] == len(final)
    by_id = {a["alert_id"]: a for a in listing["alerts"]}
    assert {a: t.status for a, t in final.items()} == {a: c["status"] for a, c in by_id.items()}
    for alert_id, card in by_id.items():
        opened = next(t for t in transitions if t.alert_id == alert_id and t.status == "open")
        assert card["detail"] == opened.detail  # why it fired, not the resolution text
        assert card["patient_id"] == opened.patient_id
    still_open = sum(1 for t in final.values() if t.status == "open")
    _, needing = console.get("/api/alerts?state=needs_action&limit=500")
    assert needing["total"] == still_open

    dead = asyncio.run(read_topic(kafka_bootstrap, console.topics["deadletter"], want=2))
    letters = [orjson.loads(r.value) for r in dead]
    assert [(d["reason_code"], d["service"], d["key"]) for d in letters] == [
        ("bad_json", "imnm-console", "P-bad"), ("schema_violation", "imnm-console", "P-bad")
    ]
    assert letters[1]["payload"] == bad[1][1].decode()
    assert console.metric("imnm_console_messages_rejected_total") == 2
    with urllib.request.urlopen(console.url + "/metrics", timeout=10) as response:
        assert b"P-bad" not in response.read()  # no patient ids in metrics

    # A restart with the same transitions delivered again (a producer retry, a replayed
    # topic): nothing changes, every one is counted as a duplicate.
    assert console.stop() == 0
    asyncio.run(publish(kafka_bootstrap, console.topics["alerts"], messages_of(transitions)))
    console.start()
    console.wait_consumed(len(transitions))
    assert console.metric('imnm_console_transitions_consumed_total{outcome="duplicate"}') \
        == len(transitions)
    _, again = console.get("/api/alerts?state=all&limit=500")
    assert again == listing
    some_id = next(iter(final))
    _, detail = console.get(f"/api/alerts/{some_id}")
    assert len(detail["transitions"]) == len({t.status for t in transitions
                                              if t.alert_id == some_id})


def test_actions_are_published_once_keyed_by_patient(console: Console, kafka_bootstrap: str
                                                     ) -> None:
    import asyncio

    transitions = engine_transitions(patients=6, seed=11)
    final: dict[str, AlertTransition] = {t.alert_id: t for t in transitions}
    open_one = next(t for t in final.values() if t.status == "open")
    resolved_one = next(t for t in final.values() if t.status == "resolved")
    asyncio.run(publish(kafka_bootstrap, console.topics["alerts"], messages_of(transitions)))
    console.start()
    console.wait_consumed(len(transitions))

    body = {"action": "override", "reason": "clinically_appropriate", "user": "pharm.it",
            "comment": "Neurology aware", "action_id": "act-it-1"}
    status, action = console.post(f"/api/alerts/{open_one.alert_id}/actions", body)
    assert status == 201, action
    assert action["patient_id"] == open_one.patient_id
    status, repeat = console.post(f"/api/alerts/{open_one.alert_id}/actions", body)
    assert (status, repeat) == (200, action)  # a retried request is the same action
    status, refused = console.post(f"/api/alerts/{resolved_one.alert_id}/actions",
                                   {**body, "action_id": "act-it-2"})
    assert status == 409 and "resolved" in refused["detail"]
    status, missing = console.post("/api/alerts/al-nope/actions", {**body, "action_id": "x"})
    assert status == 404 and "al-nope" in missing["detail"]

    published = asyncio.run(
        read_topic(kafka_bootstrap, console.topics["alert_actions"], want=1))
    assert [(r.key.decode(), orjson.loads(r.value)) for r in published] == [
        (open_one.patient_id, action)
    ]
    _, card = console.get(f"/api/alerts/{open_one.alert_id}")
    assert card["work_state"] == "overridden" and card["last_action_by"] == "pharm.it"
    assert console.metric("imnm_console_actions_total") == 1
    assert console.metric("imnm_console_actions_refused_total") == 2
    assert console.stop() == 0
    assert "no sign-in proxy configured (IMNM_CONSOLE_USER_HEADER)" in console.log.read_text()


def test_behind_a_sign_in_proxy_actions_carry_the_signed_in_user(
    console: Console, kafka_bootstrap: str
) -> None:
    import asyncio

    transitions = engine_transitions(patients=6, seed=11)
    open_one = next(t for t in {t.alert_id: t for t in transitions}.values()
                    if t.status == "open")
    asyncio.run(publish(kafka_bootstrap, console.topics["alerts"], messages_of(transitions)))
    console.env["IMNM_CONSOLE_USER_HEADER"] = "X-Forwarded-User"
    console.start()
    console.wait_consumed(len(transitions))

    status, refused = console.get("/api/alerts")
    assert status == 401 and "X-Forwarded-User" in refused["detail"]
    who = {"X-Forwarded-User": "jdoe@hospital.example"}
    status, listed = console.get("/api/alerts", headers=who)
    assert status == 200 and listed["total"] > 0
    status, action = console.post(f"/api/alerts/{open_one.alert_id}/actions",
                                  {"action": "acknowledge", "reason": "addressed"}, who)
    assert status == 201 and action["user"] == "jdoe@hospital.example", action
    published = asyncio.run(
        read_topic(kafka_bootstrap, console.topics["alert_actions"], want=1))
    assert [orjson.loads(r.value)["user"] for r in published] == ["jdoe@hospital.example"]
    assert console.stop() == 0
    assert "no sign-in proxy configured" not in console.log.read_text()


def test_console_refuses_to_start_without_a_broker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMNM_")}
    done = subprocess.run([*imnm_executable(), "console"], env=env, capture_output=True,
                          cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 2
    assert b"IMNM_KAFKA_BOOTSTRAP" in done.stderr
