"""The Event Interface core: events, subscribers, expiry, listing, raising (fake transport)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from event_kafka.errors import EventKafkaError, SocketError
from event_kafka.event_interface import (
    MAX_EVENT_NAME,
    EventInfo,
    EventInterface,
    EventNameError,
    SubscriberInfo,
    UnknownEventError,
)
from event_kafka.payload import Params, build_payload
from event_kafka.sip import CallId, SipMessageError
from event_kafka.transports import (
    BUILTIN_TRANSPORTS,
    Destination,
    Transport,
    TransportContext,
)
from tests.support import INVITE, wait_until


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.reads = 0  # how often it was read: the expiry timer reads it on every sweep

    def __call__(self) -> float:
        self.reads += 1
        return self.now


class FakeDestination(Destination):
    """``fake:<name>[?callid|?fail|?raise]``."""

    def __init__(self, transport: FakeTransport, text: str) -> None:
        self.transport = transport
        self.name, _, self.mode = text.partition("?")
        self.needs_callid = self.mode == "callid"
        self.closed = 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeDestination) and (other.name, other.mode) == (
            self.name,
            self.mode,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.mode))

    def print(self) -> str:
        return self.name

    def send(self, payload: bytes, event: str, params: Params, key: bytes | None) -> bool:
        if self.mode == "raise":
            raise RuntimeError("transport bug")
        self.transport.sent.append((self.name, payload, event, key))
        return self.mode != "fail"

    def close(self) -> None:
        self.closed += 1
        self.transport.closed.append(self.name)


class FakeTransport(Transport):
    scheme = "fake"

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str, bytes | None]] = []
        self.closed: list[str] = []
        self.parsed: list[FakeDestination] = []
        self.transport_closed = 0

    def parse(self, text: str) -> FakeDestination:
        if not text:
            raise SocketError("invalid fake socket: empty", 5)
        d = FakeDestination(self, text)
        self.parsed.append(d)
        return d

    def close(self) -> None:
        self.transport_closed += 1

    def stats(self) -> dict[str, object]:
        return {"sent": len(self.sent)}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def evi(clock: FakeClock, fake: FakeTransport) -> Iterator[EventInterface]:
    e = EventInterface(transports=[fake], clock=clock, expiry_interval=0)
    yield e
    e.close()


def names(evi: EventInterface, event: str) -> list[str]:
    [entry] = evi.list_subscribers(event)
    return [s.socket for s in entry.subscribers]


# -- events -----------------------------------------------------------------------------------


def test_publish_assigns_ids_in_order_and_is_idempotent(evi: EventInterface) -> None:
    assert [evi.publish_event(n) for n in ("E_A", "E_B", "E_C")] == [0, 1, 2]
    assert evi.publish_event("E_B") == 1
    assert evi.list_events() == [EventInfo("E_A", 0), EventInfo("E_B", 1), EventInfo("E_C", 2)]
    assert evi.event_id("E_C") == 2
    assert EventInfo("E_A", 0).to_mi() == {"name": "E_A", "id": 0}


def test_event_name_limit_is_64_bytes(evi: EventInterface) -> None:
    assert evi.publish_event("E" * MAX_EVENT_NAME) == 0
    assert evi.publish_event("é" * 32) == 1  # 64 bytes of UTF-8
    with pytest.raises(EventNameError, match="65 bytes long: at most 64"):
        evi.publish_event("E" * 65)
    with pytest.raises(EventNameError, match="66 bytes"):
        evi.publish_event("é" * 33)


@pytest.mark.parametrize("bad", ["", "E\x00X", "E\ud800", 42, None])
def test_bad_event_names(evi: EventInterface, bad: Any) -> None:
    with pytest.raises(EventNameError) as info:
        evi.publish_event(bad)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, EventKafkaError)
    assert evi.list_events() == []


def test_unknown_event_everywhere(evi: EventInterface) -> None:
    calls: list[Callable[[], object]] = [
        lambda: evi.subscribe("E_NOPE", "fake:a"),
        lambda: evi.unsubscribe("E_NOPE", "fake:a"),
        lambda: evi.raise_event("E_NOPE"),
        lambda: evi.raise_event_script("E_NOPE"),
        lambda: evi.list_subscribers("E_NOPE"),
        lambda: evi.find_subscriber("E_NOPE", "fake:a"),
        lambda: evi.event_id("E_NOPE"),
        lambda: evi.subscriber_count("E_NOPE"),
    ]
    for call in calls:
        with pytest.raises(UnknownEventError, match="Event not published: 'E_NOPE'") as info:
            call()
        assert isinstance(info.value, LookupError)
        assert isinstance(info.value, EventKafkaError)
        assert info.value.event == "E_NOPE"


# -- subscribing ------------------------------------------------------------------------------


def test_resubscribe_refreshes_never_duplicates(
    evi: EventInterface, fake: FakeTransport, clock: FakeClock
) -> None:
    evi.publish_event("E")
    assert evi.subscribe("E", "fake:a", expire=60) is True
    clock.now += 50
    assert evi.subscribe("E", "fake:a", expire=60) is False
    assert evi.subscriber_count("E") == 1
    [info] = evi.list_subscribers("E")[0].subscribers
    assert (info.expire, info.ttl, info.subscribed_at) == (60, 60, clock.now)
    # The duplicate parsed for the refresh was closed; the live one was not.
    assert [d.closed for d in fake.parsed] == [0, 1]
    assert evi.raise_event("E") == 1
    assert len(fake.sent) == 1


def test_refresh_without_expire_keeps_previous_expire(
    evi: EventInterface, clock: FakeClock
) -> None:
    # OpenSIPS: a socket without EVI_EXPIRE refreshes the time but keeps the old expiry.
    evi.publish_event("E")
    evi.subscribe("E", "fake:a", expire=60)
    clock.now += 30
    evi.subscribe("E", "fake:a")
    info = evi.find_subscriber("E", "fake:a")
    assert info is not None and (info.expire, info.ttl) == (60, 60)
    evi.subscribe("E", "fake:a", expire=10)
    info = evi.find_subscriber("E", "fake:a")
    assert info is not None and (info.expire, info.ttl) == (10, 10)


def test_expire_zero_unsubscribes(evi: EventInterface, fake: FakeTransport) -> None:
    evi.publish_event("E")
    evi.subscribe("E", "fake:a")
    evi.subscribe("E", "fake:b", expire=3600)
    assert evi.subscribe("E", "fake:a", expire=0) is False
    assert names(evi, "E") == ["fake:b"]
    assert fake.parsed[0].closed == 1  # the subscriber's destination
    assert fake.parsed[2].closed == 1  # the one parsed for the request
    assert evi.subscribe("E", "fake:zzz", expire=0) is False  # nothing to remove: no-op
    assert names(evi, "E") == ["fake:b"]
    assert evi.raise_event("E") == 1


def test_unsubscribe(evi: EventInterface, fake: FakeTransport) -> None:
    evi.publish_event("E")
    evi.subscribe("E", "fake:a")
    assert evi.unsubscribe("E", "fake:a") is True
    assert evi.unsubscribe("E", "fake:a") is False
    assert evi.raise_event("E") == 0
    assert fake.sent == []


def test_subscribers_are_listed_newest_first(evi: EventInterface) -> None:
    evi.publish_event("E")
    for n in "abc":
        evi.subscribe("E", f"fake:{n}")
    evi.subscribe("E", "fake:a")  # a refresh does not move it
    assert names(evi, "E") == ["fake:c", "fake:b", "fake:a"]


def test_raise_sends_newest_first(evi: EventInterface, fake: FakeTransport) -> None:
    evi.publish_event("E")
    for n in "abc":
        evi.subscribe("E", f"fake:{n}")
    assert evi.raise_event("E") == 3
    assert [s[0] for s in fake.sent] == ["c", "b", "a"]


def test_same_socket_on_two_events_are_two_subscribers(evi: EventInterface) -> None:
    evi.publish_event("E1")
    evi.publish_event("E2")
    assert evi.subscribe("E1", "fake:a") and evi.subscribe("E2", "fake:a")
    assert evi.raise_event("E1") == 1 and evi.raise_event("E2") == 1


@pytest.mark.parametrize("bad", [-1, 1.5, True, "60"])
def test_bad_expire(evi: EventInterface, bad: Any) -> None:
    evi.publish_event("E")
    with pytest.raises(ValueError, match="expire must be None or an int >= 0"):
        evi.subscribe("E", "fake:a", expire=bad)


@pytest.mark.parametrize(
    ("socket", "message"),
    [
        ("fake", "missing transport: expected <transport>:<address>"),
        (":x", "empty transport name"),
        ("nope:x", "unknown transport 'nope'"),
        ("Fake:x", "unknown transport 'Fake'"),
        ("Kafka:h:9092/t", "transport names are case-sensitive: write 'kafka'"),
        ("fake:", "invalid fake socket: empty"),
    ],
)
def test_bad_sockets(evi: EventInterface, socket: str, message: str) -> None:
    evi.publish_event("E")
    with pytest.raises(SocketError, match=message) as info:
        evi.subscribe("E", socket)
    assert isinstance(info.value, ValueError)


def test_bad_socket_error_hides_properties(evi: EventInterface) -> None:
    evi.publish_event("E")
    with pytest.raises(SocketError) as info:
        evi.subscribe("E", "KAFKA:h:9092/t?g.sasl.password=hunter2")
    assert "hunter2" not in str(info.value)
    assert "KAFKA:h:9092/t?..." in str(info.value)


# -- expiry -----------------------------------------------------------------------------------


def test_expiry_is_strict_and_lazy_on_raise(
    evi: EventInterface, fake: FakeTransport, clock: FakeClock
) -> None:
    evi.publish_event("E")
    evi.subscribe("E", "fake:short", expire=10)
    evi.subscribe("E", "fake:long", expire=100)
    evi.subscribe("E", "fake:never")
    clock.now += 10  # subscription_time + expire == now: not expired yet (strict <)
    assert evi.raise_event("E") == 3
    clock.now += 0.001
    fake.sent.clear()
    assert evi.subscriber_count("E") == 3  # nothing removed until someone looks
    assert evi.raise_event("E") == 2
    assert [s[0] for s in fake.sent] == ["never", "long"]
    assert fake.closed == ["short"]
    assert evi.subscriber_count("E") == 2


def test_expiry_lazy_on_listing(evi: EventInterface, fake: FakeTransport, clock: FakeClock) -> None:
    evi.publish_event("E1")
    evi.publish_event("E2")
    evi.subscribe("E1", "fake:a", expire=5)
    evi.subscribe("E2", "fake:b", expire=5)
    clock.now += 6
    assert evi.list_subscribers() == []  # events without live subscribers are not listed
    assert sorted(fake.closed) == ["a", "b"]


def test_expiry_lazy_on_find(evi: EventInterface, clock: FakeClock) -> None:
    evi.publish_event("E")
    evi.subscribe("E", "fake:a", expire=5)
    clock.now += 5
    info = evi.find_subscriber("E", "fake:a")
    assert info == SubscriberInfo("fake:a", 5, None, True, clock.now - 5)
    assert info.to_mi() == {"socket": "fake:a", "expire": 5, "ttl": "expired"}
    clock.now += 0.5
    assert evi.find_subscriber("E", "fake:a") is None


def test_expiry_timer_removes_without_raise_or_listing(
    clock: FakeClock, fake: FakeTransport
) -> None:
    with EventInterface(transports=[fake], clock=clock, expiry_interval=0.01) as evi:
        evi.publish_event("E")
        evi.subscribe("E", "fake:never")
        assert evi._timer is None  # lazily started: nothing expires yet
        evi.subscribe("E", "fake:a", expire=30)
        timer = evi._timer
        assert timer is not None and timer.daemon and timer.is_alive()
        reads = clock.reads
        wait_until(lambda: clock.reads >= reads + 3, 5, "three sweeps of the expiry timer")
        assert evi.subscriber_count("E") == 2
        clock.now += 31
        assert wait_until(lambda: evi.subscriber_count("E") == 1)
        assert fake.closed == ["a"]
    assert not timer.is_alive()  # close() stopped it


def test_timer_thread_does_not_keep_the_interface_alive(
    clock: FakeClock, fake: FakeTransport
) -> None:
    evi = EventInterface(transports=[fake], clock=clock, expiry_interval=0.01)
    evi.publish_event("E")
    evi.subscribe("E", "fake:a", expire=30)
    timer = evi._timer
    assert timer is not None
    del evi
    assert wait_until(lambda: not timer.is_alive())


def test_purge_expired(evi: EventInterface, clock: FakeClock) -> None:
    evi.publish_event("E")
    evi.subscribe("E", "fake:a", expire=1)
    evi.subscribe("E", "fake:b", expire=2)
    assert evi.purge_expired() == 0
    clock.now += 1.5
    assert evi.purge_expired() == 1
    assert names(evi, "E") == ["fake:b"]


# -- listing shapes ---------------------------------------------------------------------------


def test_listing_shapes(evi: EventInterface, clock: FakeClock) -> None:
    evi.publish_event("E_EMPTY")
    evi.publish_event("E")
    evi.subscribe("E", "fake:never")
    evi.subscribe("E", "fake:exp", expire=3600)
    clock.now += 100.25
    assert [e.to_mi() for e in evi.list_subscribers()] == [
        {
            "name": "E",
            "id": 1,
            "Subscribers": [
                {"socket": "fake:exp", "expire": 3600, "ttl": 3500},  # 3499.75 rounds up
                {"socket": "fake:never", "expire": "never"},
            ],
        }
    ]
    [empty] = evi.list_subscribers("E_EMPTY")
    assert empty.to_mi() == {"name": "E_EMPTY", "id": 0, "Subscribers": []}
    info = evi.find_subscriber("E", "fake:never")
    assert info is not None
    assert (info.expire, info.ttl, info.expired) == (None, None, False)
    assert evi.find_subscriber("E", "fake:other") is None


# -- raising ----------------------------------------------------------------------------------


def test_raise_payload_and_count(evi: EventInterface, fake: FakeTransport) -> None:
    evi.publish_event("E_PIKE_BLOCKED")
    assert evi.raise_event("E_PIKE_BLOCKED", {"ip": "1.2.3.4"}) == 0  # nobody subscribed
    evi.subscribe("E_PIKE_BLOCKED", "fake:a")
    evi.subscribe("E_PIKE_BLOCKED", "fake:b")
    assert evi.raise_event("E_PIKE_BLOCKED", {"ip": "192.168.2.11"}) == 2
    expected = b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":{"ip":"192.168.2.11"}}'
    assert [(p, e, k) for _, p, e, k in fake.sent] == [(expected, "E_PIKE_BLOCKED", None)] * 2
    assert fake.sent[0][1] is fake.sent[1][1]  # built once per raise
    s = evi.stats()["E_PIKE_BLOCKED"]
    assert (s.id, s.subscribers, s.raised, s.accepted, s.failed) == (0, 2, 2, 2, 0)


def test_key_callid_from_sip_message(evi: EventInterface, fake: FakeTransport) -> None:
    evi.publish_event("E")
    evi.subscribe("E", "fake:plain")
    evi.subscribe("E", "fake:k?callid")
    evi.raise_event("E", [1], sip_msg=INVITE)
    evi.raise_event("E", [2], sip_msg=INVITE.encode())
    evi.raise_event("E", [3], sip_msg=CallId("given@host"))
    evi.raise_event("E", [4])  # no SIP message, no key
    evi.raise_event("E", [5], sip_msg="SIP/2.0 200 OK\r\nTo: <sip:b@h>\r\n\r\n")  # no Call-ID
    keys = [(name, key) for name, _, _, key in fake.sent]
    cid = b"a84b4c76e66710@pc33.atlanta.com"
    assert keys == [
        ("k", cid), ("plain", None),
        ("k", cid), ("plain", None),
        ("k", b"given@host"), ("plain", None),
        ("k", None), ("plain", None),
        ("k", None), ("plain", None),
    ]  # fmt: skip


def test_malformed_sip_message_raises_before_sending(
    evi: EventInterface, fake: FakeTransport
) -> None:
    evi.publish_event("E")
    evi.subscribe("E", "fake:plain")
    # Nobody needs the Call-ID: the message is not even looked at.
    assert evi.raise_event("E", sip_msg="garbage") == 1
    evi.subscribe("E", "fake:k?callid")
    fake.sent.clear()
    with pytest.raises(SipMessageError) as info:
        evi.raise_event("E", sip_msg="garbage")
    assert isinstance(info.value, ValueError)
    with pytest.raises(SipMessageError):
        evi.raise_event_script("E", sip_msg=b"\r\n\r\n")
    assert fake.sent == []
    assert evi.stats()["E"].raised == 1


def test_bad_params_raise_before_sending(evi: EventInterface, fake: FakeTransport) -> None:
    evi.publish_event("E")
    evi.subscribe("E", "fake:a")
    with pytest.raises(TypeError):
        evi.raise_event("E", {"x": 1.5})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        evi.raise_event("E", [2**40])
    assert fake.sent == []


def test_failures_are_counted_and_script_result(evi: EventInterface, fake: FakeTransport) -> None:
    evi.publish_event("E")
    assert evi.raise_event_script("E") == 1  # nobody subscribed: OpenSIPS says 1
    evi.subscribe("E", "fake:ok")
    assert evi.raise_event_script("E") == 1
    evi.subscribe("E", "fake:no?fail")
    evi.subscribe("E", "fake:bug?raise")
    assert evi.raise_event("E") == 1
    assert evi.raise_event_script("E") == -1
    s = evi.stats()["E"]
    assert (s.raised, s.accepted, s.failed, s.subscribers) == (4, 3, 4, 3)
    # The raising subscriber cost nobody else the event.
    assert [n for n, *_ in fake.sent] == ["ok", "no", "ok", "no", "ok"]


def test_raise_uses_event_name_in_payload(evi: EventInterface, fake: FakeTransport) -> None:
    evi.publish_event("E_MY_EVENT")
    evi.subscribe("E_MY_EVENT", "fake:a")
    evi.raise_event("E_MY_EVENT", [3, "5", -7, 0])
    assert fake.sent[0][1] == build_payload("E_MY_EVENT", [3, "5", -7, 0])


# -- life cycle -------------------------------------------------------------------------------


def test_close_closes_subscribers_and_transports(clock: FakeClock, fake: FakeTransport) -> None:
    evi = EventInterface(transports=[fake], clock=clock)
    evi.publish_event("E")
    evi.subscribe("E", "fake:a")
    evi.subscribe("E", "fake:b", expire=10)
    evi.close()
    assert sorted(fake.closed) == ["a", "b"]
    assert fake.transport_closed == 1
    assert evi.raise_event("E") == 0
    assert evi.list_events() == [EventInfo("E", 0)]
    with pytest.raises(RuntimeError, match="closed"):
        evi.subscribe("E", "fake:c")
    assert evi.transport_stats() == {"fake": {"sent": 0}}
    evi.close()  # idempotent
    assert fake.transport_closed == 1


def test_close_closes_transports_before_destinations(fake: FakeTransport) -> None:
    order: list[str] = []
    fake.close = lambda: order.append("transport")  # type: ignore[method-assign]
    evi = EventInterface(transports=[fake])
    evi.publish_event("E")
    evi.subscribe("E", "fake:a")
    fake.parsed[0].close = lambda: order.append("destination")  # type: ignore[method-assign]
    evi.close()
    assert order == ["transport", "destination"]


def test_transports_are_chosen_per_instance(clock: FakeClock) -> None:
    made: list[TransportContext] = []
    fake = FakeTransport()
    fake.scheme = "fake2"

    def factory(ctx: TransportContext) -> Transport:
        made.append(ctx)
        return fake

    with EventInterface(clock=clock) as evi, EventInterface(clock=clock) as other:
        evi.register_transport("fake2", factory)
        assert "fake2" in evi.transport_schemes()
        with pytest.raises(ValueError, match="already registered"):
            evi.register_transport("fake2", factory)
        evi.publish_event("E")
        evi.subscribe("E", "fake2:x")
        evi.subscribe("E", "fake2:y")
        assert evi.raise_event("E") == 2
        # Another instance knows only the built-ins: nothing is process-wide.
        assert other.transport_schemes() == sorted(BUILTIN_TRANSPORTS) == ["kafka", "tcp", "udp"]
        other.publish_event("E")
        with pytest.raises(SocketError, match="unknown transport 'fake2'"):
            other.subscribe("E", "fake2:x")
    assert len(made) == 1 and made[0].pool is None  # one instance per interface
    assert fake.transport_closed == 1
    with EventInterface(clock=clock, factories={"fake2": factory}) as third:
        assert "fake2" in third.transport_schemes()


@pytest.mark.parametrize("bad", ["", "a:b", 3])
def test_register_transport_rejects_bad_schemes(bad: Any) -> None:
    with EventInterface() as evi, pytest.raises(ValueError, match="non-empty str without ':'"):
        evi.register_transport(bad, lambda ctx: FakeTransport())


def test_concurrent_subscribe_and_raise(evi: EventInterface, fake: FakeTransport) -> None:
    evi.publish_event("E")
    errors: list[BaseException] = []

    def churn(i: int) -> None:
        try:
            for j in range(200):
                evi.subscribe("E", f"fake:{i}-{j % 5}")
                evi.raise_event("E", {"j": j})
                if j % 3 == 0:
                    evi.unsubscribe("E", f"fake:{i}-{j % 5}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    subs = evi.list_subscribers("E")[0].subscribers
    assert len({s.socket for s in subs}) == len(subs) <= 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_a_fresh_timer(clock: FakeClock, fake: FakeTransport) -> None:
    evi = EventInterface(transports=[fake], clock=clock, expiry_interval=0.01)
    try:
        evi.publish_event("E")
        evi.subscribe("E", "fake:a", expire=30)
        evi.subscribe("E", "fake:b", expire=60)
        parent_timer = evi._timer
        assert parent_timer is not None
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                ok = evi._timer is None
                clock.now += 31
                ok = ok and evi.raise_event("E") == 1  # lazy removal still works
                ok = ok and evi._timer is not None and evi._timer is not parent_timer
                clock.now += 30
                ok = ok and wait_until(lambda: evi.subscriber_count("E") == 0, 5)
                code = 0 if ok else 1
            except BaseException:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert evi._timer is parent_timer and parent_timer.is_alive()
        assert evi.subscriber_count("E") == 2
    finally:
        evi.close()
