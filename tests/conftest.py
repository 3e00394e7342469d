"""Shared fixtures: one real broker per test session, a fresh topic per test, a reader."""

from __future__ import annotations

import gc
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest

from event_kafka import connector, forksafe
from event_kafka.devkafka import (
    LocalKafka,
    Record,
    TansuBroker,
    consume_all,
    create_topic,
    start_broker,
)
from event_kafka.producer import ProducerPool


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[LocalKafka | TansuBroker]:
    """The session's broker: Apache Kafka (default) or Tansu with EVENT_KAFKA_TEST_BROKER=tansu."""
    broker = start_broker()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def make_topic(kafka_broker: LocalKafka | TansuBroker) -> Callable[..., str]:
    """Factory: ``make_topic(partitions=1)`` creates a uniquely named topic and returns its name."""

    def make(partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"t-{uuid.uuid4().hex[:12]}"
        create_topic(kafka_broker.bootstrap, name, partitions, config=config)
        return name

    return make


@pytest.fixture
def topic(make_topic: Callable[..., str]) -> str:
    """A fresh single-partition topic."""
    return make_topic(1)


@pytest.fixture
def consume(kafka_broker: LocalKafka | TansuBroker) -> Callable[..., list[Record]]:
    """``consume(topic, expect=N)``: records of ``topic`` from offset 0 to the end."""

    def read(topic: str, expect: int | None = None, timeout: float = 30.0) -> list[Record]:
        return consume_all(kafka_broker.bootstrap, topic, timeout=timeout, expect=expect)

    return read


def _pools() -> set[ProducerPool]:
    return {o for o in list(forksafe._objects) if isinstance(o, ProducerPool)}


def _close_new(instances: set[object], pools: set[ProducerPool]) -> bool:
    """Close EventKafka instances and pools made since the snapshot; whether there were any."""
    eks = [ek for ek in list(connector._instances) if ek not in instances]
    for ek in eks:
        ek.close(0)  # its Event Interface's threads too
    new = _pools() - pools  # also pools whose EventKafka is gone (the poller holds them)
    for pool in new:
        pool.close(0)  # a no-op if closed
        # A closed producer keeps its librdkafka handle, whose threads go on reconnecting to
        # a dead broker (getaddrinfo, OpenSSL RAND for the backoff jitter) while anything,
        # e.g. a failed test's traceback, holds the pool: drop the handles themselves.
        for sp in [*pool._producers.values(), *pool._releasing]:
            sp._producer = sp._quiet = None
    return bool(eks or new)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening: connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.fixture(autouse=True)
def _close_leftover_producers() -> Iterator[None]:
    """Close the producers a test made (or left open: an EventKafka never closed); free them now.

    Left open, a producer whose broker is gone reconnects for the rest of the session, each
    attempt in getaddrinfo; a later test forking at that instant leaves glibc's resolver lock
    held in the child, whose own producer then never connects (docs/guarantees.md, "Fork")."""
    # Module-scoped fixtures' instances are older than this snapshot: left alone.
    instances: set[object] = set(connector._instances)
    pools = _pools()
    yield
    if _close_new(instances, pools):
        # A closed producer's librdkafka threads live (and reconnect) until it is freed, and
        # pools sit in reference cycles: free them here, not during some later fork.
        gc.collect()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Anything that asks for the broker is an integration test, marked for -m selection.
    for item in items:
        if "kafka_broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
