"""The test broker's types, shared by the fixtures of tests/conftest.py and the tests using them."""

from __future__ import annotations

from collections.abc import Callable

from event_kafka.devkafka import LocalKafka, Record, TansuBroker, free_port

Broker = LocalKafka | TansuBroker
"""What the ``kafka_broker`` fixture yields (a KRaft Kafka, or Tansu when asked for)."""

Consume = Callable[..., list[Record]]
"""The ``consume`` fixture: ``consume(topic, expect=n, timeout=s) -> records``."""

MakeTopic = Callable[..., str]
"""The ``make_topic`` fixture: a fresh topic's name."""


def dead_broker() -> str:
    """An address where nothing listens (a broker that is not there)."""
    return f"127.0.0.1:{free_port()}"
