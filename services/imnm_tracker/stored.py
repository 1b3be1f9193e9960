"""How a patient's state is stored in the faust table, and so in its changelog topic.

A value is one header line followed by :meth:`PatientState.to_bytes`::

    imnm-state/1 <partition> <next due, epoch seconds, or ->
    {"patient_id": ..., ...}

Why a header: after a rebalance each worker rebuilds its index of due times from the table, and
must keep only the patients of the partitions it now owns (the in-memory store also holds
standby and previously owned partitions). Reading partition and due time from one short line
costs far less than decoding every state, and does not depend on the store's internals.
"""

from __future__ import annotations

from dataclasses import dataclass

from imnm_common.domain.state import PatientState

MAGIC = b"imnm-state/1"


class StoredValueError(ValueError):
    """A table value that is not in this format (corrupt, or written by something else)."""


@dataclass(frozen=True, slots=True)
class StoredHeader:
    partition: int
    due: float | None


def encode(state: PatientState, partition: int, due: float | None) -> bytes:
    due_text = b"-" if due is None else repr(float(due)).encode()
    return b"%s %d %s\n%s" % (MAGIC, partition, due_text, state.to_bytes())


def peek(raw: bytes) -> StoredHeader:
    """The header only, without decoding the state."""
    head, newline, _ = raw.partition(b"\n")
    parts = head.split(b" ")
    if not newline or len(parts) != 3 or parts[0] != MAGIC:
        raise StoredValueError("not an imnm-state/1 table value")
    try:
        partition = int(parts[1])
        due = None if parts[2] == b"-" else float(parts[2])
    except ValueError:
        raise StoredValueError("bad imnm-state/1 header") from None
    return StoredHeader(partition, due)


def decode(raw: bytes) -> PatientState:
    peek(raw)  # validates the header
    return PatientState.from_bytes(raw.partition(b"\n")[2])
