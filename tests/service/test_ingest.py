"""Ingest: the stream splitter, notification decoding, and the UDP/TCP listeners."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from event_kafka.jsonstream import StreamError, StreamSplitter
from event_kafka.payload import INT_MAX, INT_MIN, build_payload, build_payload_with_id
from event_kafka.service.ingest import (
    IngestError,
    Notification,
    RaiseOutcome,
    TcpIngestServer,
    UdpIngestServer,
    parse_notification,
)
from event_kafka.service.ingest.notification import _parse_canonical, _parse_exact
from tests.support import await_until

# The §5.2 examples: what a real OpenSIPS writes.
OPENSIPS = [
    b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":{"ip":"192.168.2.11"}}',
    b'{"jsonrpc":"2.0","method":"E_NOPARAMS"}',
    b'{"jsonrpc":"2.0","method":"E_MY_EVENT","params":[3,"5",-7,0]}',
    '{"jsonrpc":"2.0","method":"E_X","params":{"s":"q\\"b\\\\s/t\\tn\\nr\\rx\\u0001y\x7fé",'
    '"n":2147483647,"m":-2147483648,"nul":null,"dup":"a","dup":"b"}}'.encode(),
    b'{"jsonrpc":"2.0","method":"E_Y","params":{"k":"a","":"unnamed"}}',
]


def rebuilt(raw: bytes) -> bytes:
    n = parse_notification(raw)
    return build_payload(n.event, n.params)


# -- splitter -----------------------------------------------------------------------------------


def test_split_concatenated_objects() -> None:
    s = StreamSplitter()
    assert s.feed(b"".join(OPENSIPS)) == OPENSIPS
    assert s.pending == 0


def test_split_at_every_position() -> None:
    stream = b" \r\n".join(OPENSIPS) + b"\n"
    for cut in range(len(stream) + 1):
        s = StreamSplitter()
        assert s.feed(stream[:cut]) + s.feed(stream[cut:]) == OPENSIPS, cut


def test_split_byte_by_byte_with_tricky_strings() -> None:
    objs = [b'{"a":"}{\\"\\\\"}', b'{"b":["]",{"c":"\\\\"}]}', '{"é":"ü€😀"}'.encode()]
    s = StreamSplitter()
    out: list[bytes] = []
    for b in b"".join(objs):
        out += s.feed(bytes([b]))
    assert out == objs


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_split_anywhere(cuts: list[int]) -> None:
    stream = b"".join(OPENSIPS)
    points = sorted({min(c, len(stream)) for c in cuts})
    s = StreamSplitter()
    out: list[bytes] = []
    prev = 0
    for p in [*points, len(stream)]:
        out += s.feed(stream[prev:p])
        prev = p
    assert out == OPENSIPS


def test_split_limits() -> None:
    with pytest.raises(StreamError, match="larger than 64 bytes"):
        StreamSplitter(max_size=64).feed(b'{"a":"' + b"x" * 100)
    s = StreamSplitter(max_size=64)
    with pytest.raises(StreamError, match="larger than"):
        for _ in range(20):
            s.feed(b'{"a":"xxxxxxxx')
    with pytest.raises(StreamError, match="expected '\\{'"):
        StreamSplitter().feed(b'{"a":1} [1]')
    with pytest.raises(StreamError, match="nested deeper"):
        StreamSplitter(max_depth=4).feed(b'{"a":[[[[1]]]]}')
    # Malformed but balanced objects are still split (decoding refuses them later).
    assert StreamSplitter().feed(b"{nope}{}") == [b"{nope}", b"{}"]


# -- decoding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", OPENSIPS)
def test_opensips_payloads_are_rebuilt_byte_for_byte(raw: bytes) -> None:
    assert rebuilt(raw) == raw


_value = st.one_of(
    st.none(),
    st.integers(min_value=INT_MIN, max_value=INT_MAX),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
)
_name = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8
)
_event = st.text(
    # What event_name.py allows: printable (letters, marks, numbers, punctuation, symbols).
    st.characters(whitelist_categories=("L", "M", "N", "P", "S")),
    min_size=1,
    max_size=20,
).filter(lambda s: len(s.encode()) <= 64)


@settings(max_examples=500, deadline=None)
@given(
    _event,
    st.one_of(
        st.none(),
        st.lists(_value, max_size=5),
        st.lists(st.tuples(_name, _value), min_size=1, max_size=5),
    ),
    st.integers(min_value=1, max_value=INT_MAX),
)
def test_any_opensips_payload_round_trips(event: str, params: Any, rid: int) -> None:
    raw = build_payload(event, params)
    assert rebuilt(raw) == raw
    with_id = build_payload_with_id(event, params, rid)
    n = parse_notification(with_id)
    assert (n.id, n.has_id) == (rid, True)
    assert build_payload_with_id(n.event, n.params, rid) == with_id


def test_values_opensips_cannot_send_are_kept_as_text() -> None:
    n = parse_notification(
        b'{"jsonrpc":"2.0","method":"E","params":{"f":1.50,"e":2E3,"t":true,"F":false,'
        b'"o":{"x":[1,2.0e3,"a/b"]},"big":3000000000,"neg":-2147483649}}'
    )
    assert n.params == [
        ("f", "1.50"),
        ("e", "2E3"),
        ("t", "true"),
        ("F", "false"),
        ("o", '{"x":[1,2.0e3,"a/b"]}'),
        ("big", "3000000000"),
        ("neg", "-2147483649"),
    ]
    assert parse_notification(b'{"jsonrpc":"2.0","method":"E","params":[]}').params is None
    assert parse_notification(b'{"jsonrpc":"2.0","method":"E","params":{}}').params is None


def test_event_param() -> None:
    def note(raw: bytes) -> tuple[str, Any, bytes | None]:
        n = parse_notification(raw, event_param="event")
        return n.event, n.params, n.payload

    named = b'{"jsonrpc":"2.0","method":"custom","params":{"event":"E_REAL","a":1}}'
    assert note(named) == ("E_REAL", [("a", 1)], build_payload("E_REAL", {"a": 1}))
    positional = b'{"jsonrpc":"2.0","method":"custom","params":["E_REAL","x"]}'
    assert note(positional) == ("E_REAL", ["x"], build_payload("E_REAL", ["x"]))
    only = b'{"jsonrpc":"2.0","method":"custom","params":{"event":"E_REAL"}}'
    assert note(only) == ("E_REAL", None, build_payload("E_REAL"))
    bad = b'{"jsonrpc":"2.0","method":"c","params":{"event":"E_B","u":"\xff"}}'
    assert note(bad) == (
        "E_B",
        [("u", "\udcff")],
        b'{"jsonrpc":"2.0","method":"E_B","params":{"u":"\xff"}}',
    )
    other = b'{"jsonrpc":"2.0","method":"E_M","params":{"a":1}}'
    assert parse_notification(other, event_param="event").event == "E_M"
    with pytest.raises(IngestError, match="event_param"):
        parse_notification(b'{"jsonrpc":"2.0","method":"c","params":[5]}', event_param="event")


@pytest.mark.parametrize(
    ("raw", "why", "rid"),
    [
        (b"\xff{}", "not JSON", None),
        (b'{"jsonrpc":"2.0","method":"E"} x', "extra data", None),
        (b'{"jsonrpc":"2.0",', "not JSON", None),
        (b'{"a":NaN}', '"method" must be', None),
        (b"[1,2]", "not a JSON object but an array", None),
        (b'{"jsonrpc":"2.0","method":"E","id":[1]}', "'id' must be", None),
        (b'{"jsonrpc":"2.0","id":4}', '"method" must be', 4),
        (b'{"jsonrpc":"2.0","method":"","id":"x"}', '"method" must be', "x"),
        (b'{"jsonrpc":"2.0","method":5,"id":5}', '"method" must be', 5),
        (b'{"jsonrpc":"2.0","method":"E\xff","id":6}', "event name is not valid UTF-8", 6),
        (b'{"jsonrpc":"2.0","method":"E","p":' + b"[" * 65 + b"]" * 65 + b"}", "deeper", None),
        (('{"jsonrpc":"2.0","method":"' + "E" * 65 + '"}').encode(), "65 bytes long", None),
        # event_name.py's rule, as the config file applies it (issue 12 item 7)
        (b'{"jsonrpc":"2.0","method":"E_X\\nINJECTED"}', "non-printable character", None),
        (b'{"jsonrpc":"2.0","method":"E X"}', "non-printable character", None),
        (b'{"jsonrpc":"2.0","method":"E\\u0000X"}', "non-printable character", None),
        (b'{"jsonrpc":"2.0","method":"E\\u202eX"}', "non-printable character", None),
        (('{"jsonrpc":"2.0","method":"' + "€" * 22 + '"}').encode(), "66 bytes long", None),
    ],
)
def test_malformed(raw: bytes, why: str, rid: Any) -> None:
    with pytest.raises(IngestError, match=why) as info:
        parse_notification(raw)
    assert info.value.id == rid


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_garbage_is_refused_cleanly(raw: bytes) -> None:
    try:
        n = parse_notification(raw)
    except IngestError:
        return
    assert n.payload == raw  # whatever is accepted is forwarded as sent
    build_payload(n.event, n.params, surrogateescape=True)  # and tcp:/method can rebuild it


# What a real OpenSIPS sends that a re-serialising ingest lost (issue 15): each is forwarded
# byte for byte.
PASS_THROUGH = [
    b'{"jsonrpc":"2.0","method":"E","params":{}}',
    b'{"jsonrpc":"2.0","method":"E","params":[]}',
    b'{"jsonrpc":"2.0","method":"E","params":{"ua":"\xff\xfe\xc3","ok":"\xc3\xa9"}}',
    b'{"jsonrpc":"2.0","method":"E","params":["\xc3\\"}{[",1]}',  # bad byte, then \\ \" } {
    b'{"jsonrpc":"2.0","method":"E","params":{"f":1.50,"big":3000000000,"t":true}}',
    b'{"method":"E","extra":[1,{"x":null}],"params":{"a":"b"}}',
    b' {"jsonrpc":"2.0","method":"E","params":{"tab":"a\tb"}}\n',
]


@pytest.mark.parametrize("raw", PASS_THROUGH)
def test_notifications_pass_through_byte_for_byte(raw: bytes) -> None:
    n = parse_notification(raw)
    assert (n.event, n.payload, n.has_id) == ("E", raw, False)


def _same(fast: Notification, exact: Notification) -> None:
    # The fast path keeps params as orjson decoded them (a dict or a list), the exact one as
    # (name, value) pairs or values: the same params, in the same order.
    fp = list(fast.params.items()) if isinstance(fast.params, dict) else fast.params
    assert (fast.event, fp, fast.payload, fast.id, fast.has_id) == (
        exact.event,
        exact.params,
        exact.payload,
        exact.id,
        exact.has_id,
    )


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
# Boundaries on both sides of C int, and what orjson and the exact decoder may read apart, each
# with the path it must take (True: the fast one).
_EDGES = [
    (b'{"jsonrpc":"2.0","method":"E","params":{"n":2147483647,"m":-2147483648}}', True),
    (b'{"jsonrpc":"2.0","method":"E","params":{"n":2147483648}}', False),
    (b'{"jsonrpc":"2.0","method":"E","params":[-2147483649]}', False),
    (b'{"jsonrpc":"2.0","method":"E","params":{"d":1,"d":2}}', False),
    (b'{"jsonrpc":"2.0","method":"E","params":{"f":1.0,"g":-0}}', False),
    (b'{"jsonrpc":"2.0","method":"E","params":{"t":true,"o":{},"a":[1]}}', False),
    (b'{"method":"E","jsonrpc":"2.0","extra":1,"params":{"a":"\\u00e9"}}', False),
    (b'{"jsonrpc":"2.0","method":"E","params":"not params"}', False),
    (b'{"jsonrpc":"2.0","method":"E","params":{"u":"\\ud800"}}', False),
    (b'{"jsonrpc":"2.0","method":"E","params":{"s":"a","n":null,"i":-7}}', True),
    (b'{"jsonrpc":"2.0","method":"E","params":["x",1,null]}', True),
    (b'{"jsonrpc":"2.0","method":"E","params":{}}', True),
    (b'{"jsonrpc":"2.0","method":"E","params":null}', True),
    (b'{"jsonrpc":"2.0","method":"E"}', True),
]


@pytest.mark.parametrize(("raw", "fast"), _EDGES)
def test_the_fast_path_reads_what_the_exact_path_reads(raw: bytes, fast: bool) -> None:
    note = _parse_canonical(raw)
    assert (note is not None) == fast
    if note is not None:
        _same(note, _parse_exact(raw, None))


@pytest.mark.parametrize("raw", [*OPENSIPS, *PASS_THROUGH])
def test_what_opensips_sends_reads_alike_on_both_paths(raw: bytes) -> None:
    note = _parse_canonical(raw)
    if note is not None:  # the others (duplicates, raw bytes...) are the exact path's alone
        _same(note, _parse_exact(raw, None))


# What the fast path takes: strings, null and C ints, named or positional.
_flat = st.none() | st.integers(min_value=INT_MIN, max_value=INT_MAX) | st.text(max_size=6)


@settings(max_examples=500, deadline=None)
@given(
    st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "method": _event},
        optional={
            "params": st.dictionaries(st.text(max_size=4), _flat, min_size=1)
            | st.lists(_flat, min_size=1)
        },
    )
)
def test_a_flat_notification_takes_the_fast_path_and_reads_alike(obj: dict[str, Any]) -> None:
    raw = orjson.dumps(obj)
    note = _parse_canonical(raw)
    assert note is not None, raw
    _same(note, _parse_exact(raw, None))


@settings(max_examples=500, deadline=None)
@given(
    st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "method": _event},
        optional={"params": st.dictionaries(st.text(max_size=4), _json) | st.lists(_json)},
    )
)
def test_any_notification_reads_alike_on_both_paths(obj: dict[str, Any]) -> None:
    raw = orjson.dumps(obj)
    fast = _parse_canonical(raw)
    try:
        exact = _parse_exact(raw, None)
    except IngestError:
        assert fast is None
        return
    if fast is not None:
        _same(fast, exact)


def test_reliable_mode_id_is_cut_from_the_bytes() -> None:
    raw = b'{"jsonrpc":"2.0","method":"E","params":{"u":"\xff","e":{}}}'
    with_id = b'{"id":42,' + raw[1:]
    n = parse_notification(with_id)
    assert (n.id, n.has_id, n.payload) == (42, True, raw)
    # Not where OpenSIPS writes it: rebuilt from the params (non-UTF-8 bytes kept).
    late = b'{"jsonrpc":"2.0","method":"E","params":{"u":"\xff"},"id":"x"}'
    n = parse_notification(late)
    assert (n.id, n.payload) == ("x", b'{"jsonrpc":"2.0","method":"E","params":{"u":"\xff"}}')


# -- listeners ----------------------------------------------------------------------------------


class Recorder:
    def __init__(self, outcome: RaiseOutcome | None = None) -> None:
        self.seen: list[tuple[Notification, str]] = []
        self.outcome = outcome or RaiseOutcome()

    def __call__(self, note: Notification, listener: str) -> RaiseOutcome:
        self.seen.append((note, listener))
        if note.event == "E_UNKNOWN":
            return RaiseOutcome((404, "Event not registered"))
        return self.outcome


@pytest.mark.asyncio
async def test_udp_listener() -> None:
    rec = Recorder()
    server = UdpIngestServer(rec, "127.0.0.1", 0)
    await server.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for raw in OPENSIPS:
                s.sendto(raw, server.address)
            s.sendto(b"garbage", server.address)
            s.sendto(OPENSIPS[0] + OPENSIPS[1], server.address)  # two in one datagram: invalid
        await await_until(lambda: server.counters.received == len(OPENSIPS) + 2)
        assert [build_payload(n.event, n.params) for n, _ in rec.seen] == OPENSIPS
        assert {listener for _, listener in rec.seen} == {"udp"}
        c = server.counters
        assert (c.raised, c.malformed) == (len(OPENSIPS), 2)
    finally:
        server.close()


@pytest.mark.asyncio
async def test_listeners_forward_non_utf8_and_empty_params_as_sent() -> None:
    """UDP and TCP (objects back to back, split inside the bad bytes) hand on the exact bytes;
    only what has no method is refused and counted."""
    sent = [raw for raw in PASS_THROUGH if raw.startswith(b"{")]
    for kind in ("udp", "tcp"):
        rec = Recorder()
        server: UdpIngestServer | TcpIngestServer
        if kind == "udp":
            server = UdpIngestServer(rec, "127.0.0.1", 0)
            await server.start()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for raw in [*sent, b'{"jsonrpc":"2.0","params":{}}']:
                    s.sendto(raw, server.address)
        else:
            server = TcpIngestServer(rec, "127.0.0.1", 0)
            await server.start()
            _, writer = await asyncio.open_connection(*server.address)
            stream = b"".join(sent) + b'{"jsonrpc":"2.0","params":{}}'
            for i in range(len(stream)):  # one byte per segment: every split point
                writer.write(stream[i : i + 1])
                await writer.drain()
        try:
            await await_until(lambda: server.counters.received == len(sent) + 1)  # noqa: B023
            assert [n.payload for n, _ in rec.seen] == sent, kind
            assert (server.counters.raised, server.counters.malformed) == (len(sent), 1)
        finally:
            if isinstance(server, TcpIngestServer):
                writer.close()
                await server.close()
            else:
                server.close()


async def read_replies(reader: asyncio.StreamReader, n: int) -> list[Any]:
    s = StreamSplitter()
    out: list[Any] = []
    while len(out) < n:
        data = await asyncio.wait_for(reader.read(4096), 5)
        assert data, "connection closed"
        out += [orjson.loads(o) for o in s.feed(data)]
    return out


@pytest.mark.asyncio
async def test_tcp_reliable_mode_split_across_segments() -> None:
    rec = Recorder()
    server = TcpIngestServer(rec, "127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection(*server.address)
        stream = (
            build_payload_with_id("E_A", {"k": "v"}, 1)
            + build_payload("E_B", [1, "x"])  # no id: no reply
            + build_payload_with_id("E_UNKNOWN", None, 2)
            + b'{"jsonrpc":"2.0","method":5,"id":3}'
            + build_payload_with_id("E_C", [("a", None)], 4)
        )
        for i in range(0, len(stream), 7):  # 7-byte segments
            writer.write(stream[i : i + 7])
            await writer.drain()
            await asyncio.sleep(0)  # a loop turn: the server reads each segment on its own
        replies = await read_replies(reader, 4)
        assert replies == [
            {"jsonrpc": "2.0", "result": "OK", "id": 1},
            {"jsonrpc": "2.0", "error": {"code": 404, "message": "Event not registered"}, "id": 2},
            {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": 3},
            {"jsonrpc": "2.0", "result": "OK", "id": 4},
        ]
        assert [n.event for n, _ in rec.seen] == ["E_A", "E_B", "E_UNKNOWN", "E_C"]
        c = server.counters
        assert (c.received, c.raised, c.refused, c.malformed, c.replies) == (5, 3, 1, 1, 4)
        writer.close()
        await writer.wait_closed()
        await await_until(lambda: server.counters.connections == 0)
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_tcp_out_of_sync_stream_is_closed_and_counted() -> None:
    rec = Recorder()
    server = TcpIngestServer(rec, "127.0.0.1", 0, max_buffer=1024)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(OPENSIPS[0] + b"garbage" + OPENSIPS[1])
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        assert len(rec.seen) == 1
        assert server.counters.streams_closed_on_error == 1
        # Too large: closed as well; a new connection works.
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b'{"jsonrpc":"2.0","method":"E","params":["' + b"x" * 2000)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(build_payload_with_id("E_OK", None, 9))
        await writer.drain()
        assert await read_replies(reader, 1) == [{"jsonrpc": "2.0", "result": "OK", "id": 9}]
        writer.close()
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_tcp_connection_limit_and_idle_timeout() -> None:
    server = TcpIngestServer(Recorder(), "127.0.0.1", 0, max_connections=1, idle_timeout=0.3)
    await server.start()
    try:
        r1, w1 = await asyncio.open_connection(*server.address)
        await await_until(lambda: server.counters.connections == 1)
        r2, w2 = await asyncio.open_connection(*server.address)
        assert await asyncio.wait_for(r2.read(), 5) == b""  # refused
        assert server.counters.connections_refused == 1
        assert await asyncio.wait_for(r1.read(), 5) == b""  # idle: closed after 0.3 s
        await await_until(lambda: server.counters.connections == 0)
        w1.close()
        w2.close()
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_tcp_raise_errors_are_answered() -> None:
    server = TcpIngestServer(Recorder(RaiseOutcome((500, "Cannot Raise Event"))), "127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(build_payload_with_id("E", None, 7))
        await writer.drain()
        assert await read_replies(reader, 1) == [
            {"jsonrpc": "2.0", "error": {"code": 500, "message": "Cannot Raise Event"}, "id": 7}
        ]
        writer.close()
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_opensips_stream_client_format() -> None:
    """What the ``opensips`` package's own stream reader (JsonBuffer) parses, we parse too."""
    from opensips.event.json_helper import JsonBuffer

    buf = JsonBuffer()
    stream = b"".join(OPENSIPS)
    buf.push(stream)
    theirs = []
    while (j := buf.pop()) is not None:
        theirs.append(j)
    ours = [parse_notification(o) for o in StreamSplitter().feed(stream)]
    assert [t["method"] for t in theirs] == [n.event for n in ours]


