"""`imnm ingest` on the real broker: raw HL7 v2 and FHIR in (sent by `imnm send-raw`, as an
interface engine would), events.v1 out keyed by patient, dead letters for what cannot be
converted, and the converted events raise the alert the clinical story calls for."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from topic_reading import read_topic

from imnm_common.contracts.events import LabResultEvent, parse_event
from imnm_common.kafka.topics import create_topics
from imnm_common.service_layer.replay import Replay
from imnm_tracker.testing import free_port, imnm_executable

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "raw"
CK_ABOVE_RANGE = "\r".join([
    "MSH|^~\\&|LAB|GENHOSP|IMNM|GENHOSP|20250201083000+0000||ORU^R01^ORU_R01|ORU0002|P|2.5.1",
    "PID|1||MRN-2001^^^GENHOSP^MR||Doe^Jane",
    "OBR|1|LABORD-2|LABFIL-2|2157-6^Creatine kinase^LN|||20250201080000+0000",
    "OBX|1|SN|2157-6^Creatine kinase^LN||>^20000|U/L|24-195|HH|||F|||20250201080000+0000",
]).encode()


async def send_raw(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=b"MRN-2001")
    finally:
        await producer.stop()


def test_raw_messages_become_events_and_bad_ones_dead_letters(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    topics = {name: unique_name(name) for name in
              ("raw_hl7v2", "raw_fhir", "events", "deadletter")}
    asyncio.run(create_topics(kafka_bootstrap, list(topics.values()), 3, 1))
    metrics_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IMNM_")},
        "IMNM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        **{f"IMNM_TOPIC_{name.upper()}": topic for name, topic in topics.items()},
        "IMNM_INGEST_GROUP_ID": unique_name("ingest"),
        "IMNM_INGEST_METRICS_PORT": str(metrics_port),
    }
    for flag, example in (("--fhir", "imnm-diagnosis.fhir.json"),
                          ("--hl7v2", "statin-order-and-ck.hl7")):
        sent = subprocess.run([*imnm_executable(), "send-raw", flag, str(EXAMPLES / example)],
                              env=env, capture_output=True, timeout=60, check=False)
        assert sent.returncode == 0, sent.stderr.decode()
    # a CK above the analyser's range: structured numeric with a comparator
    asyncio.run(send_raw(kafka_bootstrap, topics["raw_hl7v2"], CK_ABOVE_RANGE))
    asyncio.run(send_raw(kafka_bootstrap, topics["raw_hl7v2"], b"PID|1||MRN-2001\r"))
    asyncio.run(send_raw(kafka_bootstrap, topics["raw_fhir"],
                             b'{"resourceType": "Patient", "id": "MRN-2001"}'))

    log = (tmp_path / "ingest.log").open("wb")
    ingest = subprocess.Popen([*imnm_executable(), "ingest"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # diagnosis (FHIR); the atorvastatin order, CK and glucose, the CK above range (HL7);
        # the comment OBX has no LOINC code and is not an event
        records = asyncio.run(read_topic(kafka_bootstrap, topics["events"], want=5))
        dead = asyncio.run(read_topic(kafka_bootstrap, topics["deadletter"], want=2))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                         timeout=10).read().decode()
    finally:
        os.killpg(ingest.pid, signal.SIGTERM)
        ingest.wait(30)
        log.close()
    assert ingest.returncode == 0, (tmp_path / "ingest.log").read_text()

    events = [parse_event(r.value) for r in records]
    assert all(r.key == b"MRN-2001" for r in records)
    assert sorted(e.event_type for e in events) == [
        "diagnosis", "lab_result", "lab_result", "lab_result", "medication_order"]
    by_type = {e.event_type: e for e in events}
    order = by_type["medication_order"]
    assert order.medication.rxnorm == "83367" and order.status == "active"
    assert order.dose is not None and (order.dose.value, order.dose.unit) == (40, "mg")
    cks = sorted((e for e in events if isinstance(e, LabResultEvent) and e.loinc == "2157-6"),
                 key=lambda e: e.occurred_at)
    assert [(ck.value, ck.comparator, ck.unit, ck.reference_high) for ck in cks] == [
        (9400, None, "U/L", 195), (20000, ">", "U/L", 195)]
    with_comparator = [r for r in records if b'"comparator"' in r.value]  # absent, not null
    assert [parse_event(r.value).event_id for r in with_comparator] == [cks[1].event_id]
    assert len({e.event_id for e in events}) == 5

    letters = sorted((orjson.loads(r.value) for r in dead), key=lambda d: d["topic"])
    assert {d["service"] for d in letters} == {"imnm-ingest"}
    assert {d["topic"]: d["reason_code"] for d in letters} == {
        topics["raw_hl7v2"]: "not_parseable", topics["raw_fhir"]: "unsupported_message"}
    assert all(d["reason"] for d in letters)
    assert "MRN-2001" not in metrics  # no patient ids in labels
    assert 'imnm_ingest_messages_total{format="hl7v2",outcome="converted"} 3.0' in metrics
    assert 'imnm_ingest_events_published_total{event_type="lab_result"} 3.0' in metrics

    # The clinical story: IMNM diagnosed, then a statin ordered -> the statin alert.
    replay = Replay()
    transitions = [t for e in sorted(events, key=lambda e: e.occurred_at)
                   for t in replay.feed(e)]
    transitions += list(replay.finish())
    assert [(t.rule, t.status) for t in transitions if t.rule == "statin_active"] == [
        ("statin_active", "open")]
