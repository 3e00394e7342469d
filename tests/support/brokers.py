"""The test broker's types, shared by the fixtures of tests/conftest.py and the tests using them."""

from __future__ import annotations

from collections.abc import Callable

from event_kafka.devkafka import LocalKafka, Record, TansuBroker

Broker = LocalKafka | TansuBroker
"""What the ``kafka_broker`` fixture yields (a KRaft Kafka, or Tansu when asked for)."""

Consume = Callable[..., list[Record]]
"""The ``consume`` fixture: ``consume(topic, expect=n, timeout=s) -> records``."""

MakeTopic = Callable[..., str]
"""The ``make_topic`` fixture: a fresh topic's name."""
