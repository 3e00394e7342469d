"""A broker_id's handover from the failures-only handle to the per-message one
(``event_kafka.producer.handover``): one order, exact counts, bounded, and every held call
reported."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from event_kafka import EventKafka, Report
from event_kafka.producer import handover
from event_kafka.producer.lane import Lane
from event_kafka.report import StandIn
from tests.support import Broker, Consume, Reports, dead_broker, wait_until
from tests.support.children import in_child


def _plain(ek: EventKafka, broker_id: str) -> Lane:
    [lane] = [ln for ln in ek.pool.lanes if ln.owner.name == broker_id and ln.route is None]
    return lane


def test_the_first_reported_call_waits_for_the_quiet_ones_and_keeps_their_order(
    kafka_broker: Broker, make_topic: Callable[..., str], consume: Consume
) -> None:
    """Route-less calls go through the quiet handle; the first call with a report route, and
    one with ``on_report``, wait until the quiet handle has reported them all, then every
    call of the broker_id goes through the other handle: one key, one order, exact counts."""
    topic = make_topic(1)
    # Small batches: the quiet handle needs many requests for its messages, so a call sent
    # on the other handle at once would land before most of them.
    sock = f"[k]{kafka_broker.bootstrap}/{topic}?g.linger.ms=20&g.batch.num.messages=50"
    got: list[Report] = []
    with EventKafka([sock]) as ek:
        routed = Reports()
        ek.add_report_route("r", routed)
        n = 3000
        for i in range(n):
            assert ek.kafka_publish("k", f"v{i}", "key") == 1
        plain = _plain(ek, "k")
        assert plain.quiet
        assert ek.kafka_publish("k", f"v{n}", "key", "r") == 1
        assert plain.handover is not None and len(plain.handover.waiting) == 1  # waits, in order
        assert ek.kafka_publish("k", f"v{n + 1}", "key", on_report=got.append) == 1
        for i in range(n + 2, 2 * n):
            assert ek.kafka_publish("k", f"v{i}", "key") == 1
        assert ek.flush(30) == 0
        assert not plain.quiet and plain.handover is None
        assert (plain.accepted, plain.delivered, plain.failed) == (2 * n - 1, 2 * n - 1, 0)
        routed.wait(1)
    values = [r.value for r in consume(topic, expect=2 * n)]
    assert values == [f"v{i}".encode() for i in range(2 * n)]
    [r] = routed.items
    assert (r.ok, r.kafka_msg, r.offset) == (True, f"v{n}", n)
    [o] = got
    assert (o.ok, o.kafka_msg, o.offset) == (True, f"v{n + 1}", n + 1)


def test_a_broker_id_that_has_a_route_reports_each_call_from_its_first(
    kafka_broker: Broker, topic: str, consume: Consume
) -> None:
    routed = Reports()
    with EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}"]) as ek:
        ek.add_report_route("r", routed)
        assert ek.kafka_publish("k", "routed", None, "r") == 1
        assert ek.kafka_publish("k", "plain") == 1
        plain = _plain(ek, "k")
        assert not plain.quiet and plain.handover is None
        assert ek.flush(30) == 0
        assert (plain.accepted, plain.delivered) == (1, 1)
    assert [r.value for r in consume(topic, expect=2)] == [b"routed", b"plain"]


def test_held_calls_are_bounded_and_reported_failed_at_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the brokers down the quiet messages are never reported: calls wait up to
    ``MAX_WAITING``, then get -1 (counted as queue full); close fails every held call with
    a report, and the counts add up."""
    monkeypatch.setattr(handover, "MAX_WAITING", 3)
    routed = Reports()
    ek = EventKafka([f"[dead]{dead_broker()}/t"])
    ek.add_report_route("r", routed)
    got: list[Report] = []
    assert [ek.kafka_publish("dead", f"q{i}") for i in range(5)] == [1] * 5
    assert ek.kafka_publish("dead", "r0", None, "r") == 1
    assert ek.kafka_publish("dead", "o1", on_report=got.append) == 1
    assert ek.kafka_publish("dead", "q5") == 1
    assert ek.kafka_publish("dead", "o2", on_report=got.append) == -1  # four would wait
    assert ek.kafka_publish("dead", "r1", None, "r") == -1
    plain = _plain(ek, "dead")
    assert plain.rejected_queue_full == 1 and plain.handover is not None
    assert plain.stats.in_flight == 7
    assert ek.close(0.3) == 8  # 5 quiet, 3 held
    routed.wait(1)
    assert [(r.ok, r.kafka_msg, r.reason) for r in routed.items] == [
        (False, "r0", "not delivered before shutdown")
    ]
    assert [(r.ok, r.kafka_msg, r.reason) for r in got] == [
        (False, "o1", "not delivered before shutdown")
    ]
    assert (plain.accepted, plain.delivered, plain.failed) == (7, 0, 7)
    assert plain.stats.in_flight == 0


