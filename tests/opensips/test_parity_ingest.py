"""Ingest parity: OpenSIPS's own udp: (event_datagram) and tcp: (event_stream) subscribers
point at ``event-kafka serve``'s ingest, which forwards to Kafka; every forwarded record must be
exactly what OpenSIPS's own ``kafka:`` subscriber wrote for the same event.
"""

from __future__ import annotations

import socket

import pytest

from event_kafka.devkafka import Record, create_topic
from tests.opensips.osbed import INGEST_CASES, IngestCase, Pair, by_method, read_topic, unique

pytestmark = pytest.mark.opensips


@pytest.fixture(scope="module")
def forwarded(pair: Pair) -> tuple[dict[str, list[Record]], dict[str, list[Record]]]:
    kafka = f"kafka:{pair.bootstrap}/{pair.topics['os_ingest']}"
    for c in INGEST_CASES:
        for event, dest in (
            (c.udp_event, f"udp:127.0.0.1:{pair.udp_port}"),
            (c.tcp_event, f"tcp:127.0.0.1:{pair.tcp_port}"),
        ):
            assert pair.os.ok("event_subscribe", [event, kafka]) == "OK"
            assert pair.os.ok("event_subscribe", [event, dest]) == "OK"
    for c in INGEST_CASES:
        for event in (c.udp_event, c.tcp_event):
            reply = pair.os.call_raw(c.body(event))
            assert reply.get("result") == "OK", (c.id, reply)
    n = 2 * len(INGEST_CASES)
    own = read_topic(pair.bootstrap, pair.topics["os_ingest"], n)
    via_ingest = read_topic(pair.bootstrap, pair.topics["ingest"], n)
    return by_method(own), by_method(via_ingest)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("case", INGEST_CASES, ids=[c.id for c in INGEST_CASES])
def test_forwarded_record_is_what_opensips_wrote(
    forwarded: tuple[dict[str, list[Record]], dict[str, list[Record]]],
    case: IngestCase,
    transport: str,
) -> None:
    own, via_ingest = forwarded
    event = case.udp_event if transport == "udp" else case.tcp_event
    (mine,) = own[event]
    (theirs,) = via_ingest[event]
    assert mine.key is None and theirs.key is None
    assert mine.headers == theirs.headers == []  # [events] event_header = false
    assert theirs.value == mine.value


def test_empty_params_and_raw_bytes_reach_kafka_as_sent(pair: Pair) -> None:
    """What the cases above cannot raise on OpenSIPS safely (``"params":{}`` from MI is
    undefined behaviour there, U3): serve's ingest still writes exactly the bytes it read,
    over udp and tcp, an empty object and bytes that are not UTF-8 included."""
    topic = unique("ingest-raw")
    create_topic(pair.bootstrap, topic, 1)
    sent = {}
    for event in ("E_MI5", "E_MI6"):  # published on serve, used by no other test
        assert pair.ek.ok("event_subscribe", [event, f"kafka:{pair.bootstrap}/{topic}"]) == "OK"
        head = b'{"jsonrpc":"2.0","method":"' + event.encode() + b'","params":'
        sent[event] = [head + b"{}}", head + b'{"s":"a\xff\xfeb\xc3(","e":{}}}']
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for raw in sent["E_MI5"]:
            udp.sendto(raw, ("127.0.0.1", pair.udp_port))
    with socket.create_connection(("127.0.0.1", pair.tcp_port), timeout=10) as tcp:
        tcp.sendall(b"".join(sent["E_MI6"]))  # back to back, as event_stream writes them
        records = read_topic(pair.bootstrap, topic, 4)
    assert sorted(r.value or b"" for r in records) == sorted(sent["E_MI5"] + sent["E_MI6"])
    assert all(r.key is None and r.headers == [] for r in records)
