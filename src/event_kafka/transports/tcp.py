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
import logging
import socket
import threading
import weakref
from typing import Any

from .. import forksafe
from ..errors import SocketError
from ..kafka_socket import mask_secrets
from ..payload import INT_MAX, Params, build_payload, build_payload_with_id
from ..ratelimit import RateLimitedLog
from .base import Destination, Transport
from .tcp_connection import Connection, shutdown
from .udp import InetAddress, parse_inet

__all__ = ["TcpDestination", "TcpTransport"]

log = logging.getLogger("event_kafka.transports.tcp")


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
        self._conns: dict[tuple[Any, ...], Connection] = {}
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
            fut = asyncio.run_coroutine_threadsafe(shutdown(conns, timeout), loop)
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

    def acquire(self, addr: InetAddress) -> Connection:
        """The shared connection for ``addr`` (one reference more)."""
        key = (addr.family, addr.sockaddr)
        with self._lock:
            if self._closed:
                raise RuntimeError("tcp transport is closed")
            conn = self._conns.get(key)
            if conn is None:
                conn = self._conns[key] = Connection(self, key, addr)
            conn.refs += 1
            return conn

    def release(self, conn: Connection) -> None:
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

    def wake(self, conn: Connection) -> None:
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

    def forget(self, conn: Connection) -> bool:
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
        self._conn: Connection | None = None
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

    def _open(self) -> Connection | None:
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


_transports: weakref.WeakSet[TcpTransport] = weakref.WeakSet()
_orphans: list[object] = []


@forksafe.on_fork
def _after_fork_in_child() -> None:
    for t in list(_transports):
        t._reset_after_fork()
