"""``tcp:`` — JSON-RPC over a persistent TCP connection (OpenSIPS event_stream).

Socket: ``tcp:host:port[/method]`` (IPv4 host or name, as OpenSIPS; extension:
``tcp:[v6]:port[/method]``). The host is resolved at subscribe time. ``/method`` replaces the
event name as the JSON-RPC ``method``; it must not be empty.

Wire format: the JSON-RPC notifications are written back to back on the connection — no
newline, length prefix or other delimiter — so a receiver parses them incrementally (e.g.
``json.JSONDecoder.raw_decode`` in a loop, as the ``opensips`` package's stream listener does).
One connection per destination address, shared by every subscriber of that address, opened on
the first event and re-opened on the next event after the peer closes it.

Reliable mode (``TcpTransport(reliable=True)``, event_stream's ``reliable_mode``): each
request gets a positive integer ``"id"`` as its first key and the receiver must answer on the
same connection with a JSON object holding that ``"id"``; ``"error"`` present = failure,
absent = success. Replies may be concatenated or split across segments. A request without a
reply within ``timeout`` seconds of being written, or pending when the connection drops,
fails. Otherwise anything the receiver sends is read and discarded.

Never blocks the caller: ``send`` puts the request on a bounded per-address queue (``True``)
or, when ``queue_size`` requests are already queued or awaiting replies, counts an overflow
and returns ``False``. One background thread runs an asyncio loop that connects (with
``connect_timeout``; after a failure, the queued requests fail and no new attempt is made for
``retry_interval`` seconds), writes, reads replies and sweeps timeouts.

Match: same host text, port and method. Print: ``host:port[/method]``.

Metrics (:meth:`TcpTransport.stats`, per ``tcp:host:port``): ``accepted``, ``overflow``,
``written``, ``acked``, ``failed`` (= ``error_replies`` + ``timeouts`` + lost on disconnect +
dropped after a connect failure), ``error_replies``, ``timeouts``, ``connects``,
``connect_failures``, ``disconnects``, ``bad_replies``, ``queued``, ``in_flight``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import threading
import weakref
from collections import deque
from typing import Any

from .. import forksafe
from ..errors import SocketError
from ..jsonstream import StreamError, StreamSplitter
from ..kafka_socket import mask_secrets
from ..payload import INT_MAX, Params, build_payload, build_payload_with_id
from ..ratelimit import RateLimitedLog
from .base import Destination, Transport
from .udp import InetAddress, parse_inet

__all__ = ["TcpDestination", "TcpTransport"]

log = logging.getLogger("event_kafka.transports.tcp")

_CONNECTION_COUNTERS = (
    "accepted", "overflow", "written", "acked", "failed", "error_replies", "timeouts",
    "connects", "connect_failures", "disconnects", "bad_replies",
)  # fmt: skip


class TcpTransport(Transport):
    """The ``tcp`` transport (event_stream).

    Example::

        >>> t = TcpTransport(reliable=True, timeout=1.0)
        >>> d = t.parse("127.0.0.1:8888/my_method")
        >>> d.print()
        '127.0.0.1:8888/my_method'
        >>> t.close()

    To use non-default settings, hand the instance to the Event Interface:
    ``EventInterface(transports=[TcpTransport(reliable=True)])``.

    Args:
        reliable: event_stream's ``reliable_mode``: ids and replies.
        timeout: reliable mode: seconds to wait for a reply after a request was written.
        connect_timeout: seconds allowed for a TCP connect.
        retry_interval: after a failed connect, seconds before the next attempt.
        queue_size: per address, requests queued plus (reliable) awaiting a reply.
        max_reply_size: reliable mode: bytes of an incomplete reply kept before the
            connection is dropped as broken.
        close_timeout: :meth:`close`'s default ``timeout``.
    """

    scheme = "tcp"

    def __init__(
        self,
        *,
        reliable: bool = False,
        timeout: float = 1.0,
        connect_timeout: float = 1.0,
        retry_interval: float = 0.5,
        queue_size: int = 1024,
        max_reply_size: int = 1 << 20,
        close_timeout: float = 2.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        self.reliable = reliable
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retry_interval = retry_interval
        self.queue_size = queue_size
        self.max_reply_size = max_reply_size
        self.close_timeout = close_timeout
        self._lock = forksafe.lock()
        self._conns: dict[tuple[Any, ...], _Connection] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._ids = itertools.count()
        self._log = RateLimitedLog(log, 10.0)
        _transports.add(self)

    # -- Transport ---------------------------------------------------------------------------

    def parse(self, text: str) -> TcpDestination:
        addr = parse_inet(self.scheme, text, rest_starts="/", socktype=socket.SOCK_STREAM)
        method: str | None = None
        if addr.rest:
            method = addr.rest[1:]
            if not method:
                at = len(self.scheme) + 1 + len(text)
                raise SocketError(
                    f"invalid tcp socket {mask_secrets('tcp:' + text)!r}: empty method after '/' "
                    f"at position {at}: write tcp:host:port or tcp:host:port/method",
                    at,
                )
        return TcpDestination(self, addr, method)

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting; for up to ``timeout`` s (default ``close_timeout``) write what is
        queued (and, in reliable mode, await replies); then drop every connection and stop the
        sender thread. What is still queued then is counted as failed."""
        if timeout is None:
            timeout = self.close_timeout
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            conns = list(self._conns.values())
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            fut = asyncio.run_coroutine_threadsafe(_shutdown(conns, timeout), loop)
            fut.result(timeout + 1.0)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout + 1.0)

    def stats(self) -> dict[str, object]:
        with self._lock:
            conns = list(self._conns.values())
        return {f"tcp:{c.addr.text}": c.counters() for c in conns}

    # -- connections -------------------------------------------------------------------------

    def next_id(self) -> int:
        """A positive C ``int`` request id (reliable mode); wraps around."""
        return next(self._ids) % INT_MAX + 1

    def acquire(self, addr: InetAddress) -> _Connection:
        """The shared connection for ``addr`` (one reference more)."""
        key = (addr.family, addr.sockaddr)
        with self._lock:
            if self._closed:
                raise RuntimeError("tcp transport is closed")
            conn = self._conns.get(key)
            if conn is None:
                conn = self._conns[key] = _Connection(self, key, addr)
            conn.refs += 1
            return conn

    def release(self, conn: _Connection) -> None:
        """One reference less; the last one lets the connection drain and close."""
        with self._lock:
            conn.refs -= 1
            if conn.refs > 0:
                return
            loop = self._loop
            if loop is None:
                self._conns.pop(conn.key, None)
                return
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(conn.service)

    def wake(self, conn: _Connection) -> None:
        """Have the sender thread look at ``conn`` (starting the thread on first use)."""
        loop = self._loop
        if loop is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("tcp transport is closed")
                loop = self._loop
                if loop is None:
                    loop = self._loop = asyncio.new_event_loop()
                    self._thread = threading.Thread(
                        target=_run_loop, args=(loop,), name="ek-tcp-sender", daemon=True
                    )
                    self._thread.start()
        loop.call_soon_threadsafe(conn.service)

    def forget(self, conn: _Connection) -> bool:
        """Drop ``conn`` from the table if nobody holds it; loop thread only."""
        with self._lock:
            if conn.refs > 0 and not self._closed:
                return False
            if self._conns.get(conn.key) is conn:
                del self._conns[conn.key]
            return True

    def _reset_after_fork(self) -> None:
        # The parent's loop, thread and sockets are not ours: keep them referenced (never
        # touched, never finalised) and start afresh on the next event.
        _orphans.append((self._loop, [c.transport for c in self._conns.values()]))
        self._lock = forksafe.lock()
        self._loop = None
        self._thread = None
        for conn in self._conns.values():
            conn.reset_after_fork()


