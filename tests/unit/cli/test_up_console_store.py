"""`imnm up` on the embedded broker gives the console an empty store: the broker starts empty, so
last run's open alerts could never be resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from imnm_cli.up_cmd import _fresh_console_store
from imnm_console.adapters.store import AlertStore


def test_last_runs_console_store_is_not_reused(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = _fresh_console_store()
    assert url == "sqlite:///.imnm-data/console.db"
    first = AlertStore(url)
    first.engine.dispose()
    assert (tmp_path / ".imnm-data" / "console.db").exists()
    (tmp_path / ".imnm-data" / "console.db-wal").write_bytes(b"left by a killed run")

    assert _fresh_console_store() == url
    assert not (tmp_path / ".imnm-data" / "console.db").exists()
    assert not (tmp_path / ".imnm-data" / "console.db-wal").exists()
