"""One settings object for every service, read from ``IMNM_*`` environment variables.

Defaults describe the embedded setup that ``make run`` starts: a local broker on loopback,
SQLite for the console, everything listening on 127.0.0.1.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TopicNames(BaseSettings):
    """Topic names; every message on every topic is keyed by ``patient_id``."""

    model_config = SettingsConfigDict(env_prefix="IMNM_TOPIC_", extra="ignore")

    events: str = "imnm.events.v1"
    alerts: str = "imnm.alerts.v1"
    alert_actions: str = "imnm.alert-actions.v1"
    deadletter: str = "imnm.deadletter.v1"
    raw_hl7v2: str = "imnm.raw.hl7v2.v1"
    raw_fhir: str = "imnm.raw.fhir.v1"

    def all(self) -> list[str]:
        return [
            self.events,
            self.alerts,
            self.alert_actions,
            self.deadletter,
            self.raw_hl7v2,
            self.raw_fhir,
        ]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMNM_", extra="ignore")

    # Empty means "start the embedded local broker"; set it to use an existing cluster.
    kafka_bootstrap: str = ""
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    topics: TopicNames = Field(default_factory=TopicNames)

    database_url: str = "sqlite:///./imnm-console.db"
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=8080, ge=1, le=65535)
    console_group_id: str = "imnm-console"
    console_timezone: str = "UTC"  # the IANA zone pages show times in (the site's)
    # The header in which the hospital's sign-in proxy names the signed-in user (e.g.
    # X-Forwarded-User); empty: no proxy, pharmacists type their name.
    console_user_header: str = ""

    ingest_group_id: str = "imnm-ingest"
    redrive_group_id: str = "imnm-redrive"  # where `imnm redrive` remembers the letters it read
    ingest_metrics_host: str = "127.0.0.1"
    ingest_metrics_port: int = Field(default=9109, ge=1, le=65535)
    # HL7 v2 timestamps often carry no UTC offset: they are read in the site's time zone.
    ingest_hl7_timezone: str = "UTC"

    tracker_app_id: str = "imnm-tracker"
    tracker_metrics_port: int = Field(default=9108, ge=1, le=65535)
    tracker_timer_interval_seconds: float = Field(default=60.0, gt=0)
    tracker_store: str = "memory://"
    tracker_data_dir: str = "./.imnm-data/tracker"

    @field_validator("console_timezone", "ingest_hl7_timezone")
    @classmethod
    def _a_known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
        return name

    rules_config: str = ""
    log_level: str = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
