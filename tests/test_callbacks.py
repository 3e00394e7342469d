"""User code cannot break the machinery: report routes and ``on_report`` that raise anything,
block, close the instance or publish again — against a real broker.

Each test publishes over two broker_ids that share one producer (same brokers and
properties, two topics), so a callback failing on one broker_id's reports would show as
missing reports on the other.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from event_kafka import EventKafka, Report
from event_kafka.devkafka import free_port
from tests.support import Broker, wait_until

N = 20  # messages per broker_id, as in issue 12
FATAL = [SystemExit, KeyboardInterrupt, GeneratorExit, RuntimeError]


def two_ids(kafka_broker: Broker, make_topic: Callable[..., str], **kw: object) -> EventKafka:
    b = kafka_broker.bootstrap
    ek = EventKafka([f"[a]{b}/{make_topic(1)}", f"[b]{b}/{make_topic(1)}"], **kw)  # type: ignore[arg-type]
    return ek


def shared_producer(ek: EventKafka) -> None:
    assert len(ek.pool.producers) == 1, "both broker_ids must share one producer"


@pytest.mark.parametrize("exc", FATAL, ids=lambda e: e.__name__)
def test_route_raising_anything_costs_no_report(
    kafka_broker: Broker, make_topic: Callable[..., str], exc: type[BaseException]
) -> None:
    ek = two_ids(kafka_broker, make_topic, flush_timeout=2.0)
    bad_calls: list[str] = []
    good: list[Report] = []

    @ek.report_route("bad")
    def bad(r: Report) -> None:
        bad_calls.append(r.kafka_msg)
        raise exc("route bug")

    ek.add_report_route("good", good.append)
    for i in range(N):
        assert ek.kafka_publish("a", f"a{i}", report_route="bad") == 1
        assert ek.kafka_publish("b", f"b{i}", report_route="good") == 1
    shared_producer(ek)
    assert wait_until(lambda: len(good) == N and len(bad_calls) == N, 20)
    t0 = time.monotonic()
    assert ek.close() == 0
    assert time.monotonic() - t0 < 3.0  # nothing left to flush: no waiting on a dead thread
    assert sorted(bad_calls) == sorted(f"a{i}" for i in range(N))  # exactly once each
    assert sorted(r.kafka_msg for r in good) == sorted(f"b{i}" for i in range(N))
    st = ek.stats()
    assert st["broker_ids"]["a"]["route_errors"] == N
    assert st["report_routes"]["bad"]["errors"] == N
    assert ek.in_flight() == 0
    assert all(p["lost_reports"] == 0 for p in st["producers"])


@pytest.mark.parametrize("exc", FATAL, ids=lambda e: e.__name__)
def test_on_report_raising_anything_costs_no_report(
    kafka_broker: Broker, make_topic: Callable[..., str], exc: type[BaseException]
) -> None:
    ek = two_ids(kafka_broker, make_topic, flush_timeout=2.0)
    bad_calls: list[str] = []
    good: list[Report] = []

    def bad(r: Report) -> None:
        bad_calls.append(r.kafka_msg)
        raise exc("on_report bug")

    for i in range(N):
        assert ek.kafka_publish("a", f"a{i}", on_report=bad) == 1
        assert ek.kafka_publish("b", f"b{i}", on_report=good.append) == 1
    shared_producer(ek)
    assert wait_until(lambda: len(good) == N and len(bad_calls) == N, 20)
    assert ek.close() == 0
    assert Counter(bad_calls) == Counter(f"a{i}" for i in range(N))
    assert Counter(r.kafka_msg for r in good) == Counter(f"b{i}" for i in range(N))
    assert ek.stats()["broker_ids"]["a"]["route_errors"] == N
    assert ek.in_flight() == 0


def test_undelivered_messages_get_their_report_despite_raising_routes() -> None:
    """The issue's close() case: 2 s flush time, routes raising SystemExit, a broker that is
    not there: close() returns in about the flush time and every message got its report."""
    dead = f"127.0.0.1:{free_port()}/t?t.message.timeout.ms=300000"
    ek = EventKafka([f"[a]{dead}", f"[b]{dead}"], flush_timeout=2.0)
    ran: Counter[str] = Counter()

    def route(r: Report) -> None:
        ran[r.kafka_msg] += 1
        if r.kafka_id == "a":
            raise SystemExit(1)

    ek.add_report_route("r", route)
    for i in range(N):
        assert ek.kafka_publish("a", f"a{i}", report_route="r") == 1
        assert ek.kafka_publish("b", f"b{i}", report_route="r") == 1
    shared_producer(ek)
    t0 = time.monotonic()
    assert ek.close() == 2 * N
    took = time.monotonic() - t0
    assert took < 2.0 + 1.5, took
    assert ran == Counter({f"{k}{i}": 1 for k in "ab" for i in range(N)})
    assert ek.in_flight() == 0


def test_blocked_route_delays_only_itself_and_close_stays_bounded(
    kafka_broker: Broker, make_topic: Callable[..., str]
) -> None:
    ek = two_ids(kafka_broker, make_topic, flush_timeout=1.0)
    release = threading.Event()
    stuck: list[str] = []
    good: list[Report] = []
    on_good: list[Report] = []

    @ek.report_route("stuck")
    def stuck_route(r: Report) -> None:
        release.wait(30)
        stuck.append(r.kafka_msg)

    ek.add_report_route("good", good.append)
    blocked_cb = threading.Event()
    for i in range(N):
        assert ek.kafka_publish("a", f"a{i}", report_route="stuck") == 1
        assert ek.kafka_publish("b", f"b{i}", report_route="good") == 1
    # An on_report that blocks holds up other on_report callbacks only, not routes.
    assert ek.kafka_publish("a", "blocker", on_report=lambda r: blocked_cb.wait(30)) == 1
    for i in range(N):
        assert ek.kafka_publish("b", f"c{i}", report_route="good") == 1
    assert wait_until(lambda: len(good) == 2 * N, 20)
    assert stuck == []
    t0 = time.monotonic()
    assert ek.close() == 0
    assert time.monotonic() - t0 < 1.0 + 2.5  # flush + drain grace, not forever
    release.set()
    blocked_cb.set()
    # The stuck route still runs each of its reports, once, after it is unblocked.
    assert wait_until(lambda: len(stuck) == N, 10)
    assert sorted(stuck) == sorted(f"a{i}" for i in range(N))
    assert ek.kafka_publish("a", "late", on_report=on_good.append) == -1


@pytest.mark.parametrize("via", ["route", "on_report"])
def test_close_from_inside_a_callback(
    kafka_broker: Broker, make_topic: Callable[..., str], via: str
) -> None:
    b = kafka_broker.bootstrap
    dead = f"127.0.0.1:{free_port()}/t?t.message.timeout.ms=300000"
    ek = EventKafka([f"[a]{b}/{make_topic(1)}", f"[d]{dead}"], flush_timeout=0.5)
    ran: Counter[str] = Counter()
    inner: list[tuple[int, float]] = []
    proceed = threading.Event()

    def cb(r: Report) -> None:
        ran[r.kafka_msg] += 1
        if r.kafka_msg == "a0":
            proceed.wait(10)  # the dead broker's messages are all accepted by now
            t0 = time.monotonic()
            inner.append((ek.close(), time.monotonic() - t0))

    ek.add_report_route("r", cb)
    kw: dict[str, object] = {"report_route": "r"} if via == "route" else {"on_report": cb}
    for i in range(N):
        assert ek.kafka_publish("d", f"d{i}", **kw) == 1  # type: ignore[arg-type]
    assert ek.kafka_publish("a", "a0", **kw) == 1  # type: ignore[arg-type]
    proceed.set()
    assert wait_until(lambda: bool(inner), 15)
    [(left, took)] = inner
    assert left == N  # the dead broker's messages, failed at close
    # The flush time, not that plus a wait on itself (bounded by the 1 s drain grace).
    assert took < 0.5 + 0.7, f"close() from a callback waited on itself: {took:.1f}s"
    # A second close() from here waits for the reports the callback's close could not run.
    assert ek.close(5) == 0
    assert ran == Counter({"a0": 1, **{f"d{i}": 1 for i in range(N)}})
    assert ek.in_flight() == 0
    assert all(p["lost_reports"] == 0 for p in ek.stats()["producers"])


def test_publish_from_inside_callbacks(
    kafka_broker: Broker, make_topic: Callable[..., str]
) -> None:
    ek = two_ids(kafka_broker, make_topic)
    second: list[Report] = []
    first: list[Report] = []

    @ek.report_route("first")
    def first_route(r: Report) -> None:
        first.append(r)
        # Re-entrant publish from a report route, to the other broker_id and back.
        assert ek.kafka_publish("b", "re:" + r.kafka_msg, report_route="second") == 1

    ek.add_report_route("second", second.append)

    def on_report(r: Report) -> None:
        assert ek.kafka_publish("a", "or:" + r.kafka_msg, report_route="second") == 1

    for i in range(N):
        assert ek.kafka_publish("a", f"a{i}", report_route="first") == 1
        assert ek.kafka_publish("b", f"b{i}", on_report=on_report) == 1
    assert wait_until(lambda: len(second) == 2 * N, 20)
    assert ek.close() == 0
    assert Counter(r.kafka_msg for r in second) == Counter(
        [f"re:a{i}" for i in range(N)] + [f"or:b{i}" for i in range(N)]
    )
    assert all(r.ok for r in first + second)
    assert ek.in_flight() == 0


def test_route_backlog_is_bounded_without_blocking_others(
    kafka_broker: Broker, make_topic: Callable[..., str]
) -> None:
    ek = two_ids(kafka_broker, make_topic, report_queue_size=5)
    release = threading.Event()
    good: list[Report] = []
    stuck: list[Report] = []
    ek.add_report_route("stuck", lambda r: (release.wait(30), stuck.append(r)))
    ek.add_report_route("good", good.append)
    rcs = [ek.kafka_publish("a", f"a{i}", report_route="stuck") for i in range(10)]
    assert rcs == [1] * 5 + [-1] * 5  # the bound, refused at once, counted
    for i in range(N):  # "good" has the same bound: one at a time
        assert ek.kafka_publish("b", f"b{i}", report_route="good") == 1
        assert wait_until(lambda n=i + 1: len(good) == n, 10)  # the poller never waits for "stuck"
    assert ek.stats()["broker_ids"]["a"]["rejected_queue_full"] == 5
    release.set()
    assert wait_until(lambda: len(stuck) == 5, 10)
    assert ek.kafka_publish("a", "room again", report_route="stuck") == 1
    assert ek.close() == 0
    assert len(stuck) == 6