def test_a_held_call_of_the_wrong_type_is_refused_at_once() -> None:
    ek = EventKafka([f"[dead]{dead_broker()}/t"])
    assert ek.kafka_publish("dead", "q") == 1
    assert ek.kafka_publish("dead", "o", on_report=lambda r: None) == 1  # now waits
    with pytest.raises(TypeError, match="message must be str or bytes"):
        ek.kafka_publish("dead", 7)  # type: ignore[arg-type]
    assert _plain(ek, "dead").accepted == 2
    ek.close(0)


def test_a_call_in_progress_on_the_quiet_handle_holds_the_handover_back() -> None:
    """A call that read the quiet callback (and may still produce with it) counts as in
    flight: the handover must not move the broker_id while such a call is in progress."""
    ek = EventKafka([f"[dead]{dead_broker()}/t"])
    plain = ek._new_lane("dead", None)  # the lane a first call makes, before it produces
    assert isinstance(plain, Lane) and plain.quiet and plain.held() == 0
    in_progress = plain._dr  # what publish() holds between reading it and returning
    h = plain.begin_handover()
    assert h is not None and plain.held() == 1
    assert not h.advance() and plain.quiet
    del in_progress
    assert h.advance() and not plain.quiet and plain.handover is None
    ek.close(0)


def test_a_call_that_read_the_quiet_callback_before_the_switch_is_still_counted() -> None:
    """A call can read the quiet callback after the handover saw nothing in flight and before
    it switched the lane; it then produces on the per-message handle with that callback,
    whose success must count as a delivery."""
    ek = EventKafka([f"[dead]{dead_broker()}/t"])
    plain = ek._new_lane("dead", None)
    assert isinstance(plain, Lane)
    h = plain.begin_handover()
    assert h is not None and h.advance() and not plain.quiet  # nothing in flight: at once
    quiet_cb = plain._dr_quiet  # what that call holds
    plain.took(None)  # it was accepted...
    quiet_cb(None, StandIn("t", None, b"v"))  # ...and librdkafka delivered it
    assert (plain.accepted, plain.delivered, plain.stats.in_flight) == (1, 1, 0)
    ek.close(0)


def test_a_reference_held_past_the_message_timeout_no_longer_holds_the_handover(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(handover, "GRACE", 0.0)
    ek = EventKafka([f"[dead]{dead_broker()}/t?t.message.timeout.ms=50"])
    plain = ek._new_lane("dead", None)
    assert isinstance(plain, Lane) and plain.sp.message_timeout == 0.05
    kept = plain._dr  # e.g. a kept exception's traceback holding a call's frame
    assert ek.kafka_publish("dead", "o", on_report=lambda r: None) == 1
    h = plain.handover
    assert h is not None
    assert wait_until(lambda: h.done, 10)  # after 50 ms, not never
    assert not plain.quiet and "order is not ensured" in caplog.text
    del kept
    ek.close(0)


def test_an_unencodable_message_is_refused_at_once_while_calls_wait() -> None:
    """As without a handover: the caller gets the error, nothing is held (a held call that
    could not be sent would have stopped the handover)."""
    ek = EventKafka([f"[dead]{dead_broker()}/t"])
    assert ek.kafka_publish("dead", "q") == 1
    assert ek.kafka_publish("dead", "o", on_report=lambda r: None) == 1  # now waits
    with pytest.raises(UnicodeEncodeError):
        ek.kafka_publish("dead", "\ud800")
    plain = _plain(ek, "dead")
    assert plain.handover is not None and len(plain.handover.waiting) == 1
    assert ek.close(0) == 2


def test_a_replaced_route_keeps_the_broker_id_on_per_message_reports(
    kafka_broker: Broker, topic: str, consume: Consume
) -> None:
    """Replacing a route drops its lanes from the lookup while their messages may be in flight:
    a route-less lane made then must not start on the quiet handle (order)."""
    with EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}?g.linger.ms=50"]) as ek:
        ek.add_report_route("r", Reports())
        assert ek.kafka_publish("k", "v1", "key", "r") == 1
        ek.add_report_route("r", Reports())
        assert ek.kafka_publish("k", None, "key", tombstone=True) == 1
        assert not _plain(ek, "k").quiet
    assert [r.value for r in consume(topic, expect=2)] == [b"v1", None]


def test_a_child_forked_during_a_handover_reports_each_message() -> None:
    """The parent's handover and what it holds stay the parent's; the child has nothing in
    flight, so its broker_id starts where the parent was going: one report per message."""
    ek = EventKafka([f"[dead]{dead_broker()}/t"])
    assert ek.kafka_publish("dead", "q") == 1
    assert ek.kafka_publish("dead", "o", on_report=lambda r: None) == 1  # waits
    plain = _plain(ek, "dead")
    assert plain.handover is not None

    def child() -> int:
        ok = not plain.quiet and plain.handover is None and plain.accepted == 0
        return 0 if ok else 3

    assert in_child(child, 30) == 0
    assert plain.handover is not None and len(plain.handover.waiting) == 1  # the parent's
    assert ek.close(0) == 2
