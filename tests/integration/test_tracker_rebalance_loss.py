"""Workers join, leave and die while the group reads a backlog: no event may be lost.

One round of ``python -m bench.rebalance_loss`` on the real broker (see its docstring): every
published event must end up in its patient's state, and the group must commit to the end. Before
the third workaround in :mod:`imnm_tracker.faust_fixes`, rounds like this lost events (committed,
never applied) or never finished."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.rebalance_loss import churn_round
from imnm_demo.generator import StreamSpec, generate_lines

pytestmark = pytest.mark.integration


async def test_no_event_is_lost_while_workers_join_leave_and_die(
    kafka_bootstrap: str, tmp_path: Path, unique_name
) -> None:
    lines = [line.encode() for line in generate_lines(StreamSpec(patients=600, seed=2025))]
    result = await churn_round(kafka_bootstrap, lines, tmp_path, unique_name("churn"), seed=101,
                               steps=6, settle_timeout=240.0)
    assert {step.action for step in result.plan} >= {"join", "stop", "kill"}
    assert result.outcome == "complete", (
        f"{result.outcome}: {result.lost_events} events lost at {result.lost_offsets}; "
        f"{result.detail}; worker logs in {tmp_path}")
    assert not result.crashed_workers, f"crashed: {result.crashed_workers}; logs in {tmp_path}"
