"""Ingest: receive a real OpenSIPS's events over ``udp:``/``tcp:`` and raise them here.

An OpenSIPS subscribed with ``udp:HOST:PORT`` (event_datagram) or ``tcp:HOST:PORT``
(event_stream) pointing at this service sends each event as its JSON-RPC notification
(``docs/opensips-event-kafka.md`` §7). Each one is raised as that event in our Event
Interface, so its Kafka subscribers get it. It is a **pass-through**: the record value (and
what ``udp:``/plain ``tcp:`` subscribers receive) is exactly the bytes OpenSIPS sent, whatever
they are — an empty ``"params":{}``, bytes that are not UTF-8 (OpenSIPS copies them raw),
members or numbers OpenSIPS would not write. Only two things are taken out, because
OpenSIPS's own ``kafka:`` socket does not write them either: event_stream's reliable-mode
``"id"`` (cut from the bytes when it is the first member, as OpenSIPS writes it) and the
``event_param`` param (the payload is then rebuilt from the params).

* **UDP**: one notification per datagram.
* **TCP**: JSON objects back to back with no delimiter, split incrementally by
  :class:`StreamSplitter` (a byte scanner that tracks strings and nesting, so a notification
  split anywhere across segments, even inside a UTF-8 sequence, is reassembled). A
  notification with an ``"id"`` (event_stream's ``reliable_mode``) is answered on the same
  connection: ``{"jsonrpc":"2.0","result":"OK","id":N}`` or an error object.

Refused (counted as malformed, logged rate-limited, never fatal): what cannot be framed (not
one JSON object, nested deeper than :data:`MAX_DEPTH`; on TCP a stream that cannot be
re-synchronised: not starting with ``{``, or one notification larger than ``max_buffer``,
which is closed and OpenSIPS reconnects for its next event), no ``"method"`` (a non-empty
UTF-8 string within the event-name limit), and an ``"id"`` that cannot be answered.

Params (:func:`parse_notification`) are decoded too, for the transports that rebuild the
payload (``tcp:`` with ``/method`` or reliable mode): a JSON object gives named params in order
(duplicate names kept), an array positional params. ``int`` (in C ``int`` range), ``str`` and
``null`` are kept; bytes that are not UTF-8 stay in the text as surrogateescape characters and
are written back raw. Other values cannot come from OpenSIPS and are kept as text: an int
outside C ``int`` range or a non-integer number as written, ``true``/``false`` as
``"true"``/``"false"``, an object or array as its compact JSON text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson

from ..cjson import FloatText, JObject, compact_json
from ..event_name import event_name_problem
from ..jsonstream import MAX_DEPTH, StreamError, StreamSplitter
from ..payload import INT_MAX, INT_MIN, Params, build_payload
from ..ratelimit import RateLimitedLog

__all__ = [
    "IngestCounters",
    "IngestError",
    "Notification",
    "StreamError",
    "StreamSplitter",
    "TcpIngestServer",
    "UdpIngestServer",
    "parse_notification",
]

log = logging.getLogger("event_kafka.service.ingest")

_MAX_UNREAD_REPLIES = 1024 * 1024  # bytes of replies queued for a peer before it is dropped


# --------------------------------------------------------------------------------------------
# Splitting a TCP stream into JSON objects


# --------------------------------------------------------------------------------------------
# Decoding one notification


class IngestError(ValueError):
    """A malformed notification. ``id`` is its JSON-RPC id when it could be read (so a
    reliable-mode sender can still be answered), ``code``/``message`` the JSON-RPC error."""

    def __init__(
        self, reason: str, id: Any = None, code: int = -32600, message: str = "Invalid Request"
    ) -> None:
        super().__init__(reason)
        self.id = id
        self.code = code
        self.message = message


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 0.4 us per event
class Notification:
    """One ingested event: its name, params (as :func:`~event_kafka.payload.build_payload`
    takes them) and, for event_stream's reliable mode, the request id."""

    event: str
    params: Params
    id: Any = None
    has_id: bool = False
    payload: bytes | None = None
    """The bytes to forward: what the sender sent (reliable-mode id and ``event_param`` taken
    out). Raising sends them as they are; ``params`` only serve transports that rebuild."""


# event_stream's reliable mode writes the id as the first member.
_ID_FIRST = re.compile(rb'\{"id":-?[0-9]+,')
_WS_CHARS = " \t\r\n"
_DECODER = json.JSONDecoder(
    object_pairs_hook=JObject, parse_float=FloatText, parse_constant=FloatText, strict=False
)  # strict=False: a raw control character in a string is the sender's business, kept as is


