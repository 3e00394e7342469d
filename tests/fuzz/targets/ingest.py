"""Target (d): ingest (notification decoding, UDP datagrams, TCP streams) and generators."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterable
from typing import Any

import orjson

from event_kafka.jsonstream import StreamError, StreamSplitter
from event_kafka.payload import build_payload
from event_kafka.service.ingest import (
    IngestError,
    RaiseOutcome,
    TcpIngestServer,
    UdpIngestServer,
    parse_notification,
)
from event_kafka.service.ingest.tcp import _TcpProtocol

from .mi import (
    SURROGATE_STRINGS,
    Lit,
    Obj,
    _huge,
    _jdump,
    rjson,
)
from .oracles import (
    FuzzFailure,
    _check,
    message_ok,
)
from .sockets import (
    _free_text,
)

# --------------------------------------------------------------------------------------------
# (d) ingest: notification decoding, UDP datagrams, TCP streams


def notification_target(raw: bytes, event_param: str | None = None) -> str:
    try:
        note = parse_notification(raw, event_param=event_param)
    except IngestError as exc:
        message_ok(str(exc), "ingest")
        _check(exc.code in (-32700, -32600) and exc.message, "ingest: JSON-RPC code/message")
        return f"rejected {exc.code}"
    except Exception as exc:
        raise FuzzFailure(f"ingest: {type(exc).__name__}: {exc!s:.200}") from exc
    _check(isinstance(note.event, str) and note.event, "ingest: empty event")
    _check(len(note.event.encode()) <= 64, "ingest: event name too long")
    # Whatever is accepted is forwarded: as sent, unless an id or event_param was taken out.
    _check(isinstance(note.payload, bytes) and note.payload, "ingest: no payload")
    if event_param is None and not note.has_id:
        _check(note.payload == raw, "ingest: payload differs from what was sent")
    try:  # tcp: with /method or reliable mode rebuild it; a lone \uD800 escape cannot be
        build_payload(note.event, note.params, surrogateescape=True)
    except ValueError:
        pass  # refused by that subscriber (counted), not by ingest
    except Exception as exc:
        raise FuzzFailure(f"ingest: accepted but not rebuildable: {exc!s:.200}") from exc
    if note.has_id:
        try:
            orjson.dumps({"jsonrpc": "2.0", "result": "OK", "id": note.id})
        except Exception as exc:
            raise FuzzFailure(f"ingest: the reply to id {note.id!r:.40} fails: {exc}") from exc
    return "accepted"


def _accept_all(note: Any, listener: str) -> RaiseOutcome:
    return RaiseOutcome() if note.event != "E_REFUSED" else RaiseOutcome((404, "Event not"))


def udp_target(raw: bytes) -> str:
    """One datagram through the UDP listener's handler, as its reader does (no socket)."""
    server = UdpIngestServer(_accept_all, "127.0.0.1", 0)
    try:
        parse_notification(raw)
        bad = False
    except IngestError:
        bad = True
    except Exception:
        bad = False  # a bug, reported by handle() below
    try:
        server.ingest.handle(raw, "127.0.0.1:5060")
    except Exception as exc:
        # The reader thread survives it, but the datagram is neither counted as malformed
        # nor explained: a traceback instead of a clear rejection.
        raise FuzzFailure(f"udp: {type(exc).__name__} out of handle(): {exc!s:.200}") from exc
    c = server.counters
    _check(c.received == 1, "udp: received counter")
    _check(c.malformed == int(bad), "udp: malformed counter")
    _check(c.raised + c.refused + c.malformed == 1, "udp: counters do not add up")
    return "malformed" if bad else "raised"


class FakeTransport(asyncio.Transport):
    """Just enough of an asyncio transport for ``_TcpProtocol``."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return 0  # the peer reads everything

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def _predict_stream(data: bytes, max_size: int) -> tuple[int, int, int, bool, int]:
    """(notifications, malformed, replies, closed, bytes of a notification cut short by the
    end of the stream) the listener must count for ``data``."""
    splitter = StreamSplitter(max_size)
    failed = False
    try:
        objects = splitter.feed(data)
    except StreamError as exc:
        objects, failed = exc.objects, True
    malformed = replies = 0
    for obj in objects:
        try:
            note = parse_notification(obj)
        except IngestError as exc:
            malformed += 1
            replies += exc.id is not None
        else:
            replies += note.has_id
    pending = 0 if failed else splitter.pending
    return len(objects) + failed, malformed + failed, replies, failed, pending


def stream_target(data: bytes, cuts: Iterable[int] = (), max_size: int = 4096) -> str:
    """A TCP stream cut into segments at ``cuts``, through the TCP listener's protocol."""
    server = TcpIngestServer(_accept_all, "127.0.0.1", 0, max_buffer=max_size)
    proto = _TcpProtocol(server)
    transport = FakeTransport()
    proto.connection_made(transport)
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    try:
        for a, b in itertools.pairwise(points):
            proto.data_received(data[a:b])
            if transport.is_closing():
                break
        proto.connection_lost(None)
    except Exception as exc:
        raise FuzzFailure(f"tcp: {type(exc).__name__} out of the protocol: {exc!s:.200}") from exc
    c = server.counters
    _check(c.connections == 0 and not server.connections, "tcp: connection not released")
    _check(c.malformed <= c.received, "tcp: more malformed than received")
    _check(c.raised + c.refused + c.malformed == c.received, "tcp: counters do not add up")
    _check(transport.is_closing() == bool(c.streams_closed_on_error), "tcp: close vs counter")
    # Replies: concatenated JSON-RPC responses, one per notification with an id.
    try:
        replies = StreamSplitter(1 << 30).feed(bytes(transport.written))
    except StreamError as exc:
        raise FuzzFailure(f"tcp: replies do not split: {exc}") from exc
    _check(len(replies) == c.replies, "tcp: reply count")
    for reply in replies:
        obj = orjson.loads(reply)
        _check(obj.get("jsonrpc") == "2.0" and ("result" in obj) != ("error" in obj), "reply")
    if len(data) <= max_size:  # no size limit can strike: the outcome is cut-independent
        *expected, pending = _predict_stream(data, max_size)
        got = [c.received, c.malformed, c.replies, transport.is_closing()]
        # A notification cut short by the end of the stream counts as one malformed input.
        if pending:
            expected = [expected[0] + 1, expected[1] + 1, *expected[2:]]
        _check(got == expected, f"tcp: counted {got}, expected {expected}")
    return "closed" if transport.is_closing() else "open"


_BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"]
_EVENTS = ["E_GOOD", "E_REFUSED", "E_X", "", "E" * 65, "é", "E\0X", "E Y", Lit('"E_\\ud800"')]


def gen_notification(r: random.Random) -> bytes:
    """A JSON-RPC notification as OpenSIPS sends it, or one broken in a way it never would."""
    pairs: list[tuple[str, Any]] = []
    if r.random() < 0.95:
        pairs.append(("jsonrpc", "2.0" if r.random() < 0.93 else rjson(r)))
    method: Any = r.choice(_EVENTS)
    if r.random() < 0.05:
        method = rjson(r)
    if r.random() < 0.95:
        pairs.append(("method", method))
    roll = r.random()
    if roll < 0.4:
        named = [(_free_text(r, 6), rjson(r)) for _ in range(r.randint(0, 5))]
        pairs.append(("params", Obj(named)))
    elif roll < 0.7:
        pairs.append(("params", [rjson(r) for _ in range(r.randint(0, 5))]))
    elif roll < 0.75:
        pairs.append(("params", rjson(r)))
    if r.random() < 0.3:
        ids = [1, 2**31, "x", None, 1.5, True, [1], 2**70, SURROGATE_STRINGS[3]]
        pairs.append(("id", r.choice(ids)))
    if r.random() < 0.04:
        pairs.append((r.choice(["result", "error", "method", "x"]), rjson(r)))
    if r.random() < 0.1:
        r.shuffle(pairs)
    raw = _jdump(Obj(pairs)).encode("utf-8", "surrogateescape")
    roll = r.random()
    if roll < 0.05:  # deep nesting, beyond any limit (a clean "nested too deep")
        # 500 and 900: what the decoder takes but a recursive encoder cannot print again.
        n = r.choice([65, 100, 500, 900, 5000, 100_000])
        deep = b"[" * n + b"]" * n * r.randint(0, 1)
        if r.random() < 0.5:  # in a param (an extra member is refused before it is read)
            raw = b'{"jsonrpc":"2.0","method":"E_GOOD","params":{"p":' + deep + b"}}"
        else:
            raw = raw[:-1] + b',"x":' + deep + b"}"
    elif roll < 0.08:
        raw = raw[:-1] + b',"x":"' + _huge(r).encode() + b'"}'
    elif roll < 0.12:
        at = r.randrange(len(raw) + 1)
        raw = raw[:at] + r.choice(_BAD_UTF8) + raw[at:]
    return raw


def gen_stream(r: random.Random) -> tuple[bytes, list[int]]:
    """A TCP stream (notifications back to back, sometimes broken) and cut points."""
    units = []
    for _ in range(r.randint(1, 6)):
        roll = r.random()
        if roll < 0.7:
            units.append(gen_notification(r))
        elif roll < 0.8:
            note = gen_notification(r)
            units.append(note[: r.randrange(len(note) + 1)])  # truncated
        elif roll < 0.85:
            units.append(r.choice([b"x", b"]", b"}", b"\x00", b"null", b"[1]", b"\xff"]))
        elif roll < 0.9:
            n = r.choice([63, 64, 65, 1000])
            units.append(b'{"a":' + b"[" * n + b"]" * n + b"}")
        else:
            units.append(b'{"jsonrpc":"2.0","method":"E_GOOD","params":["' + b"a" * 5000 + b'"]}')
    data = r.choice([b"", b" ", b"\r\n", b"\t"]).join(units)
    cuts = [r.randrange(len(data) + 1) for _ in range(r.randint(0, 8))]
    if r.random() < 0.05:
        cuts = list(range(len(data)))  # byte by byte
    return data, cuts
