"""The console's HTTP side against a real store and action service, a recording publisher
standing in for the alert-action.v1 producer."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx2
import pytest
from console_builders import NOW, RAISED, act_on, batch, opened, resolved
from fastapi.testclient import TestClient

from imnm_common.contracts.actions import AlertAction
from imnm_console.adapters.kafka_feed import PublishFailed
from imnm_console.adapters.store import AlertStore
from imnm_console.domain.worklist import WorkState
from imnm_console.entrypoints.http import create_app
from imnm_console.metrics import ConsoleMetrics
from imnm_console.service_layer.actions import ActionService

ALERT = "al-statin_active-P-001-0001"
RESOLVED_ALERT = "al-ck_monitoring_overdue-P-001-0001"
SCRIPT_SUMMARY = "Simvastatin <script>alert('x')</script> & co active"


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[AlertAction] = []

    async def publish(self, action: AlertAction) -> None:
        self.published.append(action)


class FailingPublisher(RecordingPublisher):
    async def publish(self, action: AlertAction) -> None:
        raise PublishFailed("KafkaTimeoutError: no broker took the message")


@dataclass
class Console:
    client: TestClient
    store: AlertStore
    publisher: RecordingPublisher
    metrics: ConsoleMetrics
    feed: list[str]


def _seed(store: AlertStore) -> None:
    done = opened(RESOLVED_ALERT, rule="ck_monitoring_overdue",
                  summary="No creatine kinase result for 6 weeks")
    store.apply_transitions(batch(
        opened(ALERT, references=("ENMC 2016 IMNM guidance", "ACR statin myopathy note")),
        opened("al-pjp_prophylaxis_missing-P-002-0001", patient_id="P-002",
               rule="pjp_prophylaxis_missing", summary=SCRIPT_SUMMARY),
        done, resolved(done),
    ), NOW)


def _console(
    store: AlertStore, publisher: RecordingPublisher, now: Callable[[], datetime] = lambda: NOW,
) -> Iterator[Console]:
    _seed(store)
    metrics = ConsoleMetrics()
    metrics.watch_worklist(lambda: store.counts(now()))
    feed = ["running"]
    service = ActionService(store, publisher, metrics, now)
    app = create_app(store, service, metrics, now, feed_status=lambda: feed[0])
    with TestClient(app) as client:
        yield Console(client, store, publisher, metrics, feed)


@pytest.fixture
def console(store: AlertStore) -> Iterator[Console]:
    yield from _console(store, RecordingPublisher())


@pytest.fixture
def failing_console(store: AlertStore) -> Iterator[Console]:
    yield from _console(store, FailingPublisher())


def _form(**fields: str) -> dict[str, str]:
    data = {"action": "acknowledge", "reason": "addressed", "user": "pharm.jdoe",
            "comment": "", "snooze_hours": "", "action_id": "act-form-0001"}
    data.update(fields)
    return data


def _post_form(console: Console, alert_id: str = ALERT, **fields: str) -> httpx2.Response:
    return console.client.post(f"/alerts/{alert_id}/actions", data=_form(**fields),
                               follow_redirects=False)


# ------------------------------------------------------------------ pages
def test_worklist_lists_open_alerts_and_escapes_summaries(console: Console) -> None:
    response = console.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    body = response.text
    assert f'data-alert-id="{ALERT}"' in body
    assert f'href="/alerts/{ALERT}"' in body
    assert "Atorvastatin 40 mg daily is active" in body
    assert "<script>" not in body
    assert html.escape(SCRIPT_SUMMARY, quote=False).replace("'", "&#39;") in body
    assert RESOLVED_ALERT not in body  # resolved: not on the needs-action tab
    assert 'data-testid="tab-needs_action">needs action (2)' in body
    assert 'data-testid="tab-resolved">resolved (1)' in body


def test_worklist_filters_by_state_and_patient(console: Console) -> None:
    resolved_tab = console.client.get("/", params={"state": "resolved"}).text
    assert f'data-alert-id="{RESOLVED_ALERT}"' in resolved_tab
    assert f'data-alert-id="{ALERT}"' not in resolved_tab
    p2 = console.client.get("/", params={"state": "all", "patient": "P-002"}).text
    assert 'data-alert-id="al-pjp_prophylaxis_missing-P-002-0001"' in p2
    assert ALERT not in p2


def test_unknown_state_filter_is_422(console: Console) -> None:
    assert console.client.get("/", params={"state": "deleted"}).status_code == 422
    assert console.client.get("/api/alerts", params={"state": "deleted"}).status_code == 422


def test_alert_page_shows_detail_evidence_and_references(console: Console) -> None:
    response = console.client.get(f"/alerts/{ALERT}")
    assert response.status_code == 200
    body = response.text
    assert "Atorvastatin 40 mg PO daily (order ord-17) has been active since 2026-03-02" in body
    assert "<code>ev-med-17</code>" in body and "<code>ev-lab-4</code>" in body
    assert "ENMC 2016 IMNM guidance" in body and "ACR statin myopathy note" in body
    assert "Discontinue the statin permanently" in body
    # how it resolves
    assert ("the statin order, or the statin on the medication list, is no longer active or "
            "on hold") in body
    assert 'data-testid="work-state">needs action' in body
    assert f'action="/alerts/{ALERT}/actions"' in body
    assert 'name="action_id" value="act-' in body


def test_unknown_alert_is_404_in_html_and_json(console: Console) -> None:
    page = console.client.get("/alerts/al-nope")
    assert page.status_code == 404
    assert "No alert al-nope" in page.text
    assert console.client.get("/api/alerts/al-nope").status_code == 404
    form = _post_form(console, "al-nope")
    assert form.status_code == 404
    api = console.client.post("/api/alerts/al-nope/actions",
                              json={"action": "acknowledge", "reason": "addressed",
                                    "user": "pharm.jdoe"})
    assert api.status_code == 404
    assert console.publisher.published == []


# ------------------------------------------------------------------ the form
def test_form_acknowledge_redirects_and_acknowledges(console: Console) -> None:
    response = _post_form(console, comment="stopped by Dr Lee")
    assert response.status_code == 303
    assert response.headers["location"] == f"/alerts/{ALERT}"

    card = console.store.get(ALERT)
    assert card.last_action == "acknowledge"
    assert card.last_action_by == "pharm.jdoe"
    assert card.work_state(NOW) is WorkState.ACKNOWLEDGED
    (published,) = console.publisher.published
    assert published.alert_id == ALERT
    assert published.patient_id == "P-001"
    assert published.action_id == "act-form-0001"
    assert published.comment == "stopped by Dr Lee"
    assert published.at == NOW
    assert console.store.actions_of(ALERT) == [published]

    page = console.client.get(f"/alerts/{ALERT}").text
    assert 'data-testid="work-state">acknowledged' in page
    assert "stopped by Dr Lee" in page


def test_same_form_posted_twice_is_one_action(console: Console) -> None:
    first = _post_form(console, action_id="act-double-1")
    second = _post_form(console, action_id="act-double-1")
    assert (first.status_code, second.status_code) == (303, 303)
    assert len(console.publisher.published) == 1
    assert len(console.store.actions_of(ALERT)) == 1


def test_form_snooze_sets_the_end_from_the_chosen_duration(console: Console) -> None:
    response = _post_form(console, action="snooze", snooze_hours="24")
    assert response.status_code == 303
    card = console.store.get(ALERT)
    assert card.snooze_until == NOW + timedelta(hours=24)
    assert card.work_state(NOW) is WorkState.SNOOZED


def test_form_snooze_without_duration_is_422_with_a_message(console: Console) -> None:
    response = _post_form(console, action="snooze", snooze_hours="")
    assert response.status_code == 422
    assert 'data-testid="error"' in response.text
    assert "choose how long to snooze for" in response.text
    assert console.publisher.published == []
    assert console.store.get(ALERT).last_action is None


def test_form_override_other_without_comment_is_422_naming_comment(console: Console) -> None:
    response = _post_form(console, action="override", reason="other", comment="   ")
    assert response.status_code == 422
    assert "comment: an override with reason &#39;other&#39; needs a comment" in response.text
    assert console.publisher.published == []
    assert console.store.actions_of(ALERT) == []


def test_form_with_no_name_is_422_and_keeps_the_entries(console: Console) -> None:
    response = _post_form(console, user="", comment="called the ward")
    assert response.status_code == 422
    assert 'data-testid="error"' in response.text
    assert "called the ward" in response.text  # what was typed is shown again
    assert console.publisher.published == []


def test_form_action_on_resolved_alert_is_409_and_says_why(console: Console) -> None:
    response = _post_form(console, RESOLVED_ALERT)
    assert response.status_code == 409
    assert console.publisher.published == []
    assert console.store.actions_of(RESOLVED_ALERT) == []
    # ActionRefused.reason "says why, for the pharmacist": the re-rendered page must show it
    assert "the alert was resolved on 2026-03-08" in response.text


def test_form_publish_failure_is_503_and_nothing_recorded(failing_console: Console) -> None:
    response = _post_form(failing_console)
    assert response.status_code == 503
    assert "nothing was recorded" in response.text
    assert failing_console.store.actions_of(ALERT) == []
    assert failing_console.store.find_action("act-form-0001") is None
    assert failing_console.store.get(ALERT).last_action is None


# ------------------------------------------------------------------ JSON API
def test_api_lists_alerts_with_work_state(console: Console) -> None:
    response = console.client.get("/api/alerts")
    assert response.status_code == 200
    data = response.json()
    assert data["total"] == 2
    assert [a["alert_id"] for a in data["alerts"]] == [
        ALERT, "al-pjp_prophylaxis_missing-P-002-0001",
    ]  # critical first
    first = data["alerts"][0]
    assert first["work_state"] == "needs_action"
    assert first["evidence"] == ["ev-med-17", "ev-lab-4"]
    assert datetime.fromisoformat(first["raised_at"]) == opened().raised_at
    assert "seen" not in first
    resolved_list = console.client.get("/api/alerts", params={"state": "resolved"}).json()
    assert [a["alert_id"] for a in resolved_list["alerts"]] == [RESOLVED_ALERT]
    paged = console.client.get("/api/alerts", params={"state": "all", "limit": 1,
                                                      "offset": 1}).json()
    assert paged["total"] == 3
    assert len(paged["alerts"]) == 1


def test_api_detail_has_history(console: Console) -> None:
    act_on(console.store, ALERT, "override", reason="clinically_appropriate",
           comment="myositis team aware")
    response = console.client.get(f"/api/alerts/{ALERT}")
    assert response.status_code == 200
    data = response.json()
    assert data["alert_id"] == ALERT
    assert data["work_state"] == "overridden"
    assert data["detail"].startswith("Atorvastatin 40 mg PO daily")
    assert [a["comment"] for a in data["actions"]] == ["myositis team aware"]
    (transition,) = data["transitions"]
    assert transition["status"] == "open"
    assert transition["topic"] == "imnm.alert.v1"
    # received_at must be one ISO 8601 timestamp (as every other time in the API)
    received = datetime.fromisoformat(transition["received_at"])
    assert received == NOW


def test_api_action_201_then_200_for_the_same_action_id(console: Console) -> None:
    body = {"action": "snooze", "reason": "prescriber_contacted", "user": "pharm.jdoe",
            "snooze_until": (NOW + timedelta(hours=8)).isoformat(), "action_id": "act-api-1"}
    first = console.client.post(f"/api/alerts/{ALERT}/actions", json=body)
    assert first.status_code == 201
    assert first.json()["patient_id"] == "P-001"
    assert first.json()["action_id"] == "act-api-1"
    again = console.client.post(f"/api/alerts/{ALERT}/actions", json=body)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(console.publisher.published) == 1
    assert console.store.get(ALERT).work_state(NOW) is WorkState.SNOOZED


def test_api_action_id_used_for_another_alert_is_409(console: Console) -> None:
    body = {"action": "acknowledge", "reason": "addressed", "user": "pharm.jdoe",
            "action_id": "act-api-2"}
    assert console.client.post(f"/api/alerts/{ALERT}/actions", json=body).status_code == 201
    other = console.client.post(
        "/api/alerts/al-pjp_prophylaxis_missing-P-002-0001/actions", json=body)
    assert other.status_code == 409
    assert len(console.publisher.published) == 1


def test_api_action_errors(console: Console) -> None:
    url = f"/api/alerts/{ALERT}/actions"
    snooze = console.client.post(url, json={"action": "snooze", "reason": "addressed",
                                            "user": "pharm.jdoe"})
    assert snooze.status_code == 422
    assert "snooze_until" in snooze.json()["detail"]
    unknown_field = console.client.post(url, json={"action": "acknowledge",
                                                   "reason": "addressed", "user": "x",
                                                   "patient_id": "P-002"})
    assert unknown_field.status_code == 422
    on_resolved = console.client.post(f"/api/alerts/{RESOLVED_ALERT}/actions",
                                      json={"action": "acknowledge", "reason": "addressed",
                                            "user": "pharm.jdoe"})
    assert on_resolved.status_code == 409
    assert "resolved on 2026-03-08" in on_resolved.json()["detail"]
    assert console.publisher.published == []


def test_api_publish_failure_is_503_and_nothing_recorded(failing_console: Console) -> None:
    response = failing_console.client.post(
        f"/api/alerts/{ALERT}/actions",
        json={"action": "acknowledge", "reason": "addressed", "user": "pharm.jdoe",
              "action_id": "act-api-fail"})
    assert response.status_code == 503
    assert failing_console.store.find_action("act-api-fail") is None
    assert failing_console.store.get(ALERT).last_action is None


# ------------------------------------------------------------------ operations
def test_metrics_name_categories_never_patients(console: Console) -> None:
    assert _post_form(console).status_code == 303
    assert _post_form(console, RESOLVED_ALERT, action_id="act-form-0002").status_code == 409
    response = console.client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'imnm_console_worklist_alerts{state="acknowledged"} 1.0' in text
    assert 'imnm_console_worklist_alerts{state="needs_action"} 1.0' in text
    assert 'imnm_console_worklist_alerts{state="resolved"} 1.0' in text
    assert 'imnm_console_actions_total{action="acknowledge"} 1.0' in text
    assert 'imnm_console_actions_refused_total{reason="refused"} 1.0' in text
    assert "imnm_console_transitions_consumed" in text
    for identifying in ("P-001", "P-002", ALERT, "pharm.jdoe"):
        assert identifying not in text


def test_healthz_follows_the_alert_feed(console: Console) -> None:
    ok = console.client.get("/healthz")
    assert ok.status_code == 200
    assert ok.json() == {"status": "ok", "alert_feed": "running"}
    console.feed[0] = "stopped"
    degraded = console.client.get("/healthz")
    assert degraded.status_code == 503
    assert degraded.json() == {"status": "degraded", "alert_feed": "stopped"}


def test_pages_show_times_in_the_sites_zone_and_the_api_in_utc(store: AlertStore) -> None:
    _seed(store)
    metrics = ConsoleMetrics()
    service = ActionService(store, RecordingPublisher(), metrics, lambda: NOW)
    app = create_app(store, service, metrics, lambda: NOW,
                     display_zone=ZoneInfo("America/New_York"))
    with TestClient(app) as client:
        page = client.get("/").text
        assert "times in America/New_York" in page
        # raised 2026-03-02 08:15 UTC is 03:15 in New York (EST, UTC-5)
        assert "2026-03-02 03:15" in page and "2026-03-02 08:15" not in page
        alert = client.get(f"/alerts/{ALERT}").text
        assert "since 2026-03-02 03:15" in alert
        assert 'href="/?state=all&amp;patient=P-001"' in alert  # the patient's other alerts
        api = client.get(f"/api/alerts/{ALERT}").json()
        assert datetime.fromisoformat(api["raised_at"]) == RAISED


# ------------------------------------------------------------------ behind a sign-in proxy
USER_HEADER = "X-Forwarded-User"


@pytest.fixture
def signed_console(store: AlertStore) -> Iterator[Console]:
    _seed(store)
    metrics = ConsoleMetrics()
    publisher = RecordingPublisher()
    service = ActionService(store, publisher, metrics, lambda: NOW)
    app = create_app(store, service, metrics, lambda: NOW, user_header=USER_HEADER)
    with TestClient(app) as client:
        yield Console(client, store, publisher, metrics, ["running"])


def test_without_the_proxys_header_nothing_with_patients_is_served(
    signed_console: Console,
) -> None:
    client = signed_console.client
    for path in ("/", f"/alerts/{ALERT}"):
        page = client.get(path)
        assert page.status_code == 401
        assert "sign-in required" in page.text and "P-001" not in page.text
    api = client.get("/api/alerts")
    assert api.status_code == 401
    assert api.json() == {"detail": "sign-in required: the request has no X-Forwarded-User "
                                    "header from the hospital's sign-in proxy"}
    posted = client.post(f"/alerts/{ALERT}/actions", data=_form(), follow_redirects=False)
    assert posted.status_code == 401
    assert signed_console.publisher.published == []
    # operations stay readable to monitoring, which signs in nowhere
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics").text
    assert "imnm_console_unsigned_requests_total 4.0" in metrics


def test_actions_are_recorded_in_the_signed_in_users_name(signed_console: Console) -> None:
    client = signed_console.client
    who = {USER_HEADER: "jdoe@hospital.example"}
    page = client.get(f"/alerts/{ALERT}", headers=who).text
    assert 'data-testid="acting-as"' in page and 'name="user"' not in page
    assert "signed in as jdoe@hospital.example" in page
    form = _form()
    del form["user"]
    response = client.post(f"/alerts/{ALERT}/actions", data=form, headers=who,
                           follow_redirects=False)
    assert response.status_code == 303
    (published,) = signed_console.publisher.published
    assert published.user == "jdoe@hospital.example"
    assert signed_console.store.get(ALERT).last_action_by == "jdoe@hospital.example"
    api = client.post(f"/api/alerts/{ALERT}/actions", headers=who,
                      json={"action": "snooze", "reason": "prescriber_contacted",
                            "snooze_until": (NOW + timedelta(hours=4)).isoformat()})
    assert api.status_code == 201 and api.json()["user"] == "jdoe@hospital.example"


def test_an_action_in_someone_elses_name_is_403(signed_console: Console) -> None:
    client = signed_console.client
    who = {USER_HEADER: "jdoe@hospital.example"}
    api = client.post(f"/api/alerts/{ALERT}/actions", headers=who,
                      json={"action": "acknowledge", "reason": "addressed", "user": "asmith"})
    assert api.status_code == 403
    assert api.json()["detail"] == ("user: the request names 'asmith' but you are signed in "
                                    "as 'jdoe@hospital.example'")
    form = client.post(f"/alerts/{ALERT}/actions", data=_form(user="asmith"), headers=who,
                       follow_redirects=False)
    assert form.status_code == 403 and "signed in as" in form.text
    assert signed_console.publisher.published == []
    assert signed_console.store.actions_of(ALERT) == []
    metrics = client.get("/metrics").text
    assert 'imnm_console_actions_refused_total{reason="wrong_user"} 2.0' in metrics


def test_without_a_proxy_the_api_needs_a_name(console: Console) -> None:
    response = console.client.post(f"/api/alerts/{ALERT}/actions",
                                   json={"action": "acknowledge", "reason": "addressed"})
    assert response.status_code == 422
    assert response.json()["detail"] == "user: who acts is required (your name)"
    assert console.publisher.published == []
