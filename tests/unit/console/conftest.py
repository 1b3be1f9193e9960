"""Fixtures for the console tests; the builders themselves live in ``console_builders``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imnm_console.adapters.store import AlertStore


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlertStore]:
    """An empty console store: a SQLite file of its own (the default), and a new database on a
    real PostgreSQL server (what a deployment uses; these runs are marked integration)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'console.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    alert_store = AlertStore(url)
    try:
        yield alert_store
    finally:
        alert_store.close()
