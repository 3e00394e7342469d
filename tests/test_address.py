"""``event_kafka.address``: the one way an address is printed (logs, MI replies, metrics)."""

from __future__ import annotations

import socket

import pytest

from event_kafka.address import bound_address, format_address, format_peer


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [
        ("127.0.0.1", 9092, "127.0.0.1:9092"),
        ("kafka-1.example", 9093, "kafka-1.example:9093"),
        ("::1", 9092, "[::1]:9092"),  # unbracketed, "::1:9092" could not be split back
        ("fe80::1%eth0", 5060, "[fe80::1%eth0]:5060"),
    ],
)
def test_format_address_brackets_ipv6_hosts_only(host: str, port: int, text: str) -> None:
    assert format_address(host, port) == text
    # Splitting at the last ":" gives the port back, brackets or not.
    assert int(text.rsplit(":", 1)[1]) == port


def test_format_peer_takes_what_sockets_return() -> None:
    assert format_peer(("127.0.0.1", 5060)) == "127.0.0.1:5060"
    assert format_peer(("::1", 5060, 0, 0)) == "[::1]:5060"  # AF_INET6's 4-tuple
    assert format_peer("/run/opensips.sock") == "/run/opensips.sock"  # AF_UNIX: the path
    assert format_peer(None) == "None"


def test_bound_address_is_the_real_port_of_a_port_0_listener() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        host, port = bound_address(s)
        assert host == "127.0.0.1" and port == s.getsockname()[1] and port > 0
