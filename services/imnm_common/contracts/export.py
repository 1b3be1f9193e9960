"""Generate ``schemas/`` from the pydantic models: JSON Schema per contract plus AsyncAPI 3.0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from imnm_common.contracts.actions import AlertAction
from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.deadletter import DeadLetter
from imnm_common.contracts.events import event_json_schema
from imnm_common.settings import TopicNames

SCHEMA_BASE = "https://imnm-safety.example/schemas/"


def json_schemas() -> dict[str, dict[str, Any]]:
    documents = {
        "events.v1.json": ("Canonical IMNM input event (events.v1)", event_json_schema()),
        "alert.v1.json": ("Alert transition (alert.v1)", AlertTransition.model_json_schema()),
        "alert-action.v1.json": (
            "Pharmacist action on an alert (alert-action.v1)",
            AlertAction.model_json_schema(),
        ),
        "deadletter.v1.json": (
            "Rejected input message (deadletter.v1)",
            DeadLetter.model_json_schema(),
        ),
    }
    out: dict[str, dict[str, Any]] = {}
    for filename, (title, schema) in documents.items():
        out[filename] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_BASE + filename,
            "title": title,
            **{k: v for k, v in schema.items() if k != "title"},
        }
    return out


def asyncapi_document() -> dict[str, Any]:
    topics = TopicNames.model_construct()  # the defaults, whatever this shell's IMNM_TOPIC_*
    key = {"type": "string", "minLength": 1, "maxLength": 64, "description": "patient_id (MRN)"}

    def message(name: str, title: str, ref: str | None, content_type: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "title": title,
            "contentType": content_type,
            "bindings": {"kafka": {"key": dict(key), "bindingVersion": "0.5.0"}},
        }
        body["payload"] = {"$ref": ref} if ref else {"type": "string"}
        return body

    channels = {
        "events": (topics.events, "Canonical clinical events in; tracker consumes.",
                   message("CanonicalEvent", "events.v1", "./events.v1.json", "application/json")),
        "alerts": (topics.alerts, "Alert transitions out; subscribers de-duplicate on "
                   "(alert_id, status).",
                   message("AlertTransition", "alert.v1", "./alert.v1.json", "application/json")),
        "alertActions": (topics.alert_actions, "Pharmacist actions from the console.",
                         message("AlertAction", "alert-action.v1", "./alert-action.v1.json",
                                 "application/json")),
        "deadletter": (topics.deadletter, "Rejected input with reason and source coordinates.",
                       message("DeadLetter", "deadletter.v1", "./deadletter.v1.json",
                               "application/json")),
        "rawHl7v2": (topics.raw_hl7v2,
                     "Raw HL7 v2 messages (ER7), converted to events.v1 by imnm ingest.",
                     message("RawHl7v2", "raw HL7 v2", None, "x-application/hl7-v2+er7")),
        "rawFhir": (topics.raw_fhir, "Raw FHIR R4 resources or Bundles (JSON), converted to "
                    "events.v1 by imnm ingest.",
                    message("RawFhir", "raw FHIR", None, "application/fhir+json")),
    }
    doc_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel_id, (address, description, msg) in channels.items():
        doc_channels[channel_id] = {
            "address": address,
            "description": description + " Keyed by patient_id.",
            "messages": {msg["name"]: msg},
            "bindings": {"kafka": {"topic": address, "bindingVersion": "0.5.0"}},
        }
    operations["consumeEvents"] = _op("receive", "events", "CanonicalEvent",
                                      "The tracker consumes canonical events.")
    operations["publishEvents"] = _op("send", "events", "CanonicalEvent",
                                      "Hospital integrations and imnm ingest publish canonical "
                                      "events.")
    operations["publishAlerts"] = _op("send", "alerts", "AlertTransition",
                                      "The tracker publishes alert transitions.")
    operations["consumeAlerts"] = _op("receive", "alerts", "AlertTransition",
                                      "The pharmacy console (and hospital subscribers) consume "
                                      "alert transitions.")
    operations["publishAlertActions"] = _op("send", "alertActions", "AlertAction",
                                            "The console publishes pharmacist actions.")
    operations["publishDeadLetters"] = _op("send", "deadletter", "DeadLetter",
                                           "Services publish rejected input.")
    operations["publishRawHl7v2"] = _op("send", "rawHl7v2", "RawHl7v2",
                                        "Interface engines publish raw HL7 v2.")
    operations["consumeRawHl7v2"] = _op("receive", "rawHl7v2", "RawHl7v2",
                                        "imnm ingest converts raw HL7 v2 into events.")
    operations["consumeRawFhir"] = _op("receive", "rawFhir", "RawFhir",
                                       "imnm ingest converts raw FHIR into events.")
    operations["publishRawFhir"] = _op("send", "rawFhir", "RawFhir",
                                       "FHIR subscriptions publish raw resources.")
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "imnm-safety event bus",
            "version": "1.0.0",
            "description": "Topics of the IMNM medication-safety suite. Every message is keyed "
            "by patient_id so one patient's events stay ordered on one partition. Topic names "
            "are defaults; IMNM_TOPIC_* settings override them.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The embedded local broker (`imnm up` prints its port).",
            }
        },
        "channels": doc_channels,
        "operations": operations,
    }


def _op(action: str, channel: str, message: str, summary: str) -> dict[str, Any]:
    return {
        "action": action,
        "summary": summary,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
    }


def rendered() -> dict[str, str]:
    files = {
        name: json.dumps(schema, indent=2, sort_keys=False) + "\n"
        for name, schema in json_schemas().items()
    }
    files["asyncapi.yaml"] = yaml.safe_dump(asyncapi_document(), sort_keys=False, width=100)
    return files


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def drift(directory: Path) -> list[str]:
    """Names of files in ``directory`` that differ from what the models generate."""
    stale = []
    for name, text in rendered().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
