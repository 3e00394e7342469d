"""librdkafka configuration properties: catalogue, validation and secret masking.

The catalogue is read from the librdkafka that confluent-kafka actually loads (through ctypes
and ``rd_kafka_conf_properties_show``), so it always matches the library in use: no property
table is copied into this package. Values are validated by librdkafka itself
(``rd_kafka_conf_set`` / ``rd_kafka_topic_conf_set`` on a scratch configuration).

If the library cannot be reached through ctypes (another platform, a non-wheel build), a slower
fallback validates by letting ``confluent_kafka.Producer`` parse a configuration that is
guaranteed to fail on a second, known-bad sentinel property, so no client is ever created. The
fallback cannot tell consumer-only properties or aliases apart; everything else works.

Example::

    >>> check_property("topic", "acks", "all") is None
    True
    >>> check_property("global", "acks", "all")
    'acks is a topic-level property: write t.acks'
    >>> mask_properties({"sasl.username": "u", "sasl.password": "p4ss"})
    {'sasl.username': 'u', 'sasl.password': '*****'}
"""

from __future__ import annotations

from .librdkafka import (
    Catalogue,
    PropertyInfo,
    Scope,
    catalogue,
    parse_catalogue,
    property_info,
    validation_backend,
)
from .secrets import (
    MASK,
    PropertyMap,
    SupportsSecrets,
    is_sensitive,
    mask_properties,
    redact,
    secret_values,
)
from .trust import (
    FETCHES_URL,
    FROM_CODE,
    LOADS_CODE,
    READS_FILE,
    RUNS_COMMAND,
    TRUSTED,
    UNCLASSIFIED,
    WRITES_FILE,
    PropertyPolicy,
    classification,
    property_risk,
    untrusted_policy,
)
from .validation import check_property

__all__ = [
    "FETCHES_URL",
    "FROM_CODE",
    "LOADS_CODE",
    "MASK",
    "READS_FILE",
    "RUNS_COMMAND",
    "TRUSTED",
    "UNCLASSIFIED",
    "WRITES_FILE",
    "Catalogue",
    "PropertyInfo",
    "PropertyMap",
    "PropertyPolicy",
    "Scope",
    "SupportsSecrets",
    "catalogue",
    "check_property",
    "classification",
    "is_sensitive",
    "mask_properties",
    "parse_catalogue",
    "property_info",
    "property_risk",
    "redact",
    "secret_values",
    "untrusted_policy",
    "validation_backend",
]