def parse_notification(raw: bytes, *, event_param: str | None = None) -> Notification:
    """Decode one JSON-RPC notification as OpenSIPS's event_datagram/event_stream send it.

    ``event_param`` mirrors event_stream's modparam of that name: when set and the first
    param has that name (or, for positional params, always), the event name is taken from it
    and it is removed, undoing what the sender added.

    Raises:
        IngestError: what is wrong (never quoting the input at length).
    """
    if event_param is None:
        fast = _parse_canonical(raw)
        if fast is not None:
            return fast
    obj = _decode(raw)
    if not isinstance(obj, JObject):
        raise IngestError(f"not a JSON object but {_json_type(obj)}")
    has_id = "id" in obj
    rid = obj.get("id")
    if isinstance(rid, FloatText):
        rid = float(rid)
    if has_id and (
        isinstance(rid, bool) or not (rid is None or isinstance(rid, int | str | float))
    ):
        raise IngestError("'id' must be a number, a string or null")
    if isinstance(rid, int) and not -(2**63) <= rid < 2**64:
        raise IngestError("'id' is outside the 64-bit integer range")
    if isinstance(rid, str) and not _is_text(rid):
        raise IngestError("'id' is not valid UTF-8")
    method = obj.get("method")
    if not isinstance(method, str) or isinstance(method, FloatText) or not method:
        raise IngestError('"method" must be a non-empty string', rid)
    params: list[Any] | None = None
    p = obj.get("params")
    if isinstance(p, JObject):
        params = [(k, _value(v)) for k, v in p.pairs] or None
    elif isinstance(p, list):
        params = [_value(v) for v in p] or None
    event = method
    stripped = False
    if event_param is not None and params:
        first = params[0]
        if isinstance(first, tuple):
            if first[0] == event_param:
                event = _event_from_param(first[1], rid)
                params, stripped = params[1:] or None, True
        else:
            event = _event_from_param(first, rid)
            params, stripped = params[1:] or None, True
    if not _is_text(event):
        raise IngestError("the event name is not valid UTF-8", rid)
    problem = event_name_problem(event)
    if problem is not None:
        raise IngestError(problem, rid)
    payload = raw
    if stripped or has_id:
        m = None if stripped else _ID_FIRST.match(raw)
        if m is not None:
            payload = b"{" + raw[m.end() :]
        else:
            try:
                payload = build_payload(event, params, surrogateescape=True)
            except ValueError as exc:
                raise IngestError(f"cannot rebuild the payload: {exc}", rid) from None
    return Notification(event, params, rid, has_id, payload)


def _decode(raw: bytes) -> Any:
    """One JSON value, whatever bytes its strings hold (non-UTF-8 kept as surrogateescape)."""
    text = raw.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(_WS_CHARS))
    try:
        value, end = _DECODER.raw_decode(text, start)
    except RecursionError:
        raise IngestError(f"nested deeper than {MAX_DEPTH}") from None
    except ValueError as exc:
        raise IngestError(
            f"not JSON: {_short(str(exc))}", code=-32700, message="Parse error"
        ) from None
    if text[end:].strip(_WS_CHARS):
        raise IngestError(
            f"not JSON: extra data at position {end}", code=-32700, message="Parse error"
        )
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(value, MAX_DEPTH):
        raise IngestError(f"nested deeper than {MAX_DEPTH}")
    return value


def _too_deep(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, list | JObject):
            if depth > limit:
                return True
            items = v if isinstance(v, list) else [x for _, x in v.pairs]
            stack.extend((x, depth + 1) for x in items)
    return False


def _is_text(s: str) -> bool:
    """No surrogates: the text was valid UTF-8 (and had no lone \\uD800-\\uDFFF escape)."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_canonical(raw: bytes) -> Notification | None:
    """The fast path: a notification byte-identical to what OpenSIPS (and build_payload) writes.

    orjson decodes ~10x faster than the order- and duplicate-preserving decoder; re-encoding
    the result and finding the very same bytes proves nothing was lost (no duplicate names,
    no floats, no big ints, key order kept). Anything else takes the exact slow path.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict or "id" in obj:
        return None
    method = obj.get("method")
    if type(method) is not str or event_name_problem(method) is not None:
        return None
    params = obj.get("params")
    try:
        if build_payload(method, params) != raw:
            return None
    except (TypeError, ValueError):
        return None
    # A dict keeps the order (and, proven above, had no duplicates): build_payload's fastest form.
    return Notification(method, params or None, payload=raw)


