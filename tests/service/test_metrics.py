"""Metrics: the collector and the OpenSIPS statistics groups, from one snapshot."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from event_kafka import EventKafka
from event_kafka.event_interface import EventStats
from event_kafka.service.metrics import Snapshot, make_registry, statistics_groups
from event_kafka.statistics import BrokerOwner, EventOwner, LaneCounters, LaneOwner, LaneStats


def lane(owner: LaneOwner, topic: str, **counts: int) -> LaneStats:
    return LaneStats(owner, topic, "h:1", LaneCounters(**counts))


SNAP = Snapshot(
    ek={
        "lanes": [
            lane(BrokerOwner("k1"), "t1", accepted=5, delivered=3, failed=1),
            lane(
                BrokerOwner("k1"), "t1", accepted=2, delivered=2
            ),  # same broker_id, another report route
            lane(EventOwner("E_CDR"), "cdr", accepted=4, delivered=4, rejected_queue_full=2),
        ],
        "producers": [
            {
                "name": "p1",
                "brokers": "h:1",
                "lanes": 3,
                "queue_length": 1,
                "down": False,
                "rebuilds": 0,
            }
        ],
        "report_routes": {
            "main": {"ran": 4, "errors": 0, "pending": 0},
            "_dead_letter:main": {"ran": 1, "errors": 0, "pending": 0},
        },
        "unknown_broker_id": 3,
        "rejected_after_close": 0,
        "events": {"E_CDR": EventStats("E_CDR", 0, 2, 10, 4, 2)},
    },
    broker_topics={"k1": "t1", "k2": "t2"},
    transports={"udp": {"udp:127.0.0.1:9": {"sent": 5, "errors": 1}}, "kafka": {"lanes": []}},
    ingest={
        "udp": {
            "received": 9,
            "malformed": 2,
            "raised": 7,
            "refused": 0,
            "bytes": 900,
            "unknown_event": 1,
        }
    },
    mi={"requests": 11, "errors": 2},
    http={"unauthorized": 1, "too_large": 0, "timeout": 0, "overload": 0},
    report_actions={"main": {"delivered": 3, "failed": 1, "dead_letter_published": 1}},
    reloads={"ok": 1, "error": 2},
    started_at=1000.0,
    version="1.2.3",
)


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(make_registry(lambda: SNAP)).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def lbl(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def test_lane_metrics_are_summed_per_broker_id_and_event() -> None:
    s = samples()
    k1 = lbl(broker_id="k1", event="", topic="t1")
    assert s[("event_kafka_messages_accepted_total", k1)] == 7
    assert s[("event_kafka_messages_delivered_total", k1)] == 5
    assert s[("event_kafka_messages_failed_total", k1)] == 1
    assert s[("event_kafka_messages_in_flight", k1)] == 1
    # a configured broker_id shows up before its first message
    assert (
        s[("event_kafka_messages_accepted_total", lbl(broker_id="k2", event="", topic="t2"))] == 0
    )
    cdr = lbl(broker_id="", event="E_CDR", topic="cdr")
    assert s[("event_kafka_messages_accepted_total", cdr)] == 4
    assert (
        s[
            (
                "event_kafka_messages_rejected_total",
                lbl(broker_id="", event="E_CDR", topic="cdr", reason="queue_full"),
            )
        ]
        == 2
    )
    assert s[("event_kafka_unknown_broker_id_total", ())] == 3


def test_other_families() -> None:
    s = samples()
    assert s[("event_kafka_event_raised_total", lbl(event="E_CDR"))] == 10
    assert s[("event_kafka_event_subscribers", lbl(event="E_CDR"))] == 2
    assert s[("event_kafka_ingest_received_total", lbl(listener="udp"))] == 9
    assert s[("event_kafka_ingest_malformed_total", lbl(listener="udp"))] == 2
    assert s[("event_kafka_ingest_unknown_event_total", lbl(listener="udp"))] == 1
    assert s[("event_kafka_report_route_runs_total", lbl(route="main"))] == 4
    assert s[("event_kafka_report_actions_total", lbl(route="main", status="failed"))] == 1
    assert s[("event_kafka_dead_letter_total", lbl(route="main", result="published"))] == 1
    assert s[("event_kafka_mi_requests_total", ())] == 11
    assert s[("event_kafka_http_rejected_total", lbl(reason="unauthorized"))] == 1
    assert s[("event_kafka_config_reloads_total", lbl(result="error"))] == 2
    assert s[("event_kafka_producer_queue_length", lbl(producer="p1", brokers="h:1"))] == 1
    assert (
        s[
            (
                "event_kafka_transport_stat",
                lbl(transport="udp", destination="udp:127.0.0.1:9", stat="sent"),
            )
        ]
        == 5
    )
    assert s[("event_kafka_build_info", lbl(version="1.2.3"))] == 1
    assert s[("event_kafka_start_time_seconds", ())] == 1000.0


def test_statistics_groups() -> None:
    g = statistics_groups(SNAP)
    assert g["event_kafka"]["accepted"] == 11 and g["event_kafka"]["unknown_broker_id"] == 3
    assert g["broker_k1"]["delivered"] == 5 and g["broker_k2"]["accepted"] == 0
    assert g["event_E_CDR"] == {"raised": 10, "subscribers": 2, "accepted": 4, "failed": 2}
    assert g["route_main"]["ran"] == 4 and g["route_main"]["dead_letter_published"] == 1
    assert not any(name.startswith("route__") for name in g)  # internal routes hidden
    assert g["ingest_udp"]["malformed"] == 2
    assert g["mi"] == {
        "requests": 11,
        "errors": 2,
        "http_unauthorized": 1,
        "http_too_large": 0,
        "http_timeout": 0,
        "http_overload": 0,
    }
    # no group or name contains the ':' separator of "group:name"
    assert all(":" not in n for stats in g.values() for n in stats)


def test_real_eventkafka_stats_feed_the_collector() -> None:
    ek = EventKafka(broker_ids=["[k1]127.0.0.1:1/t?g.sasl.password=NotShown"], flush_timeout=0)
    try:
        ek.evi.publish_event("E")
        ek.kafka_publish("k1", "m")
        snap = Snapshot(
            ek=ek.stats(), broker_topics={"k1": "t"}, transports=ek.evi.transport_stats()
        )
        text = generate_latest(make_registry(lambda: snap)).decode()
        assert 'event_kafka_messages_accepted_total{broker_id="k1",event="",topic="t"} 1.0' in text
        assert 'event_kafka_event_raised_total{event="E"} 0.0' in text
        assert "NotShown" not in text
    finally:
        ek.close(0)
