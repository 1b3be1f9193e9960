"""The clinical picture reused between its instants of change (``picture_at``) and the dose steps
extended in place (``order_recorded``) equal a picture derived afresh, at every probe time."""

from __future__ import annotations

from typing import Any

from domain_chart import parse, ts
from hypothesis import given
from test_domain_idempotence_properties import PROFILE, histories

from imnm_common.domain import engine
from imnm_common.domain.config import DEFAULT_RULES_CONFIG
from imnm_common.domain.picture import ClinicalPicture, picture_at
from imnm_common.domain.state import PatientState

THRESHOLD = DEFAULT_RULES_CONFIG.pulse_threshold_mg_per_day
# after each event: at it, within a bridged gap, past it, and weeks to months later
PROBE_DAYS = (0.0, 0.25, 1.0, 1.5, 13.0, 29.0, 60.0, 200.0)


def _observed(picture: ClinicalPicture) -> dict[str, Any]:
    return {
        "steps": list(picture.steps),
        "dose": picture.prednisone_equivalent_mg_per_day,
        "course_start": picture.course_start,
        "recently_stopped_at": picture.recently_stopped_at,
        "peak": picture.course_peak_mg_per_day,
        "phase": picture.phase,
        "taper_started_at": picture.taper_started_at,
        "treatment_started_at": picture.treatment_started_at,
        "change_points": sorted(picture.change_points),
        "sparing": [o.order_id for o in picture.steroid_sparing_counting],
        "without_dose": [o.order_id for o in picture.glucocorticoid_without_dose],
    }


@PROFILE
@given(histories())
def test_a_reused_picture_equals_a_fresh_one(events: list[dict[str, Any]]) -> None:
    states: dict[str, PatientState] = {}
    for event in parse(events):
        state = states.setdefault(event.patient_id, engine.new_state(event.patient_id))
        engine.apply(state, event)
        assert state.clock is not None
        for offset in PROBE_DAYS:
            at = state.clock + ts(offset) - ts(0)
            reused = _observed(picture_at(state, at, THRESHOLD))
            fresh_state = PatientState.from_bytes(state.to_bytes())  # nothing derived yet
            assert reused == _observed(ClinicalPicture(fresh_state, at, THRESHOLD)), (
                f"at +{offset} days after {event.event_id}"
            )
