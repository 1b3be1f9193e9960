"""How a patient's state is stored in the faust table, and so in its changelog topic.

A value is one header line followed by :meth:`PatientState.to_bytes`, LZ4-compressed::

    imnm-state/3 <partition> <next due, epoch seconds, or -> <rules fingerprint, or ->
    <LZ4 block (with its uncompressed size) of the positional JSON state>

Why a header: after a rebalance each worker rebuilds its index of due times from the table, and
must keep only the patients of the partitions it now owns (the in-memory store also holds
standby and previously owned partitions). Reading partition and due time from one short line
costs far less than decoding every state, and does not depend on the store's internals. The
rules fingerprint (``engine.rules_fingerprint``) says which thresholds the state was judged
under, so a worker started with another rules configuration finds, from the headers alone, the
patients to judge again.

Why LZ4: the state is mostly repeated ids, statuses and dose texts, so it compresses about 2.6x
(`make bench`, 5,000 patients after a year: 4.1 KB -> 1.55 KB mean, 7.0 KB -> 2.5 KB largest),
which is what the changelog topic, RocksDB and recovery read back. Encoding is on the tracker's
hot path: LZ4 adds ~7 us to the ~40 us JSON encoding; zlib and zstd compress a little further
for 2-7x that (one-off measurements, docs/performance.md).

``imnm-state/2`` values (no fingerprint) and ``imnm-state/1`` values (uncompressed, written
before LZ4) are still read, so a changelog written by an earlier version recovers; each is
rewritten as /3 the next time its patient changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import lz4.block

from imnm_common.domain.state import PatientState

MAGIC = b"imnm-state/3"
UNFINGERPRINTED_MAGIC = b"imnm-state/2"
PLAIN_MAGIC = b"imnm-state/1"
_TOKENS = {MAGIC: 4, UNFINGERPRINTED_MAGIC: 3, PLAIN_MAGIC: 3}  # fields of the header line


class StoredValueError(ValueError):
    """A table value that is not in this format (corrupt, or written by something else)."""


@dataclass(frozen=True, slots=True)
class StoredHeader:
    partition: int
    due: float | None
    rules: str | None = None  # the fingerprint the state was judged under; None: not known


def encode(state: PatientState, partition: int, due: float | None) -> bytes:
    due_text = b"-" if due is None else repr(float(due)).encode()
    rules = (state.judged_under or "-").encode()
    body = lz4.block.compress(state.to_bytes())
    return b"%s %d %s %s\n%s" % (MAGIC, partition, due_text, rules, body)


def _split(raw: bytes) -> tuple[bytes, StoredHeader, bytes]:
    head, newline, body = raw.partition(b"\n")
    parts = head.split(b" ")
    if not newline or _TOKENS.get(parts[0]) != len(parts):
        raise StoredValueError("not an imnm-state/1, /2 or /3 table value")
    try:
        partition = int(parts[1])
        due = None if parts[2] == b"-" else float(parts[2])
        rules = None if len(parts) < 4 or parts[3] == b"-" else parts[3].decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise StoredValueError("bad imnm-state header") from None
    return parts[0], StoredHeader(partition, due, rules), body


def peek(raw: bytes) -> StoredHeader:
    """The header only, without decoding the state."""
    return _split(raw)[1]


def decode(raw: bytes) -> PatientState:
    magic, _, body = _split(raw)
    if magic != PLAIN_MAGIC:
        try:
            body = lz4.block.decompress(body)
        except lz4.block.LZ4BlockError as error:
            raise StoredValueError(
                f"corrupt {magic.decode()} body: {error}") from None
    return PatientState.from_bytes(body)
