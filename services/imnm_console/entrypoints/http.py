"""The console's HTTP side: the worklist and alert pages for pharmacists, a JSON API for other
systems, /healthz and /metrics for operations. Built by ``create_app`` around a store and an
action service, so tests run it against a real store and a real broker or a recording publisher.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from imnm_common.contracts.alerts import Severity
from imnm_common.domain.rules import RULES
from imnm_console.adapters.kafka_feed import PublishFailed
from imnm_console.adapters.store import AlertStore
from imnm_console.domain.worklist import ActionRefused, AlertCard, WorkState
from imnm_console.metrics import ConsoleMetrics
from imnm_console.service_layer.actions import (
    ActionConflict,
    ActionRequest,
    ActionService,
    AlertNotFound,
    InvalidAction,
    WrongUser,
    first_error_message,
)

TEMPLATE_DIR = str(Path(__file__).with_name("templates"))
# What a monitoring system reads without signing in: neither shows a patient.
_OPERATIONS_PATHS = frozenset({"/healthz", "/metrics"})
PAGE_SIZE = 50
SNOOZE_CHOICES = {"4": "4 hours", "24": "1 day", "72": "3 days", "168": "7 days"}
StateFilter = Literal[
    "needs_action", "acknowledged", "overridden", "snoozed", "resolved", "all"
]


def card_json(card: AlertCard, now: datetime) -> dict[str, Any]:
    data = asdict(card)
    data.pop("seen")
    for key in ("evidence", "suggestions", "references"):
        data[key] = list(data[key])
    for key in ("raised_at", "resolved_at", "snooze_until"):
        data[key] = None if data[key] is None else data[key].isoformat()
    data["work_state"] = card.work_state(now).value
    return data


def signed_in(request: Request) -> str | None:
    """The user the sign-in proxy vouched for, or None when the console runs without one."""
    user: str | None = getattr(request.state, "user", None)
    return user


def create_app(
    store: AlertStore,
    service: ActionService,
    metrics: ConsoleMetrics,
    now: Callable[[], datetime],
    feed_status: Callable[[], str] = lambda: "running",
    display_zone: tzinfo = UTC,
    user_header: str | None = None,
    **fastapi_options: Any,
) -> FastAPI:
    """``display_zone``: the site's time zone, in which pages show times (the API uses UTC).

    ``user_header``: the request header in which the hospital's sign-in proxy (SSO) names the
    signed-in user. Set, every page and API call needs it (401 without), and actions are
    recorded in that user's name; unset, the pharmacist types a name (for a closed network
    only). The console must then be reachable through the proxy alone, which sets the header.
    """
    app = FastAPI(title="imnm-safety pharmacy alert console", **fastapi_options)
    templates = Jinja2Templates(directory=TEMPLATE_DIR)

    if user_header is not None:
        header = user_header

        @app.middleware("http")
        async def sign_in_required(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            if request.url.path in _OPERATIONS_PATHS:
                return await call_next(request)
            user = request.headers.get(header, "").strip()
            if not user:
                metrics.unsigned_requests.inc()
                message = (f"sign-in required: the request has no {header} header from the "
                           "hospital's sign-in proxy")
                if request.url.path.startswith("/api/"):
                    return JSONResponse({"detail": message}, status_code=401)
                return templates.TemplateResponse(
                    request, "sign_in_required.html", {"message": message}, status_code=401
                )
            request.state.user = user
            return await call_next(request)

    def when(at: datetime, seconds: bool = False) -> str:
        return at.astimezone(display_zone).strftime(
            "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    templates.env.filters["when"] = when
    templates.env.globals["signed_in"] = signed_in
    templates.env.globals["display_zone"] = str(display_zone)

    def state_of(name: str) -> WorkState | None:
        return None if name == "all" else WorkState(name)

    # ------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse)
    async def worklist(
        request: Request,
        state: StateFilter = "needs_action",
        rule: str | None = None,
        severity: Severity | None = None,
        patient: str | None = None,
        page: Annotated[int, Query(ge=1)] = 1,
    ) -> Response:
        at = now()
        result, counts = await asyncio.gather(
            asyncio.to_thread(
                store.worklist, state_of(state), at, rule=rule or None, severity=severity,
                patient_id=patient or None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE,
            ),
            asyncio.to_thread(store.counts, at),
        )
        return templates.TemplateResponse(request, "worklist.html", {
            "cards": result.cards, "total": result.total, "counts": counts, "state": state,
            "rule": rule or "", "severity": severity or "", "patient": patient or "",
            "page": page, "pages": max(1, -(-result.total // PAGE_SIZE)), "now": at,
            "rules": sorted(RULES), "states": list(WorkState),
        })

    @app.get("/alerts/{alert_id}", response_class=HTMLResponse)
    async def alert_page(request: Request, alert_id: str) -> Response:
        return await _alert_page(request, alert_id)

    async def _alert_page(
        request: Request, alert_id: str, error: str = "", status_code: int = 200,
        form: dict[str, str] | None = None,
    ) -> Response:
        card = await asyncio.to_thread(store.get, alert_id)
        if card is None:
            return templates.TemplateResponse(
                request, "not_found.html", {"alert_id": alert_id}, status_code=404
            )
        transitions, actions = await asyncio.gather(
            asyncio.to_thread(store.transitions_of, alert_id),
            asyncio.to_thread(store.actions_of, alert_id),
        )
        info = RULES[card.rule][0] if card.rule in RULES else None
        return templates.TemplateResponse(request, "alert.html", {
            "card": card, "work_state": card.work_state(now()), "transitions": transitions,
            "actions": actions, "error": error, "form": form or {},
            "resolution_rule": info.resolution if info else "",
            "snooze_choices": SNOOZE_CHOICES, "action_id": f"act-{uuid.uuid4().hex}",
        }, status_code=status_code)

    @app.post("/alerts/{alert_id}/actions", response_class=HTMLResponse)
    async def act_from_form(
        request: Request,
        alert_id: str,
        action: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
        user: Annotated[str, Form()] = "",
        comment: Annotated[str, Form()] = "",
        snooze_hours: Annotated[str, Form()] = "",
        action_id: Annotated[str, Form()] = "",
    ) -> Response:
        form = {"action": action, "reason": reason, "user": user, "comment": comment,
                "snooze_hours": snooze_hours}
        try:
            snooze_until = None
            if action == "snooze":
                if snooze_hours not in SNOOZE_CHOICES:
                    raise InvalidAction("snooze: choose how long to snooze for")
                snooze_until = now() + timedelta(hours=int(snooze_hours))
            body = ActionRequest.model_validate({
                "action": action, "reason": reason, "user": user or None, "comment": comment,
                "snooze_until": snooze_until, "action_id": action_id or None,
            })
            await service.act(alert_id, body, signed_in(request))
        except ValidationError as error:
            return await _alert_page(request, alert_id, first_error_message(error), 422, form)
        except InvalidAction as error:
            return await _alert_page(request, alert_id, error.reason, 422, form)
        except WrongUser as error:
            return await _alert_page(request, alert_id, str(error), 403, form)
        except ActionRefused as error:
            return await _alert_page(request, alert_id, error.reason, 409, form)
        except ActionConflict as error:
            return await _alert_page(request, alert_id, str(error), 409, form)
        except AlertNotFound:
            return await _alert_page(request, alert_id)
        except PublishFailed:
            return await _alert_page(
                request, alert_id, "the alert bus did not take the action; nothing was "
                "recorded, please try again", 503, form,
            )
        return RedirectResponse(f"/alerts/{alert_id}", status_code=303)

    # ------------------------------------------------------------------ JSON API
    @app.get("/api/alerts")
    async def list_alerts(
        state: StateFilter = "needs_action",
        rule: str | None = None,
        severity: Severity | None = None,
        patient_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        at = now()
        result = await asyncio.to_thread(
            store.worklist, state_of(state), at, rule=rule, severity=severity,
            patient_id=patient_id, limit=limit, offset=offset,
        )
        return {"total": result.total, "alerts": [card_json(c, at) for c in result.cards]}

    @app.get("/api/alerts/{alert_id}")
    async def get_alert(alert_id: str) -> dict[str, Any]:
        card = await asyncio.to_thread(store.get, alert_id)
        if card is None:
            raise HTTPException(404, f"no alert {alert_id}")
        transitions = await asyncio.to_thread(store.transitions_of, alert_id)
        actions = await asyncio.to_thread(store.actions_of, alert_id)
        return {
            **card_json(card, now()),
            "transitions": [
                {"status": t.status, "received_at": t.received_at.isoformat(),
                 "topic": t.topic, "partition": t.partition, "offset": t.offset}
                for t in transitions
            ],
            "actions": [a.model_dump(mode="json") for a in actions],
        }

    @app.post("/api/alerts/{alert_id}/actions", status_code=201)
    async def act(request: Request, alert_id: str, body: ActionRequest) -> Response:
        try:
            action, new = await service.act(alert_id, body, signed_in(request))
        except WrongUser as error:
            raise HTTPException(403, str(error)) from error
        except AlertNotFound as error:
            raise HTTPException(404, f"no alert {alert_id}") from error
        except InvalidAction as error:
            raise HTTPException(422, error.reason) from error
        except (ActionRefused, ActionConflict) as error:
            raise HTTPException(409, str(error)) from error
        except PublishFailed as error:
            raise HTTPException(503, f"the alert bus did not take the action: {error}") from error
        return JSONResponse(action.model_dump(mode="json"), status_code=201 if new else 200)

    # ------------------------------------------------------------------ operations
    @app.get("/healthz")
    async def healthz() -> Response:
        feed = feed_status()
        healthy = feed == "running"
        return JSONResponse({"status": "ok" if healthy else "degraded", "alert_feed": feed},
                            status_code=200 if healthy else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        body = await asyncio.to_thread(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app

