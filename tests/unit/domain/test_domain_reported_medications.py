"""Medications the patient is reported to take (``reported``: a FHIR MedicationStatement): a statin
there is a hazard, prophylaxis there is cover, a glucocorticoid there is not summed with the
hospital's order that continues it."""

from __future__ import annotations

from typing import Any

import orjson
from domain_chart import Chart, only_rules, replay, rows, ts

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.domain import engine, knowledge
from imnm_common.domain.knowledge import DrugClass
from imnm_common.domain.state import PatientState
from imnm_demo.generator import StreamSpec, generate_lines

STATIN = only_rules("statin_active")
PJP = only_rules("pjp_prophylaxis_missing")
TMP_SMX = "trimethoprim-sulfamethoxazole 800-160 mg"


def test_a_statin_on_the_list_fires_as_the_patients_own_and_resolves_when_stopped(
    chart: Chart,
) -> None:
    dx = chart.dx(0, antibody="anti-HMGCR")
    listed = chart.rx("MedicationStatement/ms-1", 2, "atorvastatin 40 mg", dose=40,
                      reported=True)
    chart.rx("MedicationStatement/ms-1", 6, "atorvastatin 40 mg", status="stopped",
             reported=True)
    opened, resolved = chart.run(10, STATIN)
    assert rows([opened, resolved]) == [
        ("statin_active", "open", 2.0, None),
        ("statin_active", "resolved", 2.0, 6.0),
    ]
    assert opened.summary == (
        "Statin on the medication list (atorvastatin 40 mg) in a patient with IMNM"
    )
    assert opened.detail.startswith(
        "The medication list (MedicationStatement/ms-1) says the patient takes atorvastatin "
        "40 mg (40 mg 1x per 1 d), active since 2025-01-03."
    )
    assert "anti-HMGCR antibodies are positive" in opened.detail
    assert opened.suggestions[0] == (
        "Tell the patient to stop the statin now, and mark it stopped on the list"
    )
    assert opened.evidence == [listed["event_id"], dx["event_id"]]
    assert resolved.alert_id == opened.alert_id


