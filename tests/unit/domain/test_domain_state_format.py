"""How a patient state is serialised: positional rows, times as floats (computed and decoded
alike), the same bytes however the state was reached, and a readable form with named fields."""

from __future__ import annotations

import orjson
from domain_chart import Chart, ts

from imnm_common.domain import engine
from imnm_common.domain.state import LabValue, OrderVersion, PatientState


def _state(chart: Chart) -> PatientState:
    state = engine.new_state(chart.patient_id)
    for event in chart.parsed():
        engine.apply(state, event)
    engine.advance(state, ts(40))
    return state


def _chart() -> Chart:
    chart = Chart()
    chart.dx(0)
    chart.pred("p1", 0, 60)
    chart.ck(1, 900)
    chart.ck(2.5 + 0.25 / 86_400, 700)  # a quarter of a second past a whole second
    chart.mmt8(3, 120)
    return chart


def test_rows_are_arrays_and_times_stay_floats() -> None:
    state = _state(_chart())
    encoded = state.to_bytes()
    raw = orjson.loads(encoded)
    orders, cks, scores = raw[5], raw[6], raw[8]
    version = orders[0][5][0]
    assert version == [ts(0), "active", version[2], 60.0, 1.0, "", None, None]
    assert cks[0][:2] == [ts(1), 900.0]
    assert cks[1][0] == ts(2.5) + 0.25  # a fraction is kept
    assert scores == [[ts(3), 120.0, scores[0][2]]]
    assert f"[{ts(0):.1f},".encode() in encoded  # written as a float, read back as one
    decoded = PatientState.from_bytes(encoded)
    times = [decoded.clock, decoded.evaluated_at, *decoded.rule_due.values(),
             *(v.at for o in decoded.orders.values() for v in o.versions),
             *(r.at for r in decoded.creatine_kinase), *(m.at for m in decoded.mmt8_scores)]
    # float against float: CPython compares an int with a float more slowly
    assert times and all(isinstance(t, float) for t in times)
    assert isinstance(state.orders["p1"].versions[0], OrderVersion)
    assert isinstance(state.creatine_kinase[0], LabValue)


def test_the_same_bytes_whether_computed_or_decoded() -> None:
    state = _state(_chart())
    decoded = PatientState.from_bytes(state.to_bytes())
    assert decoded == state
    assert decoded.to_bytes() == state.to_bytes()


def test_the_readable_form_names_every_field() -> None:
    readable = _state(_chart()).to_dict()
    assert readable["orders"]["p1"]["versions"][0]["status"] == "active"
    assert readable["creatine_kinase"][1]["value"] == 700.0
    assert readable["mmt8_scores"][0]["score"] == 120.0
    orjson.dumps(readable)  # plain JSON: no tuples left that a reader would see as arrays


def test_a_bound_survives_the_table_and_older_rows_read_without_one() -> None:
    chart = _chart()
    chart.ck(4, 2000, comparator=">")
    state = _state(chart)
    decoded = PatientState.from_bytes(state.to_bytes())
    assert [(r.value, r.comparator) for r in decoded.creatine_kinase] == [
        (900.0, None), (700.0, None), (2000.0, ">")]
    # format 4: lab rows of five fields and order versions of six, read with the defaults
    raw = orjson.loads(_state(_chart()).to_bytes())
    raw[0] = 4
    raw[6] = [row[:5] for row in raw[6]]
    for order in raw[5]:
        order[5] = [version[:6] for version in order[5]]
    older = PatientState.from_bytes(orjson.dumps(raw))
    assert [(r.value, r.comparator) for r in older.creatine_kinase] == [
        (900.0, None), (700.0, None)]
    assert older == _state(_chart())


def test_body_weights_and_weight_based_doses_survive_the_table_and_format_5_reads() -> None:
    chart = _chart()
    chart.weight(0, 70)
    chart.rx("p2", 1, "prednisolone", dose=0.5, unit="mg/kg")
    state = _state(chart)
    decoded = PatientState.from_bytes(state.to_bytes())
    assert decoded == state
    assert [(w.at, w.value) for w in decoded.body_weights] == [(ts(0), 70.0)]
    version = decoded.orders["p2"].versions[0]
    assert (version.mg_per_kg_per_day, version.prednisone_equivalent_mg_per_day) == (0.5, 35.0)
    assert decoded.to_dict()["body_weights"][0]["value"] == 70.0
    # format 5: no body weights, order versions of seven fields
    raw = orjson.loads(_state(_chart()).to_bytes())
    raw[0] = 5
    del raw[17]
    for order in raw[5]:
        order[5] = [version[:7] for version in order[5]]
    assert PatientState.from_bytes(orjson.dumps(raw)) == _state(_chart())


def test_a_tacrolimus_alert_opened_before_the_slot_per_side_keeps_its_id() -> None:
    # States written before 2026-12-01 hold an open tacrolimus alert under the rule's name; read
    # today, it continues under its side's slot instead of resolving and opening again.
    chart = Chart()
    chart.dx(0)
    chart.tacro(1, 3.0)
    state = engine.new_state(chart.patient_id)
    opened = []
    for event in chart.parsed():
        opened += engine.apply(state, event).transitions
    opened += engine.advance(state, ts(1))
    [alert] = [t for t in opened if t.rule == "tacrolimus_trough_out_of_range"]
    raw = orjson.loads(state.to_bytes())
    alerts = raw[9]
    assert list(alerts) == ["tacrolimus_trough_out_of_range:low"]
    raw[9] = {"tacrolimus_trough_out_of_range": alerts["tacrolimus_trough_out_of_range:low"]}
    restored = PatientState.from_bytes(orjson.dumps(raw))
    assert list(restored.open_alerts) == ["tacrolimus_trough_out_of_range:low"]

    later = Chart()
    later.tacro(2, 4.0)  # still low: nothing changes
    later.ck(3, 900)
    later.tacro(5, 7.0)  # in range: the alert opened before resolves, under its own id
    transitions = []
    for event in later.parsed():
        transitions += engine.apply(restored, event).transitions
        transitions += engine.advance(restored, event.occurred_at.timestamp())
    tacrolimus = [t for t in transitions if t.rule == "tacrolimus_trough_out_of_range"]
    assert [(t.status, t.alert_id) for t in tacrolimus] == [("resolved", alert.alert_id)]