def _event_from_param(value: Any, rid: Any) -> str:
    if not isinstance(value, str) or not value:
        raise IngestError("the event_param value must be a non-empty string", rid)
    return value


def _value(v: Any) -> int | str | None:
    """A JSON value as an event param value (see the module docstring for the rules)."""
    if v is None:
        return None
    if isinstance(v, FloatText):
        return str.__str__(v)
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return v if INT_MIN <= v <= INT_MAX else str(v)
    return compact_json(v, cjson_numbers=False)


def _json_type(v: Any) -> str:
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return "a string"
    if v is None:
        return "null"
    return "a boolean" if isinstance(v, bool) else "a number"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Raising: what the listeners hand each notification to


@dataclass(slots=True)
class RaiseOutcome:
    """What happened to one notification: ``error`` is ``None`` when it was accepted,
    else the JSON-RPC ``(code, message)`` to answer a reliable-mode sender with."""

    error: tuple[int, str] | None = None


ACCEPTED = RaiseOutcome()
UDP_RCVBUF = 16 * 1024 * 1024

RaiseFunction: TypeAlias = Callable[[Notification, str], RaiseOutcome]
"""``(notification, listener) -> outcome``: raises the event in the Event Interface."""


@dataclass
class IngestCounters:
    """Counters of one listener (read at scrape time by :mod:`.metrics`)."""

    received: int = 0
    """Notifications decoded (datagrams / objects), malformed ones included."""
    malformed: int = 0
    raised: int = 0
    refused: int = 0
    """Decoded but not raised: unknown event, or no subscriber accepted it."""
    replies: int = 0
    connections: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    streams_closed_on_error: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Ingest:
    name: str
    raise_fn: RaiseFunction
    counters: IngestCounters = field(default_factory=IngestCounters)
    bad_log: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log, 10.0))
    event_param: str | None = None

    def handle(self, raw: bytes, peer: str) -> tuple[Any, bool, bytes | None]:
        """Decode and raise one notification: ``(id, has_id, reply bytes or None)``."""
        c = self.counters
        c.received += 1
        try:
            note = parse_notification(raw, event_param=self.event_param)
        except IngestError as exc:
            c.malformed += 1
            self.bad_log.warning(
                "%s ingest: malformed notification from %s: %s", self.name, peer, exc
            )
            if exc.id is None:
                return None, False, None
            return exc.id, True, _error_reply(exc.code, exc.message, exc.id)
        try:
            outcome = self.raise_fn(note, self.name)
        except Exception:
            log.exception("%s ingest: raising %s failed", self.name, note.event)
            outcome = RaiseOutcome((500, "Cannot Raise Event"))
        if outcome.error is None:
            c.raised += 1
        else:
            c.refused += 1
        if not note.has_id:
            return None, False, None
        if outcome.error is None:
            return note.id, True, orjson.dumps({"jsonrpc": "2.0", "result": "OK", "id": note.id})
        return note.id, True, _error_reply(*outcome.error, note.id)