class TcpDestination(Destination):
    """A ``tcp:`` subscriber: an address, an optional method, and (after the first event) a
    reference to the shared connection."""

    __slots__ = ("_closed", "_conn", "_lock", "addr", "method", "transport")

    def __init__(self, transport: TcpTransport, addr: InetAddress, method: str | None) -> None:
        self.transport = transport
        self.addr = addr
        self.method = method
        self._conn: _Connection | None = None
        self._closed = False
        self._lock = forksafe.lock()

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TcpDestination)
            and other.addr.host == self.addr.host
            and other.addr.port == self.addr.port
            and other.addr.family == self.addr.family
            and other.method == self.method
        )

    def __hash__(self) -> int:
        return hash(("tcp", self.addr.host, self.addr.port, self.method))

    def print(self) -> str:
        return self.addr.text if self.method is None else f"{self.addr.text}/{self.method}"

    def send(self, payload: bytes, event: str, params: Params, key: bytes | None) -> bool:
        conn = self._conn
        if conn is None:
            conn = self._open()
            if conn is None:
                return False
        try:
            id_, data = self._payload(payload, event, params)
        except ValueError:
            return False  # ingested params a rebuild cannot print (a lone \uD800 escape)
        return conn.submit(id_, data)

    def _payload(self, payload: bytes, event: str, params: Params) -> tuple[int, bytes]:
        t = self.transport
        if t.reliable:
            id_ = t.next_id()
            # surrogateescape: ingested params keep OpenSIPS's non-UTF-8 bytes.
            data = build_payload_with_id(
                event, params, id_, method_override=self.method, surrogateescape=True
            )
        elif self.method is not None:
            id_ = 0
            data = build_payload(event, params, method_override=self.method, surrogateescape=True)
        else:
            id_, data = 0, payload
        return id_, data

    def _open(self) -> _Connection | None:
        with self._lock:
            if self._conn is None and not self._closed:
                try:
                    self._conn = self.transport.acquire(self.addr)
                except RuntimeError:
                    return None
            return self._conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            self.transport.release(conn)

    def __repr__(self) -> str:
        return f"TcpDestination(tcp:{self.print()})"


