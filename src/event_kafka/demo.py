"""``event-kafka demo``: the README's main job on an embedded default (a local Kafka)."""

from __future__ import annotations

from collections.abc import Callable

from .connector import EventKafka
from .devkafka import LocalKafka, consume_all, create_topic
from .report import Report


def run_demo(echo: Callable[[str], None]) -> int:
    """Start Kafka, publish through event-kafka, read back and print; returns the exit status."""
    echo("starting a local Apache Kafka (the first run fetches the jars from Maven Central)...")
    with LocalKafka() as kafka:
        echo(f"Kafka is up at {kafka.bootstrap}")
        create_topic(kafka.bootstrap, "cdrs", partitions=1)
        with EventKafka([f"[k1]{kafka.bootstrap}/cdrs?g.linger.ms=5&t.acks=all"]) as ek:

            @ek.report_route("kafka_report")
            def kafka_report(r: Report) -> None:
                echo(
                    f"report route: kafka_status={r.kafka_status} kafka_id={r.kafka_id} "
                    f"kafka_key={r.kafka_key} partition={r.partition} offset={r.offset}"
                )

            for i, callid in enumerate(["a84b4c76e66710@pc33.example.com", "3848276298220188511"]):
                msg = f'{{"callid":"{callid}","duration":{60 + i}}}'
                rc = ek.kafka_publish("k1", msg, key=callid, report_route="kafka_report")
                echo(f'kafka_publish("k1", {msg}, {callid!r}, "kafka_report") -> {rc}')
        for r in consume_all(kafka.bootstrap, "cdrs", expect=2):
            key = r.key.decode() if r.key else None
            value = r.value.decode() if r.value else None
            echo(
                f"landed in Kafka: topic={r.topic} partition={r.partition} offset={r.offset} "
                f"key={key} value={value}"
            )
    return 0
