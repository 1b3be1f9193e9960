"""MedicationRequest.intent: what is an order of its own. A proposal, an option or one
administration's instance-order adds no exposure; a pharmacy's filler-order is the prescription it
fills, not a second one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fhir_samples import Resource, changed, imnm_condition, prednisone_order

from imnm_common.contracts.alerts import AlertTransition
from imnm_common.contracts.events import CanonicalEvent, MedicationOrderEvent
from imnm_common.service_layer.replay import Replay
from imnm_ingest.domain.fhir import events_from_fhir


def convert(document: Resource) -> list[CanonicalEvent]:
    return events_from_fhir(orjson.dumps(document))


def filler(based_on: list[dict[str, Any]], **fields: Any) -> Resource:
    """The pharmacy's order filling medrx-pred-3001, verified half an hour later."""
    fields.setdefault("meta", {"versionId": "1", "lastUpdated": "2025-01-06T09:35:00+00:00"})
    return changed(prednisone_order(), id="pharm-77", intent="filler-order", basedOn=based_on,
                   identifier=None, authoredOn="2025-01-06T09:35:00+00:00", **fields)


@pytest.mark.parametrize("intent", ["proposal", "option", "instance-order"])
def test_what_is_not_an_order_of_its_own_is_nothing(intent: str) -> None:
    assert convert(changed(prednisone_order(), intent=intent)) == []


@pytest.mark.parametrize("intent", ["order", "original-order", "reflex-order", "plan"])
def test_orders_and_plans_are_orders(intent: str) -> None:
    [event] = convert(changed(prednisone_order(), intent=intent))
    assert isinstance(event, MedicationOrderEvent) and event.order_id == "medrx-pred-3001"


@pytest.mark.parametrize("reference", [
    "MedicationRequest/medrx-pred-3001",
    "https://ehr.example.org/fhir/MedicationRequest/medrx-pred-3001/_history/1",
])
def test_a_filler_order_is_the_prescription_it_fills(reference: str) -> None:
    [event] = convert(filler([{"reference": "ServiceRequest/sr-1"}, {"reference": reference}]))
    assert isinstance(event, MedicationOrderEvent)
    assert event.order_id == "medrx-pred-3001"
    assert event.event_id == "fhir:MedicationRequest/pharm-77/1"  # its own version


def test_a_filler_order_finds_its_prescription_in_the_bundle() -> None:
    placer = changed(prednisone_order(), id="medrx-pred-9")
    document = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:placer-1", "resource": placer},
        {"resource": filler([{"reference": "urn:uuid:placer-1"}])},
    ]}
    assert [getattr(e, "order_id", None) for e in convert(document)] == [
        "medrx-pred-9", "medrx-pred-9"]


def test_a_filler_order_based_on_nothing_it_can_name_stays_its_own() -> None:
    for based_on in ([], [{"reference": "ServiceRequest/sr-1"}], [{"display": "the order"}]):
        [event] = convert(filler(based_on))
        assert isinstance(event, MedicationOrderEvent) and event.order_id == "pharm-77"


def _alerts(*resources: Resource) -> list[AlertTransition]:
    events = sorted([e for r in resources for e in convert(r)], key=lambda e: e.occurred_at)
    replay = Replay()
    transitions = [t for e in events for t in replay.feed(e)]
    return transitions + list(replay.finish(datetime(2025, 3, 1, tzinfo=UTC).timestamp()))


def test_the_prescribers_and_the_pharmacys_versions_count_once() -> None:
    """Prednisone 60 mg prescribed and verified by the pharmacy: 60 mg/day, not 120."""
    prescribed_and_filled = _alerts(imnm_condition(), prednisone_order(),
                                    filler([{"reference": "MedicationRequest/medrx-pred-3001"}]))
    calcium = [t for t in prescribed_and_filled
               if t.rule == "calcium_vitamin_d_missing" and t.status == "open"]
    assert calcium and calcium[0].detail.startswith(
        "Glucocorticoid 60 mg/day prednisone-equivalent now")
    # the pharmacy's stop ends the prescription
    stopped = filler([{"reference": "MedicationRequest/medrx-pred-3001"}], status="stopped",
                     meta={"versionId": "2", "lastUpdated": "2025-01-08T10:00:00+00:00"})
    assert not [t for t in _alerts(imnm_condition(), prednisone_order(), stopped)
                if t.status == "open" and t.rule == "calcium_vitamin_d_missing"]
