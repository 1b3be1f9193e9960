"""Fixtures for the IMNM domain tests; the helpers themselves live in ``domain_chart``."""

from __future__ import annotations

import pytest
from domain_chart import Chart


@pytest.fixture
def chart() -> Chart:
    """A fresh patient history (MRN-1) with an auto-numbered event id sequence."""
    return Chart()
