"""Tell faust which source partition a table access belongs to.

faust finds the changelog partition of a table write (and, with RocksDB, the database of a
read) through the "current event" of the stream being iterated. The tracker reads and writes
states outside that iteration: after a whole batch, and from the timer. So it sets the current
event itself, to a stand-in message of the patient's source partition. Kept in this one module
because it uses faust's private context variable.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from faust.events import Event
from faust.streams import _current_event
from faust.types import AppT
from faust.types.tuples import Message


@contextmanager
def partition_context(app: AppT, topic: str, partition: int) -> Iterator[None]:
    message = Message(topic, partition, -1, time.time(), 0, None, None, None, None)
    event = Event(app, None, None, None, message)
    token = _current_event.set(weakref.ref(event))  # faust holds a weak reference only
    try:
        yield
    finally:
        _current_event.reset(token)
        del event
