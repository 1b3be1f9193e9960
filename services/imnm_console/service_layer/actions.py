"""One use case: a pharmacist acts on an alert. Validate, decide, publish, then record.

Publishing comes before recording so that a store row always has its message on the topic; a
failed publish records nothing and the pharmacist retries. The action id is chosen when the form
is rendered, so a double-submitted form or a retried request is one action, not two.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from imnm_common.contracts.actions import ActionReason, AlertAction
from imnm_console.adapters.store import AlertStore
from imnm_console.domain.worklist import ActionRefused, take_action
from imnm_console.metrics import ConsoleMetrics


class ActionRequest(BaseModel):
    """What the console's form or API client sends; the console adds alert, patient and time."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    action: Literal["acknowledge", "override", "snooze"]
    reason: ActionReason
    # Behind a sign-in proxy the console takes the user from it (``acting_user``); without one,
    # the client names them.
    user: str | None = Field(default=None, min_length=1, max_length=128)
    comment: str = Field(default="", max_length=2000)
    snooze_until: AwareDatetime | None = None
    action_id: str | None = Field(default=None, min_length=1, max_length=128)


    def acting_user(self, signed_in: str | None) -> str:
        """Who acts: the signed-in user when the console runs behind a sign-in proxy (a
        different name in the request is refused), else the one the request names."""
        if signed_in is None:
            if self.user is None:
                raise InvalidAction("user: who acts is required (your name)")
            return self.user
        if self.user is not None and self.user != signed_in:
            raise WrongUser(
                f"user: the request names {self.user!r} but you are signed in as {signed_in!r}"
            )
        return signed_in


class AlertNotFound(Exception):
    pass


class WrongUser(Exception):
    """An action in someone else's name."""


class ActionConflict(Exception):
    """The action id is already used for another alert."""


class InvalidAction(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Publisher(Protocol):
    async def publish(self, action: AlertAction) -> None: ...


class ActionService:
    def __init__(
        self, store: AlertStore, publisher: Publisher, metrics: ConsoleMetrics,
        now: Callable[[], datetime],
    ) -> None:
        self._store, self._publisher, self._metrics, self._now = store, publisher, metrics, now

    async def act(
        self, alert_id: str, request: ActionRequest, signed_in: str | None = None
    ) -> tuple[AlertAction, bool]:
        """The action taken, and False when it had been taken before (same action id).
        ``signed_in``: the user the sign-in proxy vouched for, if the console runs behind one."""
        try:
            user = request.acting_user(signed_in)
        except InvalidAction:
            self._refused("invalid")
            raise
        except WrongUser:
            self._refused("wrong_user")
            raise
        action_id = request.action_id or f"act-{uuid.uuid4().hex}"
        earlier = await asyncio.to_thread(self._store.find_action, action_id)
        if earlier is not None:
            if earlier.alert_id != alert_id:
                self._refused("conflict")
                raise ActionConflict(f"action id {action_id} was used for another alert")
            return earlier, False
        card = await asyncio.to_thread(self._store.get, alert_id)
        if card is None:
            self._refused("not_found")
            raise AlertNotFound(alert_id)
        now = self._now()
        try:
            action = AlertAction(
                action_id=action_id, alert_id=alert_id, patient_id=card.patient_id,
                action=request.action, reason=request.reason, comment=request.comment,
                user=user, at=now, snooze_until=request.snooze_until,
            )
        except ValidationError as error:
            self._refused("invalid")
            raise InvalidAction(first_error_message(error)) from error
        try:
            updated = take_action(card, action)
        except ActionRefused:
            self._refused("refused")
            raise
        try:
            await self._publisher.publish(action)
        except Exception:
            self._refused("publish_failed")
            raise
        await asyncio.to_thread(self._store.record_action, updated, action, now)
        self._metrics.actions.labels(action.action).inc()
        return action, True

    def _refused(self, reason: str) -> None:
        self._metrics.actions_refused.labels(reason).inc()


def first_error_message(error: ValidationError) -> str:
    """``field: message`` of the first thing wrong, for the pharmacist or the API client."""
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    where = ".".join(str(part) for part in first["loc"])
    return message if not where or message.startswith(where) else f"{where}: {message}"