def _error_reply(code: int, message: str, rid: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": rid})


# --------------------------------------------------------------------------------------------
# UDP


class UdpIngestServer:
    """The event_datagram receiver: one notification per datagram, never answered.

    Example::

        server = UdpIngestServer(raise_fn, "127.0.0.1", 8090)
        await server.start()         # binds; raises OSError if it cannot
        ...
        server.close()
    """

    def __init__(
        self,
        raise_fn: RaiseFunction,
        host: str,
        port: int,
        *,
        max_datagram: int = 65535,
        log_interval: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self.max_datagram = max_datagram
        self.ingest = _Ingest("udp", raise_fn, bad_log=RateLimitedLog(log, log_interval))
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def counters(self) -> IngestCounters:
        return self.ingest.counters

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when 0 was asked for)."""
        assert self._sock is not None
        sockname = self._sock.getsockname()
        return str(sockname[0]), int(sockname[1])

    async def start(self) -> None:
        """Bind (raising OSError if it cannot) and start the reader thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        # A deep receive buffer absorbs bursts (root may exceed net.core.rmem_max).
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if opt is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, UDP_RCVBUF)
                    break
        sock.settimeout(0.25)  # how soon close() is noticed
        self._sock = sock
        # A blocking reader thread, not an asyncio transport: asyncio reads one datagram per
        # event-loop wakeup, which costs several times the work of raising the event.
        self._thread = threading.Thread(target=self._read, name="ek-udp-ingest", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        sock, ingest, size = self._sock, self.ingest, self.max_datagram
        assert sock is not None
        counters = ingest.counters
        while self._sock is sock:
            try:
                data, addr = sock.recvfrom(size)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._sock is not sock:
                    return
                ingest.bad_log.warning("udp ingest: socket error: %s", exc)
                continue
            counters.bytes += len(data)
            try:
                ingest.handle(data, _peer(addr))
            except Exception:  # never let one datagram stop the listener
                log.exception("udp ingest: handling a datagram failed")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None


# --------------------------------------------------------------------------------------------
# TCP


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, server: TcpIngestServer) -> None:
        self.server = server
        self.splitter = StreamSplitter(server.max_buffer)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._idle: asyncio.TimerHandle | None = None
        self._failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = _peer(transport.get_extra_info("peername"))
        c = self.server.counters
        if len(self.server.connections) >= self.server.max_connections:
            c.connections_refused += 1
            self.server.ingest.bad_log.warning(
                "tcp ingest: refusing %s: %d connections open",
                self.peer,
                len(self.server.connections),
            )
            transport.abort()
            return
        self.server.connections.add(self)
        c.connections = len(self.server.connections)
        c.connections_total += 1
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.server.counters.bytes += len(data)
        self._arm_idle()
        failure: StreamError | None = None
        try:
            objects = self.splitter.feed(data)
        except StreamError as exc:
            objects, failure = exc.objects, exc
        replies: list[bytes] = []
        for raw in objects:
            _, _, reply = self.server.ingest.handle(raw, self.peer)
            if reply is not None:
                replies.append(reply)
        if replies:
            self.server.counters.replies += len(replies)
            # Concatenated, no delimiter: what event_stream's reader expects.
            self.transport.write(b"".join(replies))
            if self.transport.get_write_buffer_size() > _MAX_UNREAD_REPLIES:
                # A sender that never reads its replies must not grow our memory forever.
                self._fail("the peer does not read its replies", malformed=False)
                return
        if failure is not None:
            self._fail(str(failure))

    def _fail(self, reason: str, *, malformed: bool = True) -> None:
        c = self.server.counters
        self._failed = True
        if malformed:  # the unsplittable rest counts as one malformed input
            c.received += 1
            c.malformed += 1
        c.streams_closed_on_error += 1
        self.server.ingest.bad_log.warning("tcp ingest: closing %s: %s", self.peer, reason)
        assert self.transport is not None
        if malformed:
            self.transport.close()  # after writing the replies already queued
        else:
            self.transport.abort()  # its unread replies are the problem: drop them

    def _arm_idle(self) -> None:
        timeout = self.server.idle_timeout
        if not timeout:
            return
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(timeout, self._on_idle)

    def _on_idle(self) -> None:
        if self.transport is not None:
            log.debug("tcp ingest: closing idle connection from %s", self.peer)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        pending = self.splitter.pending
        if pending and not self._failed and self in self.server.connections:
            c = self.server.counters
            c.received += 1
            c.malformed += 1
            self.server.ingest.bad_log.warning(
                "tcp ingest: %s closed the connection inside a notification (%d bytes dropped)",
                self.peer,
                pending,
            )
        self.server.connections.discard(self)
        self.server.counters.connections = len(self.server.connections)


class TcpIngestServer:
    """The event_stream receiver: concatenated notifications, answered when they carry an id.

    Example::

        server = TcpIngestServer(raise_fn, "127.0.0.1", 8091, max_buffer=1 << 20)
        await server.start()
        ...
        await server.close()
    """

    def __init__(
        self,
        raise_fn: RaiseFunction,
        host: str,
        port: int,
        *,
        max_buffer: int = 1024 * 1024,
        max_connections: int = 256,
        idle_timeout: float = 0.0,
        event_param: str | None = None,
        log_interval: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self.max_buffer = max_buffer
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.ingest = _Ingest(
            "tcp", raise_fn, bad_log=RateLimitedLog(log, log_interval), event_param=event_param
        )
        self.connections: set[_TcpProtocol] = set()
        self._server: asyncio.Server | None = None

    @property
    def counters(self) -> IngestCounters:
        return self.ingest.counters

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None and self._server.sockets
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TcpProtocol(self), self.host, self.port, reuse_address=True
        )

    def stop_accepting(self) -> None:
        """Stop listening; open connections keep being served until :meth:`close`."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Stop listening and close every connection (what was received is already raised)."""
        self.stop_accepting()
        for proto in list(self.connections):
            if proto.transport is not None:
                proto.transport.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None


def _peer(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)
