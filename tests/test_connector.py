"""kafka_publish, report routes and the producer core against a real broker."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import pytest

from event_kafka import ConfigError, EventKafka, Report, SocketError, UnknownReportRouteError
from event_kafka.event_interface import UnknownEventError
from tests.support import Broker, Consume, dead_broker, wait_until


def test_publish_with_and_without_key_str_and_bytes(
    kafka_broker: Broker, topic: str, consume: Consume
) -> None:
    with EventKafka([f"[k1]{kafka_broker.bootstrap}/{topic}"]) as ek:
        assert ek.kafka_publish("k1", "text msg", key="call-1") == 1
        assert ek.kafka_publish("k1", b"bytes msg", key=b"call-2") == 1
        assert ek.kafka_publish("k1", "no key") == 1
        assert ek.kafka_publish("k1", "empty key is null", key="") == 1
        assert ek.kafka_publish("k1", "ünïcode ✓") == 1
    got = [(r.key, r.value) for r in consume(topic, expect=5)]
    assert got == [
        (b"call-1", b"text msg"),
        (b"call-2", b"bytes msg"),
        (None, b"no key"),
        (None, b"empty key is null"),
        (None, "ünïcode ✓".encode()),
    ]


def test_per_key_order_across_partitions(
    kafka_broker: Broker, make_topic: Callable[..., str], consume: Consume
) -> None:
    topic = make_topic(4)
    keys = [f"call-{i}" for i in range(20)]
    with EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}?g.linger.ms=2"]) as ek:
        for seq in range(200):
            for k in keys:
                assert ek.kafka_publish("k", f"{k}:{seq}", key=k) == 1
    records = consume(topic, expect=4000)
    assert len(records) == 4000
    by_key: dict[bytes, list[int]] = {}
    partitions: dict[bytes, set[int]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert r.key is not None and r.value is not None
        by_key.setdefault(r.key, []).append(int(r.value.split(b":")[1]))
        partitions.setdefault(r.key, set()).add(r.partition)
    assert all(seqs == list(range(200)) for seqs in by_key.values())
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1


def test_report_route_success_carries_avps_and_position(kafka_broker: Broker, topic: str) -> None:
    reports: list[Report] = []
    with EventKafka([f"[k1]{kafka_broker.bootstrap}/{topic}"]) as ek:

        @ek.report_route("kafka_report")
        def kafka_report(r: Report) -> None:
            reports.append(r)

        assert ek.kafka_publish("k1", "my msg", "callid-1", "kafka_report") == 1
        assert ek.kafka_publish("k1", "second", None, "kafka_report") == 1
    assert [r.avp for r in reports] == [
        {
            "kafka_id": "k1",
            "kafka_status": 0,
            "kafka_key": "callid-1",
            "kafka_msg": "my msg",
        },
        {"kafka_id": "k1", "kafka_status": 0, "kafka_key": "", "kafka_msg": "second"},
    ]
    assert [(r.topic, r.partition, r.offset, r.reason) for r in reports] == [
        (topic, 0, 0, None),
        (topic, 0, 1, None),
    ]
    assert reports[0].kafka_status == reports[0].avp["kafka_status"] == 0


def test_report_route_failure_when_broker_is_not_there() -> None:
    reports: list[Report] = []
    done = threading.Event()
    ek = EventKafka([f"[down]{dead_broker()}/t?t.message.timeout.ms=1000"])
    ek.add_report_route("r", lambda r: (reports.append(r), done.set()))
    assert ek.kafka_publish("down", "lost?", key="k", report_route="r") == 1
    # Ordering, not a clock: it returned before its outcome (due after message.timeout.ms)
    # existed; a kafka_publish that waited for the network would return after its report.
    assert not done.is_set(), "kafka_publish must not wait for the network"
    assert done.wait(15)
    [r] = reports
    assert (r.kafka_status, r.kafka_id, r.kafka_key, r.kafka_msg) == (-1, "down", "k", "lost?")
    assert r.reason is not None and "timed out" in r.reason.lower()
    s = ek.stats()["broker_ids"]["down"]
    assert (s["accepted"], s["failed"], s["delivered"], s["in_flight"]) == (1, 1, 0, 0)
    assert ek.close(1) == 0


def test_unknown_route_is_an_error_and_unknown_broker_id_returns_minus_one(
    kafka_broker: Broker, topic: str
) -> None:
    with EventKafka([f"[k1]{kafka_broker.bootstrap}/{topic}"]) as ek:
        with pytest.raises(UnknownReportRouteError, match="nope"):
            ek.kafka_publish("k1", "m", report_route="nope")
        assert ek.kafka_publish("k2", "m") == -1
        assert ek.stats()["unknown_broker_id"] == 1


def test_a_pasted_broker_id_definition_is_never_echoed(caplog: pytest.LogCaptureFixture) -> None:
    """kafka_publish given a whole broker_id definition (password and all) instead of its
    name: the error and the log line name it with the password masked (issue 12 item 8)."""
    pasted = "[k9]127.0.0.1:9092/t?g.sasl.username=u&g.sasl.password=hunter2"
    caplog.set_level("WARNING", logger="event_kafka")
    with EventKafka(["[k1]127.0.0.1:9/t"], flush_timeout=0) as ek:
        with pytest.raises(UnknownReportRouteError) as info:
            ek.kafka_publish("k1", "m", report_route=pasted)
        assert "hunter2" not in str(info.value) and "g.sasl.password=*****" in str(info.value)
        assert ek.kafka_publish(pasted, "m") == -1
        with pytest.raises(UnknownEventError) as unknown:
            ek.raise_event("[k9]h/t?g.sasl.password=hunter2")  # a valid event name
        assert "g.sasl.password=*****" in str(unknown.value)
        assert "hunter2" not in str(unknown.value)
    assert "unknown broker_id" in caplog.text
    assert "hunter2" not in caplog.text


def test_bad_broker_ids_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match=r"Broker ID \[a\] already defined"):
        EventKafka(["[a]127.0.0.1:9092/t", "[a]127.0.0.1:9092/u"])
    with pytest.raises(SocketError):
        EventKafka(["[a]127.0.0.1:9092"])  # no topic
    with pytest.raises(SocketError):
        EventKafka(["[a]127.0.0.1:9092/t?t.acks=bogus"])


def test_queue_full_rejects_without_blocking_and_counts() -> None:
    ek = EventKafka([f"[q]{dead_broker()}/t?g.queue.buffering.max.messages=10"])
    results = []
    worst = 0.0
    for _ in range(50):
        t0 = time.perf_counter()
        results.append(ek.kafka_publish("q", "x"))
        worst = max(worst, time.perf_counter() - t0)
    assert results.count(1) == 10 and results.count(-1) == 40
    assert worst < 0.5
    s = ek.stats()["broker_ids"]["q"]
    assert (s["accepted"], s["rejected_queue_full"], s["in_flight"]) == (10, 40, 10)
    assert ek.close(0.5) == 10


def test_queue_full_wait_is_bounded() -> None:
    ek = EventKafka([f"[q]{dead_broker()}/t?g.queue.buffering.max.messages=1"], queue_full_wait=0.3)
    assert ek.kafka_publish("q", "x") == 1
    t0 = time.monotonic()
    assert ek.kafka_publish("q", "y") == -1
    assert 0.25 <= time.monotonic() - t0 < 2.0
    ek.close(0.1)


def test_too_large_message_is_rejected(kafka_broker: Broker, topic: str) -> None:
    with EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}?g.message.max.bytes=1000"]) as ek:
        assert ek.kafka_publish("k", b"x" * 5000) == -1
        assert ek.stats()["broker_ids"]["k"]["rejected_too_large"] == 1


def test_close_reports_every_undelivered_message() -> None:
    reports: list[Report] = []
    ek = EventKafka([f"[d]{dead_broker()}/t?t.message.timeout.ms=300000"], flush_timeout=0.5)
    ek.add_report_route("r", reports.append)
    for i in range(100):
        assert ek.kafka_publish("d", f"m{i}", report_route="r") == 1
    t0 = time.monotonic()
    assert ek.close() == 100
    assert time.monotonic() - t0 < 10
    assert len(reports) == 100
    assert {r.kafka_status for r in reports} == {-1}
    assert {r.reason for r in reports} == {"not delivered before shutdown"}
    assert sorted(r.kafka_msg for r in reports) == sorted(f"m{i}" for i in range(100))
    assert ek.kafka_publish("d", "after close") == -1


def test_raising_and_slow_routes_do_not_lose_or_stall_others(
    kafka_broker: Broker, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    fast: list[Report] = []
    slow: list[Report] = []
    with EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}"]) as ek:

        @ek.report_route("bad")
        def bad(r: Report) -> None:
            raise RuntimeError("route bug")

        @ek.report_route("slow")
        def slow_route(r: Report) -> None:
            time.sleep(0.3)  # the slow route under test, not a wait
            slow.append(r)

        ek.add_report_route("fast", fast.append)
        for i in range(5):
            ek.kafka_publish("k", f"s{i}", report_route="slow")
        for i in range(20):
            ek.kafka_publish("k", f"b{i}", report_route="bad")
            ek.kafka_publish("k", f"f{i}", report_route="fast")
        # The fast route completes long before the slow one could have run 5 times.
        assert wait_until(lambda: len(fast) == 20, 10)
        assert len(slow) < 5
    assert len(slow) == 5
    st = ek.stats()
    assert st["broker_ids"]["k"]["route_errors"] == 20
    assert st["report_routes"]["bad"]["errors"] == 20
    assert sum("route bug" in r.message for r in caplog.records) < 20  # rate-limited


def test_concurrent_publishers(kafka_broker: Broker, topic: str, consume: Consume) -> None:
    n_threads, per = 8, 5000
    with EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}"], queue_full_wait=5) as ek:

        def worker(t: int) -> None:
            for i in range(per):
                assert ek.kafka_publish("k", f"{t}:{i}", key=str(t)) == 1

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    s = ek.stats()["broker_ids"]["k"]
    assert (s["accepted"], s["delivered"], s["in_flight"]) == (40000, 40000, 0)
    values = {r.value for r in consume(topic, expect=40000)}
    assert len(values) == 40000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_workers_get_their_own_producers(
    kafka_broker: Broker, topic: str, consume: Consume
) -> None:
    ek = EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}"])
    # The parent publishes first, so a producer (with its threads) exists before the fork;
    # delivered, so it is connected and idle: forking while it still connects can leave
    # glibc's getaddrinfo lock held in the children (docs/guarantees.md, "Fork").
    assert ek.kafka_publish("k", "parent") == 1
    assert ek.flush(10) == 0
    parent_producer = ek.pool.producers[0].handles[0]
    pids = []
    for w in range(3):
        pid = os.fork()
        if pid == 0:  # child: publish, close, report via exit status
            code = 1
            try:
                ok = all(ek.kafka_publish("k", f"w{w}:{i}") == 1 for i in range(500))
                child_producer = ek.pool.producers[0].handles[0]
                left = ek.close(20)
                delivered = ek.stats()["broker_ids"]["k"]["delivered"]
                crossed = child_producer is parent_producer
                code = 0 if ok and left == 0 and delivered == 500 and not crossed else 1
            finally:
                os._exit(code)
        pids.append(pid)
    statuses = [os.waitpid(pid, 0)[1] for pid in pids]
    assert statuses == [0, 0, 0]
    assert ek.close(10) == 0
    values = sorted(r.value or b"" for r in consume(topic, expect=1501))
    assert len(values) == 1501
    assert values.count(b"parent") == 1


def test_fatal_error_rebuilds_producer_and_fails_its_messages() -> None:
    reports: list[Report] = []
    ek = EventKafka([f"[f]{dead_broker()}/t?t.message.timeout.ms=300000"])
    ek.add_report_route("r", reports.append)
    for i in range(10):
        assert ek.kafka_publish("f", f"m{i}", report_route="r") == 1
    sp = ek.pool.producers[0]
    old = sp._producer
    sp.fatal_pending = "simulated: Broker: Producer attempted an operation with an old epoch"
    assert wait_until(lambda: len(reports) == 10, 10)
    assert sp._producer is not old and sp.rebuilds == 1
    assert {r.reason for r in reports} == {
        "fatal producer error: simulated: Broker: Producer attempted an operation with an old epoch"
    }
    assert ek.kafka_publish("f", "after rebuild") == 1
    assert ek.close(0.2) == 1


def test_broker_down_is_logged_once_not_flooded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    backoff = "g.reconnect.backoff.ms=10&g.reconnect.backoff.max.ms=50"
    ek = EventKafka([f"[d]{dead_broker()}/t?{backoff}"])
    ek.kafka_publish("d", "x")
    # Down errors keep coming (reconnects every <= 50 ms): wait for several, each one a
    # chance to log again.
    sp = ek.pool.producers[0]
    wait_until(lambda: sp.down and sp.down_errors >= 5, 20, "repeated broker-down errors")
    ek.close(0.1)
    down = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(down) == 1
    noisy = [r for r in caplog.records if r.name == "event_kafka.librdkafka"]
    assert len(noisy) <= 6, [r.getMessage() for r in noisy]


def test_secret_never_in_logs_or_stats(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Sup3rS3cretPassw0rd"
    ek = EventKafka(
        [
            f"[s]{dead_broker()}/t?g.security.protocol=sasl_plaintext&g.sasl.mechanism=PLAIN"
            f"&g.sasl.username=u&g.sasl.password={secret}&t.message.timeout.ms=1000"
        ]
    )
    reports: list[Report] = []
    ek.add_report_route("r", reports.append)
    ek.kafka_publish("s", "x", report_route="r")
    wait_until(lambda: reports, 20, "the message's timeout report")  # the debug lines logged
    ek.close(0.1)
    assert secret not in caplog.text
    assert secret not in repr(ek.stats())
    assert secret not in repr(ek.brokers)


def test_set_broker_ids_applies_changes_and_keeps_what_was_accepted(
    kafka_broker: Broker, make_topic: Callable[..., str], consume: Consume
) -> None:
    old_t, new_t = make_topic(1), make_topic(1)
    b = kafka_broker.bootstrap
    ek = EventKafka([f"[a]{b}/{old_t}", f"[gone]{b}/{old_t}"])
    ek.add_report_route("r", lambda r: None)
    # With and without a report route: each kind of call has its own lane to replace.
    assert ek.kafka_publish("a", "before") == 1
    assert ek.kafka_publish("a", "before-r", None, "r") == 1
    assert ek.kafka_publish("gone", "x", None, "r") == 1
    with pytest.raises(SocketError):
        ek.set_broker_ids([f"[a]{b}/{new_t}", "[bad]nope"])
    assert set(ek.brokers) == {"a", "gone"}  # a bad reload changes nothing
    ek.set_broker_ids([f"[a]{b}/{new_t}"])
    assert ek.kafka_publish("a", "after") == 1
    assert ek.kafka_publish("a", "after-r", None, "r") == 1
    assert ek.kafka_publish("gone", "x") == -1
    assert ek.kafka_publish("gone", "x", None, "r") == -1
    assert ek.close(10) == 0
    assert sorted(r.value for r in consume(old_t, expect=3)) == [b"before", b"before-r", b"x"]
    assert sorted(r.value for r in consume(new_t, expect=2)) == [b"after", b"after-r"]


def test_a_replaced_report_route_gets_the_next_reports(kafka_broker: Broker, topic: str) -> None:
    first: list[Report] = []
    second: list[Report] = []
    ek = EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}"])
    ek.add_report_route("r", first.append)
    assert ek.kafka_publish("k", "one", None, "r") == 1
    assert ek.flush(30) == 0
    ek.add_report_route("r", second.append)
    assert ek.kafka_publish("k", "two", None, "r") == 1
    assert ek.close(10) == 0
    assert [(r.kafka_msg, r.kafka_status) for r in first] == [("one", 0)]
    assert [(r.kafka_msg, r.kafka_status) for r in second] == [("two", 0)]


def test_reloaded_lane_leaves_the_pool_with_its_last_report(
    kafka_broker: Broker, make_topic: Callable[..., str], consume: Consume
) -> None:
    # A broker_id changed by a reload while its messages are in flight, on a producer that
    # another broker_id keeps alive: its lane must leave the pool when its last report comes
    # (Lane._dr_count), not linger until close.
    old_t, new_t = make_topic(1), make_topic(1)
    b = kafka_broker.bootstrap
    props = "?g.linger.ms=1000"  # the same producer for both ids; messages stay in flight
    ek = EventKafka([f"[a]{b}/{old_t}{props}", f"[keep]{b}/{old_t}{props}"])
    assert ek.kafka_publish("keep", "k") == 1
    assert all(ek.kafka_publish("a", f"m{i}") == 1 for i in range(20))
    [old] = [ln for ln in ek.pool.lanes if ln.kafka_id == "a"]
    ek.set_broker_ids([f"[a]{b}/{new_t}{props}", f"[keep]{b}/{old_t}{props}"])
    assert old.released and old in ek.pool.lanes and old.stats.in_flight > 0
    wait_until(lambda: old not in ek.pool.lanes, 30, "released lane dropped")
    assert (old.accepted, old.delivered, old.failed) == (20, 20, 0)
    assert ek.kafka_publish("a", "new") == 1
    assert ek.close(10) == 0
    assert len(consume(old_t, expect=21)) == 21
    assert [r.value for r in consume(new_t, expect=1)] == [b"new"]


def test_flush_waits_for_reports_and_keeps_accepting(kafka_broker: Broker, topic: str) -> None:
    reports: list[Report] = []
    ek = EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}"])
    ek.add_report_route("r", lambda r: (time.sleep(0.001), reports.append(r)))  # a slow route
    for i in range(200):
        ek.kafka_publish("k", f"m{i}", report_route="r")
    assert ek.flush(30) == 0
    assert len(reports) == 200 and ek.in_flight() == 0
    assert ek.kafka_publish("k", "still open") == 1
    assert ek.close(10) == 0


def test_flush_returns_what_is_left_on_timeout() -> None:
    ek = EventKafka([f"[d]{dead_broker()}/t"])
    ek.kafka_publish("d", "x")
    t0 = time.monotonic()
    assert ek.flush(0.3) == 1
    assert 0.25 <= time.monotonic() - t0 < 2
    assert ek.close(0.1) == 1


def test_event_named_like_a_broker_id_is_not_counted_as_kafka_publish(
    kafka_broker: Broker, make_topic: Callable[..., str], consume: Consume
) -> None:
    """Issue 13: broker_id ``E1`` and an event ``E1`` are two owners, not one string."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from event_kafka.service.metrics import Snapshot, make_registry, statistics_groups

    bid_topic, ev_topic = make_topic(), make_topic()
    with EventKafka([f"[E1]{kafka_broker.bootstrap}/{bid_topic}"]) as ek:
        ek.publish_event("E1")
        assert ek.subscribe("E1", f"kafka:{kafka_broker.bootstrap}/{ev_topic}")
        assert ek.raise_event("E1", {"n": 1}) == 1
        assert len(consume(ev_topic, expect=1)) == 1
        assert ek.flush(30) == 0
        stats = ek.stats()
        assert stats["broker_ids"]["E1"]["accepted"] == 0
        assert stats["events"]["E1"].accepted == 1
        snap = Snapshot(ek=stats, broker_topics={"E1": bid_topic})
    groups = statistics_groups(snap)
    assert groups["broker_E1"]["accepted"] == 0
    assert groups["event_kafka"]["accepted"] == 1
    accepted = {
        (s.labels["broker_id"], s.labels["event"], s.labels["topic"]): s.value
        for fam in text_string_to_metric_families(
            generate_latest(make_registry(lambda: snap)).decode()
        )
        for s in fam.samples
        if s.name == "event_kafka_messages_accepted_total"
    }
    assert accepted == {("E1", "", bid_topic): 0.0, ("", "E1", ev_topic): 1.0}


