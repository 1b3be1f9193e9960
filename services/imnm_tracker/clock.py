"""The tracker's notion of "now": injectable, because time-based rules fire on it.

Production uses the wall clock. Tests and demos drive a worker's clock from outside: a
:class:`FileClock` re-reads a file (epoch seconds or an RFC 3339 time) on every call, so a test
can move the clock of a worker running in another process by rewriting one file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from imnm_tracker.errors import TrackerConfigError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""A callable returning the current time as POSIX seconds (UTC)."""


def wall_clock() -> float:
    return time.time()


def parse_instant(text: str) -> float:
    """Epoch seconds (``"1735689600"``) or RFC 3339 with an offset (``"2025-01-01T00:00:00Z"``)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not epoch seconds or an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"the time needs a UTC offset: {text!r}")
    return moment.timestamp()


class FixedClock:
    """Always the same instant (``--fixed-now``): reproducible runs."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FileClock:
    """The instant written in a file, re-read on every call (``--clock-file``).

    A file that cannot be read or parsed later on (a writer caught mid-write) keeps the last
    good value, so the clock never jumps back to something arbitrary.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._last = self._read()
        except (OSError, ValueError) as error:
            raise TrackerConfigError(f"--clock-file {self.path}: {error}") from None
        self._warned = False

    def _read(self) -> float:
        return parse_instant(self.path.read_text(encoding="utf-8"))

    def __call__(self) -> float:
        try:
            self._last = self._read()
            self._warned = False
        except (OSError, ValueError) as error:
            if not self._warned:  # once per bad spell, not on every tick
                log.warning("clock file %s unreadable (%s); keeping %.3f", self.path, error,
                            self._last)
                self._warned = True
        return self._last


def make_clock(clock_file: str | None = None, fixed_now: str | None = None) -> Clock:
    """The clock the options ask for: a file, a fixed instant, or the wall clock."""
    if clock_file and fixed_now:
        raise TrackerConfigError("--clock-file and --fixed-now are mutually exclusive")
    if clock_file:
        return FileClock(clock_file)
    if fixed_now:
        try:
            return FixedClock(parse_instant(fixed_now))
        except ValueError as error:
            raise TrackerConfigError(f"--fixed-now: {error}") from None
    return wall_clock
