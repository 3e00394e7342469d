"""``udp:`` transport (event_datagram): grammar, wire format, the ``opensips`` package listener."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from event_kafka.errors import SocketError
from event_kafka.event_interface import EventInterface
from event_kafka.transports.udp import UdpTransport

# -- grammar ----------------------------------------------------------------------------------


@pytest.fixture
def udp() -> Iterator[UdpTransport]:
    t = UdpTransport()
    yield t
    t.close()


@pytest.mark.parametrize(
    ("text", "printed", "family"),
    [
        ("127.0.0.1:8888", "127.0.0.1:8888", socket.AF_INET),
        ("127.0.0.1:1", "127.0.0.1:1", socket.AF_INET),
        ("127.0.0.1:65535", "127.0.0.1:65535", socket.AF_INET),
        ("localhost:9", "localhost:9", socket.AF_INET),
        ("[::1]:9", "[::1]:9", socket.AF_INET6),
    ],
)
def test_parse_and_print(udp: UdpTransport, text: str, printed: str, family: int) -> None:
    d = udp.parse(text)
    assert d.print() == printed
    assert d.addr.family == family
    assert d.needs_callid is False


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("", "no socket specified", 4),
        ("127.0.0.1", "missing port", 13),
        (":9", "empty host", 4),
        ("h:", "missing port", 6),
        ("127.0.0.1:0", "port 0 out of range", 14),
        ("127.0.0.1:65536", "port 65536 out of range", 14),
        ("127.0.0.1:9x", "unexpected 'x' in port", 15),
        ("127.0.0.1:9/m", "unexpected '/' in port", 15),
        ("127.0.0.1: 9", "unexpected ' ' in port", 14),
        ("::1:9", "empty host", 4),
        ("fe80::1:9", "unexpected ':' in port.*IPv6 addresses need brackets", 9),
        ("[::1]", "missing port", 9),
        ("[::1]9", "missing port", 9),
        ("[::1", "missing ']'", 8),
        ("[]:9", "empty host", 5),
        ("no-such-host.invalid:9", "cannot resolve host 'no-such-host.invalid'", 4),
    ],
)
def test_parse_errors(udp: UdpTransport, text: str, message: str, position: int) -> None:
    with pytest.raises(SocketError, match=message) as info:
        udp.parse(text)
    assert info.value.position == position
    assert f"'udp:{text}'" in str(info.value)


def test_match_is_host_text_and_port(udp: UdpTransport) -> None:
    a = udp.parse("127.0.0.1:9")
    assert a == udp.parse("127.0.0.1:9")
    assert hash(a) == hash(udp.parse("127.0.0.1:9"))
    assert a != udp.parse("127.0.0.1:10")
    assert a != udp.parse("localhost:9")  # as OpenSIPS: the host text is compared


# -- wire format ------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))
    r.settimeout(5)
    yield r
    r.close()


@pytest.fixture
def evi() -> Iterator[EventInterface]:
    e = EventInterface(expiry_interval=0)
    e.publish_event("E_PIKE_BLOCKED")
    yield e
    e.close()


def test_one_datagram_per_event(evi: EventInterface, receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    assert evi.subscribe("E_PIKE_BLOCKED", f"udp:127.0.0.1:{port}") is True
    for i in range(3):
        assert evi.raise_event("E_PIKE_BLOCKED", {"ip": f"10.0.0.{i}", "port": 5060}) == 1
    got = [receiver.recv(65535) for _ in range(3)]
    assert got == [
        b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":{"ip":"10.0.0.%d","port":5060}}' % i
        for i in range(3)
    ]
    [entry] = evi.list_subscribers("E_PIKE_BLOCKED")
    assert [s.socket for s in entry.subscribers] == [f"udp:127.0.0.1:{port}"]
    assert evi.transport_stats()["udp"] == {f"udp:127.0.0.1:{port}": {"sent": 3, "errors": 0}}


def test_prebuilt_payload_is_sent_as_is(evi: EventInterface, receiver: socket.socket) -> None:
    """Ingest forwards OpenSIPS's bytes (not UTF-8, empty params object) unchanged."""
    port = receiver.getsockname()[1]
    evi.subscribe("E_PIKE_BLOCKED", f"udp:127.0.0.1:{port}")
    raw = b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":{"ua":"\xff\xc3","p":{}}}'
    assert evi.raise_payload("E_PIKE_BLOCKED", raw) == (1, 1)
    assert receiver.recv(65535) == raw


