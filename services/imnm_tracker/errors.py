"""Exceptions of the tracker service."""

from __future__ import annotations


class TrackerError(RuntimeError):
    """Base class: something prevents the tracker from running as configured."""


class TrackerConfigError(TrackerError):
    """Bad or inconsistent options (no broker, unknown store, unreadable clock file ...)."""


class TopicLayoutError(TrackerError):
    """The topics cannot be used as they are (the state changelog is not co-partitioned)."""


class StateRebuildError(TrackerError):
    """A patient's state could not be rebuilt after a failed step: the batch cannot be trusted
    and must fail as a whole (it is then not acknowledged and is processed again)."""
