"""docker-compose.yml stays consistent with Settings and with itself (no Docker needed)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from imnm_common.settings import Settings, TopicNames
from imnm_tracker.options import TrackerTuning

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("tracker", "ingest", "console")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) for item in raw)
        return {key: value for key, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def _is_settings_var(name: str) -> bool:
    assert name.startswith("IMNM_")
    field = name.removeprefix("IMNM_").lower()
    if field in Settings.model_fields:
        return True
    if name.startswith("IMNM_TOPIC_"):
        return name.removeprefix("IMNM_TOPIC_").lower() in TopicNames.model_fields
    if name.startswith("IMNM_TRACKER_"):  # the tracker's own tuning knobs
        return name.removeprefix("IMNM_TRACKER_").lower() in TrackerTuning.model_fields
    return False


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        out[name] = _host_port(address)
    return out


def test_expected_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "postgres", *APP_SERVICES} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.1.2"
    assert services["postgres"]["image"] == "postgres:16"
    assert services["tracker"]["command"] in (["imnm", "tracker"], "imnm tracker")
    assert services["console"]["command"] in (["imnm", "console"], "imnm console")
    assert services["console"]["ports"] == ["8080:8080"]
    assert services["ingest"]["command"] in (["imnm", "ingest"], "imnm ingest")


def test_every_app_command_is_a_real_imnm_command(compose: dict[str, Any]) -> None:
    from imnm_cli.main import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in APP_SERVICES:
        command = compose["services"][name]["command"]
        argv = command if isinstance(command, list) else command.split()
        assert argv[0] == "imnm" and argv[1] in commands, f"{name}: {argv} is not a command"


def test_app_services_build_from_the_dockerfile(compose: dict[str, Any]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "imnm" in scripts
    for name in APP_SERVICES:
        build = compose["services"][name]["build"]
        dockerfile = (ROOT / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile == ROOT / "deploy" / "Dockerfile"
        text = dockerfile.read_text()
        assert "FROM python:3.11-slim" in text
        assert 'pip install ".[postgres]"' in text  # the driver of IMNM_DATABASE_URL


def test_every_imnm_var_is_a_settings_field(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = 0
    for name, service in compose["services"].items():
        env = _env(service)
        unknown = [var for var in env if var.startswith("IMNM_") and not _is_settings_var(var)]
        assert unknown == [], f"{name}: not Settings fields: {unknown}"
        imnm = {var: value for var, value in env.items() if var.startswith("IMNM_")}
        if not imnm:
            continue
        seen += 1
        # And the values parse: Settings built from exactly this environment takes them.
        for var in [v for v in os.environ if v.startswith("IMNM_")]:
            monkeypatch.delenv(var)
        for var, value in imnm.items():
            monkeypatch.setenv(var, value)
        settings = Settings()
        tuning = TrackerTuning()
        for var, value in imnm.items():
            field = var.removeprefix("IMNM_").lower()
            if field in Settings.model_fields:
                assert str(getattr(settings, field)) == value, var
            elif var.startswith("IMNM_TRACKER_"):
                knob = var.removeprefix("IMNM_TRACKER_").lower()
                assert str(getattr(tuning, knob)) == value, var
            else:
                topic_field = var.removeprefix("IMNM_TOPIC_").lower()
                assert getattr(settings.topics, topic_field) == value, var
    assert seen >= len(APP_SERVICES)


def test_kafka_bootstrap_matches_the_advertised_listener(compose: dict[str, Any]) -> None:
    kafka_env = _env(compose["services"]["kafka"])
    advertised = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    bound = _listeners(kafka_env["KAFKA_LISTENERS"])
    controller_names = set(kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(","))
    protocol_map = dict(
        item.split(":", 1) for item in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(bound) <= set(protocol_map)
    assert controller_names <= set(bound)
    assert not controller_names & set(advertised)

    for name in APP_SERVICES:
        bootstrap = _env(compose["services"][name])["IMNM_KAFKA_BOOTSTRAP"]
        host, port = _host_port(bootstrap)
        matching = [lst for lst, address in advertised.items() if address == (host, port)]
        assert matching, f"{name}: {bootstrap} is not an advertised listener: {advertised}"
        assert bound[matching[0]][1] == port  # and the broker really listens there
        kafka_names = {"kafka", compose["services"]["kafka"].get("hostname", "kafka")}
        assert host in kafka_names
        assert "kafka" in compose["services"][name].get("depends_on", {})


def test_kafka_is_a_single_kraft_node(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node_id == env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert _host_port(voter)[1] == _listeners(env["KAFKA_LISTENERS"])[controller][1]
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"


def test_database_url_matches_postgres(compose: dict[str, Any]) -> None:
    pg = _env(compose["services"]["postgres"])
    for name in APP_SERVICES:
        url = urlsplit(_env(compose["services"][name])["IMNM_DATABASE_URL"])
        assert url.scheme == "postgresql+psycopg"
        assert url.username == pg["POSTGRES_USER"]
        assert url.password == pg["POSTGRES_PASSWORD"]
        assert url.path.lstrip("/") == pg["POSTGRES_DB"]
        assert url.hostname == "postgres"
        assert url.port in (None, 5432)