# --------------------------------------------------------------------------------------------
# The sender side: everything below except submit() runs in the sender thread's loop.


class _Connection:
    """One destination address: the bounded queue (any thread) and the connection (loop)."""

    def __init__(self, owner: TcpTransport, key: tuple[Any, ...], addr: InetAddress) -> None:
        self.owner = owner
        self.key = key
        self.addr = addr
        self.refs = 0
        self.lock = forksafe.lock()
        self.pending: deque[tuple[int, bytes]] = deque()
        self.kicked = False  # a service() call is scheduled or the loop will call it itself
        self.transport: asyncio.Transport | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.retry: asyncio.TimerHandle | None = None
        self.retry_at = 0.0
        self.paused = False
        self.inflight: dict[int, float] = {}  # id -> deadline, in deadline order
        self.sweeper: asyncio.TimerHandle | None = None
        self.replies = _ReplyBuffer(owner.max_reply_size)
        for name in _CONNECTION_COUNTERS:
            setattr(self, name, 0)

    accepted: int
    overflow: int
    written: int
    acked: int
    failed: int
    error_replies: int
    timeouts: int
    connects: int
    connect_failures: int
    disconnects: int
    bad_replies: int

    def counters(self) -> dict[str, int]:
        out = {name: getattr(self, name) for name in _CONNECTION_COUNTERS}
        out["queued"] = len(self.pending)
        out["in_flight"] = len(self.inflight)
        return out

    # -- any thread --------------------------------------------------------------------------

    def submit(self, id_: int, data: bytes) -> bool:
        with self.lock:
            # The bound covers requests awaiting replies too: a peer that reads but never
            # answers must not grow memory without limit.
            if len(self.pending) + len(self.inflight) >= self.owner.queue_size:
                self.overflow += 1
                return False
            self.pending.append((id_, data))
            self.accepted += 1
            if self.kicked:
                return True
            self.kicked = True
        try:
            self.owner.wake(self)
        except RuntimeError:  # closed meanwhile: nothing will ever send what is queued
            with self.lock:
                dropped = len(self.pending)
                self.pending.clear()
            self.accepted -= 1  # this one is refused, not accepted
            self.failed += dropped - 1
            return False
        return True

    # -- loop thread -------------------------------------------------------------------------

    def service(self) -> None:
        """Connect if needed, then write queued requests until the socket pushes back."""
        transport = self.transport
        if transport is not None and transport.is_closing():
            return  # lost() calls back once it is gone; a new connection must not race it
        if transport is None:
            if self.connecting is None and self.retry is None:
                with self.lock:
                    if not self.pending:
                        self.kicked = False
                if self.kicked:
                    loop = asyncio.get_running_loop()
                    delay = self.retry_at - loop.time()
                    if delay > 0:
                        self.retry = loop.call_later(delay, self._retry)
                    else:
                        self.connecting = loop.create_task(self._connect())
            self._maybe_finish()
            return
        timeout = self.owner.timeout
        loop = asyncio.get_running_loop()
        while not self.paused:
            with self.lock:
                if not self.pending:
                    self.kicked = False
                    break
                id_, data = self.pending.popleft()
                if id_:
                    self.inflight[id_] = loop.time() + timeout
            transport.write(data)
            self.written += 1
            if transport.is_closing():  # a write error: lost() follows and reconnects
                break
        if self.inflight and self.sweeper is None:
            self.sweeper = loop.call_at(next(iter(self.inflight.values())), self._sweep)
        self._maybe_finish()

    def _retry(self) -> None:
        self.retry = None
        self.service()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(self.addr.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                loop.sock_connect(sock, self.addr.sockaddr), self.owner.connect_timeout
            )
            await loop.create_connection(lambda: _Protocol(self), sock=sock)
        except OSError as exc:  # TimeoutError included
            sock.close()
            self.connecting = None
            self.connect_failures += 1
            self.retry_at = loop.time() + self.owner.retry_interval
            with self.lock:
                dropped = len(self.pending)
                self.pending.clear()
                self.kicked = False
            self.failed += dropped
            reason = "timed out" if isinstance(exc, TimeoutError) else exc
            self.owner._log.warning(
                "tcp:%s: cannot connect (%s): %d event(s) dropped",
                self.addr.text, reason, dropped,
            )  # fmt: skip
            self._maybe_finish()
            return
        except BaseException:
            sock.close()
            self.connecting = None
            raise
        self.connecting = None
        self.connects += 1
        self.service()

    def made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.paused = False
        self.replies.reset()

    def lost(self, transport: asyncio.Transport) -> None:
        if transport is not self.transport:
            return  # an older connection, already replaced (after a fork, say)
        self.transport = None
        self.paused = False
        self.disconnects += 1
        self.replies.reset()
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        with self.lock:
            lost = len(self.inflight)
            self.inflight.clear()
        if lost:
            self.failed += lost
            self.owner._log.warning(
                "tcp:%s: connection lost with %d request(s) awaiting replies",
                self.addr.text, lost,
            )  # fmt: skip
        # Reconnects at once if requests are queued, otherwise on the next event.
        self.service()

    def received(self, data: bytes) -> None:
        if not self.owner.reliable:
            return  # event_stream ignores whatever a non-reliable receiver sends
        replies = self.replies.feed(data)
        if replies is None:
            self.owner._log.warning(
                "tcp:%s: unparsable reply data: closing the connection", self.addr.text
            )
            if self.transport is not None:
                self.transport.abort()
            return
        for reply in replies:
            rid = reply.get("id") if isinstance(reply, dict) else None
            if type(rid) is not int or rid not in self.inflight:
                self.bad_replies += 1  # late (timed out), unknown, or not a reply at all
                continue
            del self.inflight[rid]
            if "error" in reply:  # type: ignore[operator]  # reply is a dict here
                self.error_replies += 1
                self.failed += 1
            else:
                self.acked += 1
        self._maybe_finish()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if not paused:
            self.service()

    def _sweep(self) -> None:
        self.sweeper = None
        now = asyncio.get_running_loop().time()
        expired = 0
        for rid, deadline in list(self.inflight.items()):
            if deadline > now:
                break
            del self.inflight[rid]
            expired += 1
        if expired:
            self.timeouts += expired
            self.failed += expired
            self.owner._log.warning(
                "tcp:%s: %d request(s) got no reply within %.3gs",
                self.addr.text, expired, self.owner.timeout,
            )  # fmt: skip
        if self.inflight:
            loop = asyncio.get_running_loop()
            self.sweeper = loop.call_at(next(iter(self.inflight.values())), self._sweep)
        self._maybe_finish()

    def busy(self) -> bool:
        """Requests queued, awaiting replies, or a connect under way."""
        return bool(self.pending or self.inflight or self.connecting)

    def idle(self) -> bool:
        """Not busy and nothing left in the socket's write buffer."""
        return not self.busy() and (
            self.transport is None or self.transport.get_write_buffer_size() == 0
        )

    def _maybe_finish(self) -> None:
        # The last subscriber of this address is gone: close once everything queued was
        # handed to the socket and (reliable mode) answered or timed out. transport.close()
        # still writes out its buffer first.
        if self.refs > 0 or self.busy() or not self.owner.forget(self):
            return
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        for handle in (self.retry, self.sweeper, self.connecting):
            if handle is not None:
                handle.cancel()
        self.retry = self.sweeper = self.connecting = None
        with self.lock:
            dropped = len(self.pending) + len(self.inflight)
            self.pending.clear()
            self.inflight.clear()
        self.failed += dropped
        if self.transport is not None:
            self.transport.abort()

    def reset_after_fork(self) -> None:
        self.lock = forksafe.lock()
        self.pending = deque()
        self.kicked = False
        self.transport = None
        self.connecting = self.retry = self.sweeper = None
        self.retry_at = 0.0
        self.paused = False
        self.inflight = {}
        self.replies.reset()


