"""Exceptions raised by the local Kafka broker helpers (:mod:`imnm_common.kafka`)."""

from __future__ import annotations

from pathlib import Path


class BrokerError(RuntimeError):
    """Base class for everything that goes wrong around the local broker."""


class JavaMissingError(BrokerError):
    """No usable ``java`` executable (Kafka 4.x needs Java 17 or newer)."""


class JarFetchError(BrokerError):
    """The broker jars are missing and could not be fetched with Maven."""


class BrokerStartError(BrokerError):
    """The broker process did not come up; the message always says why.

    ``reason`` is a one-line diagnosis (port taken, process exited with code N, timed out
    ...), ``log_tail`` the last lines of the broker log, ``exit_code`` the process exit
    code if it exited, ``log_path`` where the full log is (kept on failure).
    """

    def __init__(
        self,
        reason: str,
        *,
        log_tail: str = "",
        exit_code: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.reason = reason
        self.log_tail = log_tail
        self.exit_code = exit_code
        self.log_path = log_path
        parts = [f"local Kafka broker failed to start: {reason}"]
        if log_path is not None:
            parts.append(f"broker log: {log_path}")
        if log_tail.strip():
            parts.append("last lines of the broker log:\n" + log_tail.rstrip())
        else:
            parts.append("(the broker log is empty)")
        super().__init__("\n".join(parts))


class PortInUseError(BrokerStartError):
    """A port the broker needs (broker or controller listener) is already taken."""


class TopicCreationError(BrokerError):
    """The broker refused to create one or more topics (other than 'already exists')."""
