"""schemas/ is generated from the pydantic models; this fails when they drift apart."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from imnm_common.contracts import export
from imnm_common.settings import TopicNames

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def test_schemas_directory_matches_the_models() -> None:
    stale = export.drift(SCHEMAS)
    assert stale == [], f"schemas/ is stale ({stale}): run `make schemas` and commit"


def test_drift_is_detected(tmp_path: Path) -> None:
    export.write(tmp_path)
    assert export.drift(tmp_path) == []
    schema = json.loads((tmp_path / "alert.v1.json").read_text())
    schema["properties"].pop("summary")
    (tmp_path / "alert.v1.json").write_text(json.dumps(schema))
    assert export.drift(tmp_path) == ["alert.v1.json"]


def test_asyncapi_describes_every_topic_with_its_key_and_payload() -> None:
    doc = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    assert doc["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses == set(TopicNames.model_construct().all())
    for channel in doc["channels"].values():
        for message in channel["messages"].values():
            assert message["bindings"]["kafka"]["key"]["type"] == "string"
            ref = message["payload"].get("$ref")
            if ref:
                assert (SCHEMAS / ref.removeprefix("./")).exists(), ref
    for operation in doc["operations"].values():
        channel_id = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        assert channel_id in doc["channels"]


def test_event_schema_is_a_discriminated_union_of_the_four_types() -> None:
    schema = json.loads((SCHEMAS / "events.v1.json").read_text())
    assert set(schema["discriminator"]["mapping"]) == {
        "diagnosis", "lab_result", "medication_order", "muscle_assessment",
    }
