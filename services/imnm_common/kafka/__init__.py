"""Kafka plumbing shared by the services: the local broker and topic administration.

Names are imported lazily so that ``python -m imnm_common.kafka.local_broker`` does not
import the module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imnm_common.kafka.errors import (
    BrokerError,
    BrokerStartError,
    JarFetchError,
    JavaMissingError,
    PortInUseError,
    TopicCreationError,
)

if TYPE_CHECKING:
    from imnm_common.kafka.local_broker import LocalKafkaBroker, fetch_jars
    from imnm_common.kafka.topics import PartitionMismatch, TopicsReport, create_topics

__all__ = [
    "BrokerError",
    "BrokerStartError",
    "JarFetchError",
    "JavaMissingError",
    "LocalKafkaBroker",
    "PartitionMismatch",
    "PortInUseError",
    "TopicCreationError",
    "TopicsReport",
    "create_topics",
    "fetch_jars",
]

_LAZY = {
    "LocalKafkaBroker": "imnm_common.kafka.local_broker",
    "fetch_jars": "imnm_common.kafka.local_broker",
    "PartitionMismatch": "imnm_common.kafka.topics",
    "TopicsReport": "imnm_common.kafka.topics",
    "create_topics": "imnm_common.kafka.topics",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
