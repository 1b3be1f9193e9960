"""Everything one tracker worker is configured with, resolved from settings and CLI overrides.

:class:`~imnm_common.settings.Settings` (``IMNM_*``) holds what the whole suite shares; the
tracker's own tuning knobs are ``IMNM_TRACKER_*`` variables read by :class:`TrackerTuning`,
so ``imnm up`` (or a container) can set them without command-line flags.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from imnm_common.domain.config import DEFAULT_RULES_CONFIG, RulesConfig
from imnm_common.service_layer.rules_config import RulesConfigError, load_rules_config
from imnm_common.settings import Settings, TopicNames
from imnm_tracker.clock import Clock, make_clock
from imnm_tracker.errors import TrackerConfigError

ProcessingGuarantee = Literal["at_least_once", "exactly_once"]
CHANGELOG_SEGMENT_SECONDS = 600.0


class TrackerTuning(BaseSettings):
    """``IMNM_TRACKER_*`` knobs that only the tracker reads."""

    model_config = SettingsConfigDict(env_prefix="IMNM_TRACKER_", extra="ignore")

    batch_size: int = Field(default=500, ge=1)
    batch_window_seconds: float = Field(default=0.02, gt=0)  # bounds the wait of a lone event
    processing_guarantee: ProcessingGuarantee = "at_least_once"
    session_timeout_seconds: float | None = Field(default=None, gt=0)
    commit_interval_seconds: float | None = Field(default=None, gt=0)
    standby_replicas: int = Field(default=1, ge=0)
    # decoded patient states kept between batches (state_cache.py); 0 turns the cache off
    cached_patients: int = Field(default=20_000, ge=0)
    # the state changelog's segment.ms (topics_setup.py): bounds what a restart reads again
    changelog_segment_seconds: float = Field(default=CHANGELOG_SEGMENT_SECONDS, ge=1)
    metrics_host: str = "127.0.0.1"
    clock_file: str | None = None
    fixed_now: str | None = None


@dataclass
class TrackerOptions:
    app_id: str
    bootstrap: str
    topics: TopicNames
    partitions: int
    replication_factor: int
    store: str
    data_dir: Path
    timer_interval: float
    batch_size: int
    batch_window: float
    processing_guarantee: ProcessingGuarantee
    session_timeout: float | None
    commit_interval: float | None
    standby_replicas: int
    cached_patients: int
    metrics_host: str
    metrics_port: int  # 0: no metrics endpoint
    clock: Clock
    rules: RulesConfig = DEFAULT_RULES_CONFIG
    log_level: str = "INFO"
    changelog_segment_seconds: float = CHANGELOG_SEGMENT_SECONDS

    @property
    def broker_url(self) -> str:
        return ",".join(f"kafka://{host}" for host in self.bootstrap.split(","))


def resolve(
    settings: Settings,
    tuning: TrackerTuning | None = None,
    *,
    app_id: str | None = None,
    bootstrap: str | None = None,
    timer_interval: float | None = None,
    store: str | None = None,
    data_dir: str | None = None,
    metrics_port: int | None = None,
    clock_file: str | None = None,
    fixed_now: str | None = None,
    processing_guarantee: ProcessingGuarantee | None = None,
) -> TrackerOptions:
    """Settings, then ``IMNM_TRACKER_*`` tuning, then explicit overrides (the CLI's flags)."""
    tuning = tuning if tuning is not None else TrackerTuning()
    broker = (bootstrap or settings.kafka_bootstrap).strip()
    if not broker:
        raise TrackerConfigError(
            "no Kafka broker: set IMNM_KAFKA_BOOTSTRAP or pass --bootstrap "
            "(`imnm up` starts a local broker and the tracker together)"
        )
    store_url = store or settings.tracker_store
    check_store(store_url)
    interval = timer_interval if timer_interval is not None else (
        settings.tracker_timer_interval_seconds
    )
    if interval <= 0:
        raise TrackerConfigError("--timer-interval must be > 0 seconds")
    return TrackerOptions(
        app_id=app_id or settings.tracker_app_id,
        bootstrap=broker,
        topics=settings.topics,
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
        store=store_url,
        data_dir=Path(data_dir or settings.tracker_data_dir),
        timer_interval=interval,
        batch_size=tuning.batch_size,
        batch_window=tuning.batch_window_seconds,
        processing_guarantee=processing_guarantee or tuning.processing_guarantee,
        session_timeout=tuning.session_timeout_seconds,
        commit_interval=tuning.commit_interval_seconds,
        standby_replicas=tuning.standby_replicas,
        cached_patients=tuning.cached_patients,
        metrics_host=tuning.metrics_host,
        metrics_port=settings.tracker_metrics_port if metrics_port is None else metrics_port,
        clock=make_clock(clock_file or tuning.clock_file, fixed_now or tuning.fixed_now),
        rules=load_rules(settings.rules_config),
        log_level=settings.log_level,
        changelog_segment_seconds=tuning.changelog_segment_seconds,
    )


def check_store(url: str) -> None:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "memory":
        return
    if scheme == "rocksdb":
        if importlib.util.find_spec("rocksdict") is None:
            raise TrackerConfigError(
                f"store {url!r} needs rocksdict: pip install -e '.[rocksdb]'"
            )
        return
    raise TrackerConfigError(f"unknown store {url!r}: use memory:// or rocksdb://")


def load_rules(path: str) -> RulesConfig:
    try:
        return load_rules_config(path)
    except RulesConfigError as error:
        raise TrackerConfigError(f"rules config: {error}") from None
