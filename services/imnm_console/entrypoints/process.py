"""The console as a process: the store, the Kafka clients and the HTTP server, started and
stopped together. If the alert feed fails the process exits non-zero rather than serve a
worklist that silently stopped filling (``imnm up`` and any supervisor see it die)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI

from imnm_common.settings import Settings
from imnm_console.adapters.kafka_feed import ActionPublisher, AlertFeed
from imnm_console.adapters.store import AlertStore
from imnm_console.entrypoints.http import create_app
from imnm_console.metrics import ConsoleMetrics
from imnm_console.service_layer.actions import ActionService

log = logging.getLogger("imnm.console")


def utc_now() -> datetime:
    return datetime.now(UTC)


class FeedFailed(RuntimeError):
    pass


async def serve(settings: Settings, bootstrap: str) -> None:
    store = AlertStore(settings.database_url)
    metrics = ConsoleMetrics()
    metrics.watch_worklist(lambda: store.counts(utc_now()))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True)
    consumer = AIOKafkaConsumer(
        settings.topics.alerts, bootstrap_servers=bootstrap, group_id=settings.console_group_id,
        enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
    )
    feed = AlertFeed(consumer, producer, store, metrics, settings.topics.deadletter, utc_now)
    status = {"feed": "starting"}
    failure: list[BaseException] = []
    server: uvicorn.Server | None = None

    async def run_feed() -> None:
        try:
            await consumer.start()
            status["feed"] = "running"
            await feed.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            status["feed"] = f"failed: {type(error).__name__}"
            log.exception("alert feed failed; stopping the console")
            failure.append(error)
            if server is not None:
                server.should_exit = True

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await producer.start()
        task = asyncio.create_task(run_feed())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()
            await producer.stop()
            store.close()

    service = ActionService(store, ActionPublisher(producer, settings.topics.alert_actions),
                            metrics, utc_now)
    app = create_app(store, service, metrics, utc_now, lambda: status["feed"],
                     display_zone=ZoneInfo(settings.console_timezone),
                     user_header=settings.console_user_header or None, lifespan=lifespan)
    if not settings.console_user_header:
        log.warning("no sign-in proxy configured (IMNM_CONSOLE_USER_HEADER): actions are "
                    "recorded under the name typed; keep the console on a closed network")
    # No access log: the worklist's patient filter is a query parameter (PHI stays out of logs).
    config = uvicorn.Config(app, host=settings.console_host, port=settings.console_port,
                            access_log=False, log_level=settings.log_level.lower(),
                            lifespan="on")
    server = uvicorn.Server(config)
    await server.serve()
    if failure:
        raise FeedFailed(f"alert feed failed: {failure[0]!r}")