def test_report_future_resolves_with_the_report(kafka_broker: Broker, topic: str) -> None:
    from event_kafka import report_future

    with EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}", f"[dead]{dead_broker()}/t"]) as ek:
        fut, on_report = report_future()
        assert ek.kafka_publish("k", "m", key="c1", on_report=on_report) == 1
        r = fut.result(timeout=30)
        assert (r.ok, r.kafka_id, r.kafka_key, r.topic) == (True, "k", "c1", topic)
        lost, on_lost = report_future()
        assert ek.kafka_publish("dead", "m", on_report=on_lost) == 1
        ek.close(0)
        r = lost.result(timeout=30)
    assert (r.ok, r.kafka_id, r.reason) == (False, "dead", "not delivered before shutdown")


def test_event_lanes_count_exactly_without_a_callback_per_success(
    kafka_broker: Broker, make_topic: Callable[..., str], consume: Consume
) -> None:
    """An event subscriber's lane gets no Python call per success (docs/benchmarks.md): its
    ``delivered`` is derived from what librdkafka still holds. It must never run ahead of the
    acknowledgements, must be exact once they came, and a lane released while its messages
    are in flight must leave the pool once they are reported (nothing calls back for them)."""
    dead = EventKafka()
    dead.evi.publish_event("E_DEAD")
    assert dead.subscribe("E_DEAD", f"kafka:{dead_broker()}/t")
    assert [dead.raise_event("E_DEAD", {"i": i}) for i in range(20)] == [1] * 20
    [lane] = dead.pool.lanes
    assert lane.quiet and (lane.accepted, lane.delivered, lane.stats.in_flight) == (20, 0, 20)
    assert dead.close(0.2) == 20
    assert (lane.delivered, lane.failed, lane.stats.in_flight) == (0, 20, 0)

    b = kafka_broker.bootstrap
    ta, tb = make_topic(1), make_topic(1)
    ek = EventKafka()
    ek.evi.publish_event("E_X")
    sock_a, sock_b = (f"kafka:{b}/{t}?g.linger.ms=200" for t in (ta, tb))
    assert ek.subscribe("E_X", sock_a) and ek.subscribe("E_X", sock_b)
    for i in range(500):
        assert ek.raise_event("E_X", {"i": i}) == 2  # one per subscriber
    [lane_a] = [ln for ln in ek.pool.lanes if ln.topic == ta]
    [lane_b] = [ln for ln in ek.pool.lanes if ln.topic == tb]
    assert lane_a.quiet and lane_a.delivered < 500  # linger 200 ms: not acknowledged yet
    t0 = time.monotonic()
    assert ek.flush(10) == 0
    assert time.monotonic() - t0 < 2  # flush waits on the counts, not for its timeout
    assert (lane_a.delivered, lane_b.delivered) == (500, 500)
    assert ek.unsubscribe("E_X", sock_b)
    for i in range(500, 1000):
        assert ek.raise_event("E_X", {"i": i}) == 1
    assert ek.unsubscribe("E_X", sock_a)  # releases lane a while its messages are in flight
    assert wait_until(lambda: lane_a not in ek.pool.lanes, 10)
    assert (lane_a.delivered, lane_a.failed) == (1000, 0)
    assert ek.close(10) == 0
    assert len(consume(ta, expect=1000)) == 1000 and len(consume(tb, expect=500)) == 500


def test_kafka_publish_with_and_without_on_report_keeps_per_key_order(
    kafka_broker: Broker, make_topic: Callable[..., str], consume: Consume
) -> None:
    """A broker_id's calls with and without ``on_report`` keep one order: a value and the
    tombstone that deletes it arrive in that order (a failures-only handle for route-less
    calls, with no handover, reversed them)."""
    topic = make_topic(1)
    got: list[Report] = []
    with EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}?g.linger.ms=50"]) as ek:
        for i in range(200):
            if i % 2:
                assert ek.kafka_publish("k", f"v{i}", "key", on_report=got.append) == 1
            else:
                assert ek.kafka_publish("k", f"v{i}", "key") == 1
    values = [r.value for r in consume(topic, expect=200)]
    assert values == [f"v{i}".encode() for i in range(200)]
    assert len(got) == 100 and all(r.ok for r in got)