@pytest.mark.asyncio
async def test_tcp_peer_that_never_reads_replies_is_dropped() -> None:
    server = TcpIngestServer(Recorder(), "127.0.0.1", 0, max_buffer=1 << 20)
    await server.start()
    try:
        sock = socket.create_connection(server.address)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        payload = b"".join(build_payload_with_id("E", None, i + 1) for i in range(2000))
        loop = asyncio.get_running_loop()
        for _ in range(400):  # up to 800k replies' worth, never read
            try:
                await loop.sock_sendall(sock, payload)
            except ConnectionError:
                break  # dropped by the server
            if server.counters.streams_closed_on_error:
                break
        await await_until(lambda: server.counters.streams_closed_on_error == 1, timeout=20)
        assert server.counters.malformed == 0
        sock.close()
    finally:
        await server.close()


def test_event_names_in_ingest_logs_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    """An event name is printable and may hold '=': a pasted broker_id definition sent as
    one is logged with its password masked (issue 12 item 8)."""
    from event_kafka import EventKafka
    from event_kafka.service.config import EventsSection
    from event_kafka.service.ingest import parse_notification
    from event_kafka.service.ingest.raiser import EventRaiser

    caplog.set_level("INFO", logger="event_kafka.service")
    ek = EventKafka(flush_timeout=0)
    try:
        events = [EventsSection(), EventsSection(auto_publish=True)]
        for section in events:
            raiser = EventRaiser(lambda: ek.evi, lambda s=section: s)
            note = parse_notification(
                b'{"jsonrpc":"2.0","method":"[k9]h/t?g.sasl.password=hunter2"}'
            )
            raiser(note, "udp")
    finally:
        ek.close(0)
    assert "not published" in caplog.text and "auto-published" in caplog.text
    assert "g.sasl.password=*****" in caplog.text and "hunter2" not in caplog.text