def test_a_statin_order_keeps_its_wording(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("o-1", 2, "atorvastatin 40 mg", dose=40, reported=False)
    [opened] = chart.run(10, STATIN)
    assert opened.summary == "Active statin order (atorvastatin 40 mg) in a patient with IMNM"
    assert opened.suggestions[0] == "Discontinue the statin now and do not re-challenge"


def _on_prednisone_30(chart: Chart) -> None:
    chart.dx(0)
    chart.pred("p1", 1, 30)


def test_prophylaxis_on_the_list_is_cover(chart: Chart) -> None:
    _on_prednisone_30(chart)
    uncovered = chart.run(60, PJP)
    assert rows(uncovered) == [("pjp_prophylaxis_missing", "open", 29.0, None)]
    chart.rx("MedicationStatement/ms-2", 0.5, TMP_SMX, dose=1, unit="tablet", reported=True)
    assert chart.run(60, PJP) == []


def test_a_glucocorticoid_on_the_list_is_not_summed_with_the_order_continuing_it(
    chart: Chart,
) -> None:
    chart.dx(0)
    chart.rx("MedicationStatement/ms-3", 1, "prednisone", dose=15, reported=True)
    chart.pred("p1", 1, 15)  # admission: the home dose continued as an inpatient order
    # summed, 30 mg/day for four weeks would ask for Pneumocystis prophylaxis
    assert chart.run(60, PJP) == []
    state = _state_after(chart, 60)
    assert state.orders["MedicationStatement/ms-3"].classes == []
    assert state.orders["MedicationStatement/ms-3"].latest.prednisone_equivalent_mg_per_day is None


def test_a_glucocorticoid_only_on_the_list_is_not_judged(chart: Chart) -> None:
    """The stated limitation: a dose prescribed elsewhere is not summed, so not judged."""
    chart.dx(0)
    chart.rx("MedicationStatement/ms-3", 1, "prednisone", dose=60, reported=True)
    assert chart.run(60) == []


def test_methotrexate_daily_on_the_list_fires(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("MedicationStatement/ms-4", 1, "methotrexate", dose=15, reported=True)
    [opened] = chart.run(10, only_rules("methotrexate_daily_dosing"))
    assert rows([opened]) == [("methotrexate_daily_dosing", "open", 1.0, None)]


def test_an_order_is_reported_as_its_first_version_said(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("MedicationStatement/ms-1", 2, "atorvastatin 40 mg", dose=40, reported=True)
    chart.rx("MedicationStatement/ms-1", 3, "atorvastatin 20 mg", dose=20)  # flag left out
    [opened] = chart.run(10, STATIN)
    assert opened.summary.startswith("Statin on the medication list")


def _state_after(chart: Chart, day: float) -> PatientState:
    state = engine.new_state(chart.patient_id)
    for event in chart.parsed():
        engine.apply(state, event)
    engine.advance(state, ts(day))
    return state


def test_the_flag_survives_the_table_and_only_reported_rows_carry_it(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("MedicationStatement/ms-1", 2, "atorvastatin 40 mg", dose=40, reported=True)
    chart.pred("p1", 1, 30)
    state = _state_after(chart, 10)
    encoded = state.to_bytes()
    raw = orjson.loads(encoded)
    assert raw[0] == 8
    rows_by_id = {row[0]: row for row in raw[5]}
    assert rows_by_id["MedicationStatement/ms-1"][6:] == [None, [], True]
    assert len(rows_by_id["p1"]) == 6  # an order's row is as short as in format 6
    decoded = PatientState.from_bytes(encoded)
    assert decoded.orders["MedicationStatement/ms-1"].reported is True
    assert decoded.orders["p1"].reported is False
    assert decoded.to_bytes() == encoded


def test_a_format_7_state_reads_with_every_order_ordered(chart: Chart) -> None:
    chart.dx(0)
    chart.rx("o-1", 2, "atorvastatin 40 mg", dose=40)
    raw = orjson.loads(_state_after(chart, 10).to_bytes())
    raw[0] = 7
    decoded = PatientState.from_bytes(orjson.dumps(raw))
    assert decoded.orders["o-1"].reported is False


def test_replaying_with_every_state_stored_and_read_back_changes_nothing(chart: Chart) -> None:
    chart.dx(0, antibody="anti-HMGCR")
    chart.rx("MedicationStatement/ms-1", 2, "atorvastatin 40 mg", dose=40, reported=True)
    chart.rx("MedicationStatement/ms-2", 0.5, TMP_SMX, dose=1, unit="tablet", reported=True)
    chart.rx("MedicationStatement/ms-3", 1, "prednisone", dose=15, reported=True)
    chart.pred("p1", 1, 30)
    chart.rx("MedicationStatement/ms-1", 20, "atorvastatin 40 mg", status="stopped",
             reported=True)
    direct = replay(chart.events, 90)
    assert replay(chart.events, 90, roundtrip_state=True) == direct
    assert ("statin_active", "resolved", 2.0, 20.0) in rows(direct)
    assert not [t for t in direct if t.rule == "pjp_prophylaxis_missing"]


# --------------------------------------------------------------------------------------------
# The strongest check: a generated year, its medications marked reported
def _generated_year() -> list[dict[str, Any]]:
    spec = StreamSpec(patients=80, days=365, seed=23)
    return [orjson.loads(line) for line in generate_lines(spec)]


def _is_glucocorticoid(event: dict[str, Any]) -> bool:
    medication = event["medication"]
    recognition = knowledge.recognise(medication.get("rxnorm"), medication.get("atc"),
                                      medication.get("name"), event.get("route"))
    return DrugClass.GLUCOCORTICOID in recognition.classes


def _comparable(transitions: list[AlertTransition]) -> list[dict[str, Any]]:
    """Every field but the statin alert's wording, in a stable order."""
    dumped = []
    for transition in transitions:
        fields = transition.model_dump(mode="json")
        if transition.rule == "statin_active":
            fields.pop("summary")  # a resolution repeats it
            if transition.status == "open":
                fields.pop("detail")
                fields.pop("suggestions")
        dumped.append(fields)
    return sorted(dumped, key=lambda f: (f["raised_at"], f["alert_id"], f["status"]))


def test_a_year_alerts_alike_when_every_medication_but_the_glucocorticoids_is_reported() -> None:
    events = _generated_year()
    reported = [
        {**event, "reported": True}
        if event["event_type"] == "medication_order" and not _is_glucocorticoid(event)
        else event
        for event in events
    ]
    assert sum(bool(e.get("reported")) for e in reported) > 500
    as_ordered = replay(events, 400)
    as_reported = replay(reported, 400)
    assert _comparable(as_reported) == _comparable(as_ordered)
    statins = [t for t in as_reported if t.rule == "statin_active" and t.status == "open"]
    assert statins and all(t.summary.startswith("Statin on the medication list") for t in statins)
    assert len({t.rule for t in as_ordered}) >= 6  # the rules spoke


def test_a_year_alerts_as_without_them_when_its_glucocorticoids_are_reported() -> None:
    events = _generated_year()
    glucocorticoids = [e for e in events
                       if e["event_type"] == "medication_order" and _is_glucocorticoid(e)]
    assert len(glucocorticoids) > 100
    reported = [{**e, "reported": True} if e in glucocorticoids else e for e in events]
    without = [e for e in events if e not in glucocorticoids]
    assert _comparable(replay(reported, 400)) == _comparable(replay(without, 400))
