"""Client helpers shared by tests, the demo and the benchmarks: create a topic and wait for
its leaders, read a topic back, wait for a condition."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .broker import DevKafkaError


def _quiet_logger() -> object:
    import logging

    log = logging.getLogger("event_kafka.devkafka.librdkafka")
    log.setLevel(logging.CRITICAL)
    return log


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    replication: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create ``name`` and wait until the metadata of every server in ``bootstrap`` shows
    every partition with a leader (each broker answers from its own metadata cache, which
    catches up a moment later than the controller's)."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    def admin_for(servers: str) -> Any:
        conf: dict[str, Any] = {"bootstrap.servers": servers, "logger": _quiet_logger()}
        return AdminClient(conf)

    creator = admin_for(bootstrap)  # kept alive until the result: its handle serves the future
    fut = creator.create_topics(
        [NewTopic(name, partitions, replication, config=config or {})], operation_timeout=timeout
    )[name]
    fut.result(timeout)
    deadline = time.monotonic() + timeout
    for server in bootstrap.split(","):
        admin = admin_for(server)
        while True:
            t = admin.list_topics(name, timeout=5).topics.get(name)
            parts = t.partitions if t and t.error is None else {}
            if len(parts) == partitions and all(p.leader >= 0 for p in parts.values()):
                break
            if time.monotonic() > deadline:
                raise DevKafkaError(f"topic {name} has no leaders on {server} after {timeout}s")
            time.sleep(0.1)


@dataclass(frozen=True)
class Record:
    """A record read back from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def consume_all(
    bootstrap: str,
    topic: str,
    timeout: float = 30.0,
    expect: int | None = None,
    idle: float = 1.0,
) -> list[Record]:
    """Read ``topic`` from offset 0 to the end of every partition (partition-EOF based).

    With ``expect``, keep reading (up to ``timeout``) until that many records arrived, so
    records still in flight are not missed; without it, stop at end of all partitions.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"event-kafka-read-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "logger": _quiet_logger(),
        }
    )
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(md.partitions)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[Record] = []
        eof: set[int] = set()
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = c.consume(10000, 0.2)
            if batch:
                quiet_since = time.monotonic()
            for m in batch:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition() or 0)
                        continue
                    raise DevKafkaError(f"consume error: {err}")
                eof.discard(m.partition() or 0)
                hdrs: Any = m.headers() or []
                out.append(
                    Record(
                        str(m.topic()),
                        int(m.partition() or 0),
                        int(m.offset() or 0),
                        _b(m.key()),
                        _b(m.value()),
                        [(k, _b(v)) for k, v in hdrs],
                    )
                )
            done_eof = len(eof) == len(parts) and time.monotonic() - quiet_since >= idle * 0.2
            if expect is None and done_eof:
                break
            if expect is not None and len(out) >= expect and done_eof:
                break
        return out
    finally:
        c.close()


def _b(v: str | bytes | None) -> bytes | None:
    return v.encode() if isinstance(v, str) else v


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``cond`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()
