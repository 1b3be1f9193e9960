"""The console's store: alert cards, the transitions received and the actions taken, in SQL.

SQLite by default (``sqlite:///./imnm-console.db``); any SQLAlchemy URL works, PostgreSQL in a
deployment. Times go in aware and come back in UTC (sqlmodel stores them as UTC).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import case, event, func, or_
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, UniqueConstraint, col, create_engine, select

from imnm_common.contracts.actions import AlertAction
from imnm_common.contracts.alerts import AlertTransition
from imnm_console.domain.worklist import (
    SEVERITY_RANK,
    AlertCard,
    TransitionOutcome,
    WorkState,
    record_transition,
)


class ConsoleAlert(SQLModel, table=True):
    __tablename__ = "console_alerts"

    alert_id: str = Field(primary_key=True, max_length=64)
    patient_id: str = Field(index=True, max_length=64)
    rule: str = Field(index=True, max_length=64)
    severity: str = Field(max_length=16)
    status: str = Field(index=True, max_length=16)
    raised_at: datetime
    resolved_at: datetime | None = None
    summary: str
    detail: str
    resolution: str = ""
    evidence: str = "[]"  # JSON arrays: read whole, never queried into
    suggestions: str = "[]"
    references: str = "[]"
    last_action: str | None = Field(default=None, max_length=16)
    last_action_by: str | None = Field(default=None, max_length=128)
    snooze_until: datetime | None = None
    seen: str = ""  # statuses received, comma-separated
    updated_at: datetime


class ConsoleTransition(SQLModel, table=True):
    __tablename__ = "console_alert_transitions"
    __table_args__ = (UniqueConstraint("alert_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    alert_id: str = Field(index=True, max_length=64)
    status: str = Field(max_length=16)
    received_at: datetime
    topic: str
    partition: int
    offset: int


class ConsoleAction(SQLModel, table=True):
    __tablename__ = "console_alert_actions"

    action_id: str = Field(primary_key=True, max_length=128)
    alert_id: str = Field(index=True, max_length=64)
    patient_id: str = Field(max_length=64)
    action: str = Field(max_length=16)
    reason: str = Field(max_length=32)
    comment: str = ""
    user: str = Field(max_length=128)
    at: datetime
    snooze_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """Where a transition came from, kept with it for "which message said this?"."""

    topic: str
    partition: int
    offset: int


def _card(row: ConsoleAlert) -> AlertCard:
    return AlertCard(
        alert_id=row.alert_id, patient_id=row.patient_id, rule=row.rule,
        severity=row.severity, status=row.status, raised_at=row.raised_at, summary=row.summary,
        detail=row.detail, evidence=tuple(orjson.loads(row.evidence)),
        suggestions=tuple(orjson.loads(row.suggestions)),
        references=tuple(orjson.loads(row.references)),
        resolved_at=row.resolved_at, resolution=row.resolution,
        last_action=row.last_action, last_action_by=row.last_action_by,
        snooze_until=row.snooze_until,
        seen=frozenset(s for s in row.seen.split(",") if s),
    )


def _values(card: AlertCard, now: datetime) -> dict[str, Any]:
    return {
        "patient_id": card.patient_id, "rule": card.rule, "severity": card.severity,
        "status": card.status, "raised_at": card.raised_at, "resolved_at": card.resolved_at,
        "summary": card.summary, "detail": card.detail, "resolution": card.resolution,
        "evidence": orjson.dumps(list(card.evidence)).decode(),
        "suggestions": orjson.dumps(list(card.suggestions)).decode(),
        "references": orjson.dumps(list(card.references)).decode(),
        "last_action": card.last_action, "last_action_by": card.last_action_by,
        "snooze_until": card.snooze_until, "seen": ",".join(sorted(card.seen)),
        "updated_at": now,
    }


def _fill(row: ConsoleAlert, card: AlertCard, now: datetime) -> None:
    for name, value in _values(card, now).items():
        setattr(row, name, value)


def _new_row(card: AlertCard, now: datetime) -> ConsoleAlert:
    return ConsoleAlert(alert_id=card.alert_id, **_values(card, now))


@dataclass(frozen=True, slots=True)
class WorklistPage:
    cards: list[AlertCard]
    total: int


class AlertStore:
    def __init__(self, url: str) -> None:
        connect_args: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # Pages and the feed use the store from worker threads (asyncio.to_thread).
            connect_args["check_same_thread"] = False
        self.engine: Engine = create_engine(url, connect_args=connect_args)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        SQLModel.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    # ---------------------------------------------------------------- from the tracker
    def apply_transitions(
        self, items: Iterable[tuple[AlertTransition, Received]], now: datetime
    ) -> list[TransitionOutcome]:
        """Record a batch in one transaction: all of it, or none of it (then redelivered)."""
        batch = list(items)
        outcomes: list[TransitionOutcome] = []
        with self._session() as session:
            # One query for the batch's known alerts, not one per transition.
            wanted = {transition.alert_id for transition, _ in batch}
            rows = {row.alert_id: row for row in session.exec(
                select(ConsoleAlert).where(col(ConsoleAlert.alert_id).in_(wanted))
            ).all()}
            for transition, received in batch:
                row = rows.get(transition.alert_id)
                card, outcome = record_transition(
                    None if row is None else _card(row), transition
                )
                outcomes.append(outcome)
                if outcome is TransitionOutcome.DUPLICATE:
                    continue
                if row is None:
                    row = rows[transition.alert_id] = _new_row(card, now)
                    session.add(row)
                else:
                    _fill(row, card, now)
                session.add(ConsoleTransition(
                    alert_id=transition.alert_id, status=transition.status,
                    received_at=now, topic=received.topic,
                    partition=received.partition, offset=received.offset,
                ))
            session.commit()
        return outcomes

    # ---------------------------------------------------------------- from the pharmacy
    def get(self, alert_id: str) -> AlertCard | None:
        with self._session() as session:
            row = session.get(ConsoleAlert, alert_id)
            return None if row is None else _card(row)

    def find_action(self, action_id: str) -> AlertAction | None:
        with self._session() as session:
            row = session.get(ConsoleAction, action_id)
            return None if row is None else _action(row)

    def record_action(self, card: AlertCard, action: AlertAction, now: datetime) -> None:
        with self._session() as session:
            row = session.get(ConsoleAlert, card.alert_id)
            if row is None:
                raise KeyError(card.alert_id)
            _fill(row, card, now)
            session.add(ConsoleAction(
                action_id=action.action_id, alert_id=action.alert_id,
                patient_id=action.patient_id, action=action.action, reason=action.reason,
                comment=action.comment, user=action.user, at=action.at,
                snooze_until=action.snooze_until,
            ))
            session.commit()

    def actions_of(self, alert_id: str) -> list[AlertAction]:
        with self._session() as session:
            rows = session.exec(
                select(ConsoleAction).where(ConsoleAction.alert_id == alert_id)
                .order_by(col(ConsoleAction.at))
            ).all()
            return [_action(row) for row in rows]

    def transitions_of(self, alert_id: str) -> list[ConsoleTransition]:
        with self._session() as session:
            return list(session.exec(
                select(ConsoleTransition).where(ConsoleTransition.alert_id == alert_id)
                .order_by(col(ConsoleTransition.id))
            ).all())

    # ---------------------------------------------------------------- the worklist
    def worklist(
        self,
        state: WorkState | None,
        now: datetime,
        *,
        rule: str | None = None,
        severity: str | None = None,
        patient_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> WorklistPage:
        """One page of cards in ``state`` (None: every card), critical and oldest first."""
        conditions = [] if state is None else [_in_state(state, now)]
        if rule:
            conditions.append(col(ConsoleAlert.rule) == rule)
        if severity:
            conditions.append(col(ConsoleAlert.severity) == severity)
        if patient_id:
            conditions.append(col(ConsoleAlert.patient_id) == patient_id)
        rank = case(SEVERITY_RANK, value=col(ConsoleAlert.severity), else_=len(SEVERITY_RANK))
        with self._session() as session:
            total = session.exec(
                select(func.count()).select_from(ConsoleAlert).where(*conditions)
            ).one()
            rows = session.exec(
                select(ConsoleAlert).where(*conditions)
                .order_by(rank, col(ConsoleAlert.raised_at), col(ConsoleAlert.alert_id))
                .limit(limit).offset(offset)
            ).all()
            return WorklistPage([_card(row) for row in rows], int(total))

    def counts(self, now: datetime) -> dict[WorkState, int]:
        """Alerts per work state, in one query (every worklist page and metrics scrape asks)."""
        states = list(WorkState)
        with self._session() as session:
            # sqlmodel's select() is typed for up to four columns: this one has five
            row = cast("tuple[int, ...]", session.exec(select(
                *(func.count().filter(_in_state(state, now)) for state in states)
            ).select_from(ConsoleAlert)).one())
            return {state: int(count) for state, count in zip(states, row, strict=True)}


def _in_state(state: WorkState, now: datetime) -> Any:
    """SQL for ``AlertCard.work_state(now) == state`` (the test suite checks they agree)."""
    status, last = col(ConsoleAlert.status), col(ConsoleAlert.last_action)
    snooze_until = col(ConsoleAlert.snooze_until)
    if state is WorkState.RESOLVED:
        return status == "resolved"
    opened = status == "open"
    if state is WorkState.NEEDS_ACTION:
        expired = or_(snooze_until.is_(None), snooze_until <= now)
        return opened & or_(last.is_(None), (last == "snooze") & expired)
    if state is WorkState.SNOOZED:
        return opened & (last == "snooze") & (snooze_until > now)
    action = "acknowledge" if state is WorkState.ACKNOWLEDGED else "override"
    return opened & (last == action)


def _action(row: ConsoleAction) -> AlertAction:
    return AlertAction.model_validate({
        "action_id": row.action_id, "alert_id": row.alert_id, "patient_id": row.patient_id,
        "action": row.action, "reason": row.reason, "comment": row.comment, "user": row.user,
        "at": row.at, "snooze_until": row.snooze_until,
    })


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # WAL: pages are served while the consumer writes; busy_timeout: writers wait, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