def test_ipv6_extension(evi: EventInterface) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as r:
        r.bind(("::1", 0))
        r.settimeout(5)
        sock = f"udp:[::1]:{r.getsockname()[1]}"
        evi.subscribe("E_PIKE_BLOCKED", sock)
        assert evi.raise_event("E_PIKE_BLOCKED") == 1
        assert r.recv(65535) == b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED"}'
        assert evi.find_subscriber("E_PIKE_BLOCKED", sock) is not None


def test_send_failure_is_counted_not_raised(evi: EventInterface, receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    evi.subscribe("E_PIKE_BLOCKED", f"udp:127.0.0.1:{port}")
    assert evi.raise_event("E_PIKE_BLOCKED", {"big": "x" * 70_000}) == 0  # EMSGSIZE
    assert evi.raise_event_script("E_PIKE_BLOCKED", {"big": "x" * 70_000}) == -1
    s = evi.stats()["E_PIKE_BLOCKED"]
    assert (s.accepted, s.failed) == (0, 2)
    assert evi.transport_stats()["udp"] == {f"udp:127.0.0.1:{port}": {"sent": 0, "errors": 2}}


def test_stats_count_every_subscriber_of_a_socket(receiver: socket.socket) -> None:
    with EventInterface(expiry_interval=0) as evi:
        evi.publish_event("E1")
        evi.publish_event("E2")
        sock = f"udp:127.0.0.1:{receiver.getsockname()[1]}"
        evi.subscribe("E1", sock)
        evi.subscribe("E2", sock)
        evi.raise_event("E1")
        evi.raise_event("E2")
        assert evi.transport_stats()["udp"] == {sock: {"sent": 2, "errors": 0}}


def test_send_after_transport_close_fails(udp: UdpTransport, receiver: socket.socket) -> None:
    d = udp.parse(f"127.0.0.1:{receiver.getsockname()[1]}")
    assert d.send(b"{}", "E", None, None) is True
    udp.close()
    assert d.send(b"{}", "E", None, None) is False
    assert (d.sent, d.errors) == (1, 1)


def test_senders_share_one_socket(udp: UdpTransport, receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    a, b = udp.parse(f"127.0.0.1:{port}"), udp.parse(f"localhost:{port}")
    a.send(b"1", "E", None, None)
    b.send(b"2", "E", None, None)
    (d1, src1), (d2, src2) = receiver.recvfrom(10), receiver.recvfrom(10)
    assert (d1, d2) == (b"1", b"2") and src1 == src2


# -- the opensips package's event listener ----------------------------------------------------


class EviMI:
    """Stands in for OpenSIPS's MI: ``event_subscribe`` goes to our Event Interface."""

    def __init__(self, evi: EventInterface) -> None:
        self.evi = evi
        self.calls: list[list[Any]] = []

    def execute(self, cmd: str, params: list[Any]) -> str:
        assert cmd == "event_subscribe"
        self.calls.append(params)
        event, sock, expire = params
        self.evi.subscribe(event, sock, expire=int(expire))
        return "OK"


def test_opensips_package_datagram_listener_receives(evi: EventInterface) -> None:
    from opensips.event import OpenSIPSEventHandler

    mi = EviMI(evi)
    handler = OpenSIPSEventHandler(mi=mi, _type="datagram", ip="127.0.0.1", port=0)
    got: list[Any] = []
    arrived = threading.Event()

    def callback(obj: Any) -> None:
        got.append(obj)
        arrived.set()

    event = handler.subscribe("E_PIKE_BLOCKED", callback, expire=120)
    try:
        sock_name = event.socket.sock_name
        assert sock_name.startswith("udp:127.0.0.1:")
        [info] = evi.list_subscribers("E_PIKE_BLOCKED")[0].subscribers
        assert info.to_mi() == {"socket": sock_name, "expire": 120, "ttl": 120}
        assert evi.raise_event("E_PIKE_BLOCKED", {"ip": "192.168.2.11"}) == 1
        assert arrived.wait(5)
        assert got == [
            {"jsonrpc": "2.0", "method": "E_PIKE_BLOCKED", "params": {"ip": "192.168.2.11"}}
        ]
    finally:
        event.unsubscribe()  # MI event_subscribe with expire 0
    assert mi.calls[-1] == ["E_PIKE_BLOCKED", sock_name, 0]
    assert evi.list_subscribers("E_PIKE_BLOCKED")[0].subscribers == ()
