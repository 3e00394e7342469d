"""/metrics tells producers apart, and exports librdkafka's own statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from event_kafka import EventKafka
from event_kafka.errors import SocketError
from event_kafka.kafka_socket import parse_broker_id, parse_socket
from event_kafka.producer import ProducerPool, producer_name
from event_kafka.service.metrics import Snapshot, make_registry
from event_kafka.statistics import EventOwner
from tests.service.ops_helpers import get, parse_series, running_service
from tests.support import await_until, wait_until

SECRET = "Sn0wy-0wl-pw-77"

# Same brokers, four producers: two differ by a property, two more only by their password.
SAME_BROKERS = [
    "[a]127.0.0.1:1/t?t.message.timeout.ms=60000",
    "[b]127.0.0.1:1/t?t.message.timeout.ms=60000&g.linger.ms=7",
    f"[c]127.0.0.1:1/t?t.message.timeout.ms=60000&g.sasl.password={SECRET}",
    "[d]127.0.0.1:1/t?t.message.timeout.ms=60000&g.sasl.password=other-pw",
]


def scrape(ek: EventKafka) -> str:
    snap = Snapshot(ek=ek.stats(), broker_topics={b: s.topic for b, s in ek.brokers.items()})
    return generate_latest(make_registry(lambda: snap)).decode()


def test_producers_with_the_same_brokers_have_distinct_series() -> None:
    ek = EventKafka(broker_ids=SAME_BROKERS, flush_timeout=0)
    try:
        for n, bid in enumerate("abcd"):
            for _ in range(n + 1):  # 1, 2, 3, 4 messages stuck (nothing listens on port 1)
                assert ek.kafka_publish(bid, "m") == 1
        text = scrape(ek)
        series = parse_series(text)  # fails on any duplicate
        queues = {
            dict(labels)["producer"]: value
            for (name, labels), value in series.items()
            if name == "event_kafka_producer_queue_length"
        }
        # Every stuck message is visible on its own producer: nothing averaged or hidden.
        assert sorted(queues.values()) == [1, 2, 3, 4]
        assert len(queues) == 4
        # Only the password differs between c and d: same hash, told apart by a suffix.
        base = producer_name(parse_broker_id(SAME_BROKERS[2])[1].producer_key)
        assert {base, f"{base}-2"} <= queues.keys()
        infos = [
            dict(labels)
            for (name, labels), _ in series.items()
            if name == "event_kafka_producer_info"
        ]
        assert len(infos) == 4 and all(i["brokers"] == "127.0.0.1:1" for i in infos)
        assert any("g.linger.ms=7" in i["config"] for i in infos)
        assert any("g.sasl.password=*****" in i["config"] for i in infos)
        assert SECRET not in text and "other-pw" not in text
    finally:
        ek.close(0)


def test_producer_names_are_stable_and_never_depend_on_a_secret() -> None:
    def name(text: str) -> str:
        return producer_name(parse_broker_id(text)[1].producer_key)

    # Property order, topic and broker_id do not matter; the same config gives the same name
    # in another process (a pure function of the masked configuration).
    assert name("[x]h:1/t1?g.linger.ms=5&t.acks=all") == name("[y]h:1/t2?t.acks=all&g.linger.ms=5")
    assert name("[x]h:1/t?g.sasl.password=one") == name("[x]h:1/t?g.sasl.password=two")
    assert name("[x]h:1/t?g.linger.ms=5") != name("[x]h:1/t?g.linger.ms=6")
    assert name("[x]h:1/t") != name("[x]h:2/t")
    assert name("[x]h:1/t").startswith("p") and len(name("[x]h:1/t")) == 9


def test_users_cannot_set_the_stats_callback() -> None:
    with pytest.raises(SocketError, match="stats_cb is set by event-kafka itself"):
        parse_socket("kafka:127.0.0.1:1/t?g.stats_cb=x")


def _rd(series: dict[Any, float], metric: str, **labels: str) -> list[float]:
    return [
        v
        for (name, lbls), v in series.items()
        if name == metric and all(dict(lbls).get(k) == x for k, x in labels.items())
    ]


def test_librdkafka_statistics_are_exported(kafka_broker: Any, topic: str) -> None:
    pool_default = EventKafka(broker_ids=[f"[k]{kafka_broker.bootstrap}/{topic}"], flush_timeout=5)
    # A socket's own g.statistics.interval.ms turns statistics on without the pool default.
    own = EventKafka(
        broker_ids=[f"[k]{kafka_broker.bootstrap}/{topic}?g.statistics.interval.ms=100"],
        flush_timeout=5,
    )
    pool_default.pool.statistics_interval_ms = 100
    try:
        for ek in (pool_default, own):
            assert ek.kafka_publish("k", "m") == 1
            assert ek.flush(30) == 0
            producer = ek.stats()["producers"][0]["name"]

            def after_delivery(ek: EventKafka = ek, producer: str = producer) -> Any:
                # A report made after the delivery: a broker UP and an empty queue.
                series = parse_series(scrape(ek))
                up = any(_rd(series, "event_kafka_rdkafka_broker_up"))
                empty = _rd(series, "event_kafka_rdkafka_messages", producer=producer) == [0]
                return series if up and empty else None

            series = wait_until(after_delivery, 30, "librdkafka statistics after delivery")
            node = kafka_broker.bootstrap.split(",")[0]
            ups = {
                dict(lbls)["broker"]: v
                for (name, lbls), v in series.items()
                if name == "event_kafka_rdkafka_broker_up"
            }
            # librdkafka's broker names: host:port/nodeid (and host:port/bootstrap)
            assert any(b.startswith(node + "/") and v == 1 for b, v in ups.items()), ups
            assert _rd(series, "event_kafka_rdkafka_messages", producer=producer) == [0]
            assert _rd(series, "event_kafka_rdkafka_stats_timestamp_seconds")[0] > 1e9
            assert sum(_rd(series, "event_kafka_rdkafka_broker_connects_total")) >= 1
            rtt = _rd(series, "event_kafka_rdkafka_broker_rtt_seconds", quantile="0.99")
            assert rtt and all(0 <= v < 10 for v in rtt)
            for metric in (
                "outbuf_requests",
                "waitresp_messages",
                "tx_errors_total",
                "request_timeouts_total",
                "disconnects_total",
            ):
                assert _rd(series, f"event_kafka_rdkafka_broker_{metric}", producer=producer)
    finally:
        pool_default.close(5)
        own.close(5)


def test_statistics_off_by_default(kafka_broker: Any, topic: str) -> None:
    pool = ProducerPool(flush_timeout=5)
    lane = pool.lane(parse_socket(f"kafka:{kafka_broker.bootstrap}/{topic}"), owner=EventOwner("x"))
    try:
        assert lane.publish(b"m") == 1
        wait_until(lambda: lane.stats.delivered, 30, "the delivery")
        assert lane.stats.delivered == 1
        assert pool.stats()["producers"][0]["statistics"] is None
    finally:
        pool.close(5)


@pytest.mark.asyncio
async def test_service_scrape_has_unique_series(tmp_path: Path, kafka_broker: Any) -> None:
    """The running service, with Kafka and unreachable producers sharing brokers."""
    ids = ",\n".join(f'"{b}"' for b in SAME_BROKERS)
    config = f"""
broker_ids = [{ids}, "[k]{kafka_broker.bootstrap}/t-ops"]
[kafka]
flush_timeout = 0.5
[mi]
listen = "127.0.0.1:0"
[metrics]
statistics_interval_ms = 100
"""
    async with running_service(tmp_path, config) as svc:
        for bid in "abcdk":
            assert svc.ek.kafka_publish(bid, "m") == 1

        async def stats_in() -> bool:
            _, text = await get(svc, "/metrics")
            return "event_kafka_rdkafka_broker_up{" in text

        await await_until(stats_in, 30, "librdkafka statistics on /metrics")
        status, text = await get(svc, "/metrics")
        assert status == 200
        series = parse_series(text)
        producers = {
            dict(lbls)["producer"]
            for (name, lbls), _ in series.items()
            if name == "event_kafka_producer_down"
        }
        assert len(producers) == 5
        assert SECRET not in text
