"""`imnm console` / `imnm ingest` refuse to start with a reason naming the setting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imnm_cli.main import main
from imnm_common.settings import get_settings


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("IMNM_KAFKA_BOOTSTRAP", "IMNM_CONSOLE_TIMEZONE", "IMNM_INGEST_HL7_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("command", ["console", "ingest"])
def test_no_broker_is_a_usage_error(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command]) == 2
    assert "IMNM_KAFKA_BOOTSTRAP" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "variable"), [
    ("console", "IMNM_CONSOLE_TIMEZONE"), ("ingest", "IMNM_INGEST_HL7_TIMEZONE"),
])
def test_an_unknown_time_zone_is_named(command: str, variable: str,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IMNM_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv(variable, "Mars/Olympus_Mons")
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert f"imnm {command}: {variable}: 'Mars/Olympus_Mons' is not an IANA time zone" in err
