"""Judging only the rules that are due or dirty gives exactly what judging every rule gives.

The engine skips a rule when no event it reads arrived and none of its due times passed; this
compares it with a reference that judges every rule at every evaluation, on synthetic
years (time-ordered, and locally shuffled with re-deliveries, i.e. late and duplicate events).
"""

from __future__ import annotations

import json
import random

import pytest
from domain_chart import judge_everything

from imnm_common.domain import engine
from imnm_common.service_layer.replay import Replay
from imnm_demo.generator import StreamSpec, delivered_out_of_order, generate_lines


def _replay(lines: list[str]) -> list[str]:
    replay = Replay()
    out = [t.model_dump_json() for t in replay.feed_lines(lines)]
    out += [t.model_dump_json() for t in replay.finish(1_800_000_000.0)]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shuffle", [False, True])
def test_selective_evaluation_equals_judging_every_rule(
    seed: int, shuffle: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = list(generate_lines(StreamSpec(patients=120, seed=seed)))
    if shuffle:
        lines = delivered_out_of_order(lines, random.Random(seed))
    selective = _replay(lines)
    monkeypatch.setattr(engine, "_evaluate", judge_everything)
    reference = _replay(lines)
    assert len(reference) > 100
    assert selective == reference


def _methotrexate_overdoses(lines: list[str]) -> list[str]:
    """Every third methotrexate order version with a dose ordered at five times that dose."""
    changed, seen = [], 0
    for line in lines:
        event = json.loads(line)
        name = str(event.get("medication", {}).get("name", "")).lower()
        if "methotrexate" in name and event.get("dose"):
            seen += 1
            if seen % 3 == 0:
                event["dose"]["value"] *= 5
                line = json.dumps(event)
        changed.append(line)
    return changed


def test_selective_evaluation_with_methotrexate_above_range(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _methotrexate_overdoses(list(generate_lines(StreamSpec(patients=120, seed=4))))
    selective = _replay(lines)
    monkeypatch.setattr(engine, "_evaluate", judge_everything)
    reference = _replay(lines)
    assert sum('"rule":"methotrexate_dose_above_range"' in t for t in reference) > 5
    assert selective == reference