class _Protocol(asyncio.Protocol):
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.made(transport)

    def data_received(self, data: bytes) -> None:
        self.conn.received(data)

    def eof_received(self) -> bool:
        return False  # close our side too: event_stream treats a peer close as the end

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.conn.lost(self.transport)

    def pause_writing(self) -> None:
        self.conn.set_paused(True)

    def resume_writing(self) -> None:
        self.conn.set_paused(False)


class _ReplyBuffer:
    """Incremental parser of concatenated JSON replies (split anywhere, UTF-8 included).

    The splitter finds where each reply ends scanning every byte once; each complete reply is
    then decoded once. (Re-decoding the whole pending text on every segment was quadratic: a
    receiver trickling one big reply could stall the sender thread.)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        self.splitter = StreamSplitter(self.limit)

    def feed(self, data: bytes) -> list[object] | None:
        """The complete replies so far; ``None`` if the data can never become JSON."""
        try:
            raws = self.splitter.feed(data)
        except StreamError:
            return None
        out: list[object] = []
        for raw in raws:
            try:
                out.append(_decoder.decode(raw.decode("utf-8", "replace")))
            except (ValueError, RecursionError):
                return None
        return out


_decoder = json.JSONDecoder()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        with contextlib.suppress(Exception):
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
        loop.close()


async def _shutdown(conns: list[_Connection], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for conn in conns:
        conn.service()
    while any(not c.idle() for c in conns) and loop.time() < deadline:
        await asyncio.sleep(0.01)
    for conn in conns:
        conn.abort()
    await asyncio.sleep(0)  # let the aborted transports report connection_lost


_transports: weakref.WeakSet[TcpTransport] = weakref.WeakSet()
_orphans: list[object] = []


@forksafe.on_fork
def _after_fork_in_child() -> None:
    for t in list(_transports):
        t._reset_after_fork()
