"""``event-kafka demo``: the README's main job on an embedded default (a local Kafka)."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Producer

from .devkafka import LocalKafka, consume_all, create_topic

PIKE = b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":{"ip":"192.168.2.11"}}'


def run_demo(echo: Callable[[str], None]) -> int:
    """Start Kafka, publish, read back and print; returns the exit status."""
    echo("starting a local Apache Kafka (first run fetches the jars from Maven Central)...")
    with LocalKafka() as kafka:
        echo(f"Kafka is up at {kafka.bootstrap}")
        create_topic(kafka.bootstrap, "events", partitions=1)
        p = Producer({"bootstrap.servers": kafka.bootstrap})
        p.produce("events", PIKE, key=b"demo-call-1", headers=[("event", b"E_PIKE_BLOCKED")])
        left = p.flush(10)
        if left:
            echo(f"{left} message(s) not delivered")
            return 1
        for r in consume_all(kafka.bootstrap, "events", expect=1):
            key = r.key.decode() if r.key else None
            value = r.value.decode() if r.value else None
            echo(
                f"landed in Kafka: topic={r.topic} partition={r.partition} offset={r.offset} "
                f"key={key} value={value}"
            )
    return 0
