"""No thread per producer, and a cap on producers (issue 12, item 9), against a real broker."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from event_kafka import EventKafka, ProducerLimitError, Report
from tests.support import Broker, Consume, wait_until

SUBSCRIBERS = 30


def test_python_threads_do_not_grow_with_producers(
    kafka_broker: Broker, topic: str, consume: Consume
) -> None:
    ek = EventKafka(flush_timeout=10)
    ek.publish_event("E_MANY")
    b = kafka_broker.bootstrap
    before = threading.active_count()
    for i in range(SUBSCRIBERS):  # distinct properties: one producer each
        assert ek.subscribe("E_MANY", f"kafka:{b}/{topic}?g.client.id=sub{i}", expire=60)
    assert ek.raise_event("E_MANY", {"n": 1}) == SUBSCRIBERS
    assert len(ek.pool.producers) == SUBSCRIBERS
    grown = threading.active_count() - before
    # The shared poller (and nothing per producer); librdkafka's threads are not Python's.
    assert grown <= 2, [t.name for t in threading.enumerate()]
    for i in range(SUBSCRIBERS):  # all go at once: each producer is flushed, then closed
        assert ek.unsubscribe("E_MANY", f"kafka:{b}/{topic}?g.client.id=sub{i}")
    grown = threading.active_count() - before
    assert grown <= 3, [t.name for t in threading.enumerate()]  # + one releaser, not 30
    assert wait_until(lambda: not ek.pool.producers and not ek.pool.lanes, 20)
    assert ek.close() == 0
    assert len(consume(topic, expect=SUBSCRIBERS)) == SUBSCRIBERS


def test_reports_still_come_from_many_producers(kafka_broker: Broker, topic: str) -> None:
    b = kafka_broker.bootstrap
    ids = [f"[p{i}]{b}/{topic}?g.client.id=p{i}" for i in range(10)]
    ek = EventKafka(ids)
    got: list[Report] = []
    done = threading.Event()

    def on_report(r: Report) -> None:
        got.append(r)
        if len(got) == 100:
            done.set()

    for n in range(10):
        for i in range(10):
            assert ek.kafka_publish(f"p{i}", f"{i}:{n}", on_report=on_report) == 1
    assert done.wait(30)
    assert sorted(r.kafka_msg for r in got) == sorted(
        f"{i}:{n}" for i in range(10) for n in range(10)
    )
    assert all(r.ok for r in got)
    assert ek.close() == 0


def test_max_producers_caps_broker_ids_and_subscriptions(kafka_broker: Broker, topic: str) -> None:
    b = kafka_broker.bootstrap
    ek = EventKafka(
        [
            f"[a]{b}/{topic}",
            f"[a2]{b}/{topic}",  # same producer as [a]
            f"[c]{b}/{topic}?g.client.id=c",
            f"[d]{b}/{topic}?g.client.id=d",
        ],
        max_producers=2,
    )
    ek.publish_event("E")
    assert ek.kafka_publish("a", "1") == 1
    assert ek.kafka_publish("a2", "2") == 1
    assert ek.kafka_publish("c", "3") == 1
    assert ek.kafka_publish("d", "4") == -1  # a third producer
    st = ek.stats()
    assert st["rejected_producer_limit"] == 1 and len(st["producers"]) == 2
    # A subscriber on an existing producer is fine; one needing a new producer is refused.
    assert ek.subscribe("E", f"kafka:{b}/{topic}?g.client.id=c", expire=60)
    with pytest.raises(ProducerLimitError, match=r"max_producers \(2\)"):
        ek.subscribe("E", f"kafka:{b}/{topic}?g.client.id=new", expire=60)
    assert [s.socket for e in ek.list_subscribers("E") for s in e.subscribers] == [
        f"kafka:{b}/{topic}"
    ]
    assert ek.close() == 0


def test_subscriptions_reserve_producer_slots_until_they_go(
    kafka_broker: Broker, topic: str
) -> None:
    b = kafka_broker.bootstrap
    ek = EventKafka([f"[z]{b}/{topic}?g.client.id=z"], max_producers=1)
    ek.publish_event("E")
    s1 = f"kafka:{b}/{topic}?g.client.id=s1"
    s2 = f"kafka:{b}/{topic}?g.client.id=s2"
    assert ek.subscribe("E", s1, expire=60)  # reserved now, before any event
    with pytest.raises(ProducerLimitError):
        ek.subscribe("E", s2, expire=60)
    assert ek.kafka_publish("z", "x") == -1  # the slot is s1's
    assert ek.subscribe("E", s1, expire=60) is False  # a refresh needs no new slot
    assert ek.unsubscribe("E", s1)
    assert ek.subscribe("E", s2, expire=60)  # s1's slot is free again
    assert ek.raise_event("E", {"k": 1}) == 1
    assert ek.close() == 0


def test_max_producers_must_be_positive() -> None:
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="max_producers"):
            EventKafka(max_producers=bad)  # type: ignore[arg-type]


def _os_threads() -> int:
    """Every thread of this process, librdkafka's and the transports' included."""
    return len(list(Path("/proc/self/task").iterdir()))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_300_subscriptions_add_no_thread_per_subscriber(kafka_broker: Broker, topic: str) -> None:
    """The issue's probe: 300 MI subscriptions made 1 217 threads. 100 kafka (one topic
    each, one shared producer), 100 udp and 100 tcp subscribers, each sent an event."""
    import socket

    b = kafka_broker.bootstrap
    sinks = [socket.create_server(("127.0.0.1", 0)) for _ in range(100)]  # kernel accepts
    ports = [s.getsockname()[1] for s in sinks]
    ek = EventKafka(flush_timeout=0)
    ek.publish_event("E_300")
    ek.subscribe("E_300", f"kafka:{b}/{topic}", expire=60)
    assert ek.raise_event("E_300", {"warm": 1}) == 1  # the shared producer's threads exist
    py_before, os_before = threading.active_count(), _os_threads()
    try:
        for i in range(1, 100):
            assert ek.subscribe("E_300", f"kafka:{b}/{topic}-{i}", expire=60)
        for i in range(100):
            assert ek.subscribe("E_300", f"udp:127.0.0.1:{9000 + i}", expire=60)
            assert ek.subscribe("E_300", f"tcp:127.0.0.1:{ports[i]}", expire=60)
        assert ek.evi.subscriber_count("E_300") == 300
        ek.raise_event("E_300", {"n": 1})
        assert len(ek.pool.producers) == 1
        py_grown = threading.active_count() - py_before
        os_grown = _os_threads() - os_before
        names = [t.name for t in threading.enumerate()]
        # A few shared workers (tcp sender, releasers) at most: nothing per subscriber.
        print(f"threads grown: python {py_grown}, os {os_grown}")
        assert py_grown <= 5 and os_grown <= 10, (py_grown, os_grown, names)
    finally:
        ek.close(0)
        for s in sinks:
            s.close()
