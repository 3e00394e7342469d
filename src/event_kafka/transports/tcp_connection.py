"""One ``tcp:`` destination address: its bounded queue, connection and reply parsing.

A :class:`Connection` is shared by every subscriber of one address. Any thread queues
requests (:meth:`Connection.submit`); the transport's asyncio loop connects (retrying after
``retry_interval``), writes, reads replies (concatenated JSON, split by
:mod:`event_kafka.jsonstream`) and, in reliable mode, matches them to requests by ``id`` and
fails those past ``timeout``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from dataclasses import dataclass, fields
from typing import Any, Protocol

from .. import forksafe
from ..jsonstream import StreamError, StreamSplitter
from ..ratelimit import RateLimitedLog
from .udp import InetAddress

__all__ = ["Connection", "ConnectionCounters", "ConnectionOwner", "shutdown"]


@dataclass(eq=False)  # a Connection is compared by identity: one per address
class ConnectionCounters:
    """Counters of one destination address (see :meth:`TcpTransport.stats`)."""

    accepted: int = 0
    overflow: int = 0
    written: int = 0
    acked: int = 0
    failed: int = 0
    error_replies: int = 0
    timeouts: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    bad_replies: int = 0


class ConnectionOwner(Protocol):
    """What a connection reads from its transport (:class:`TcpTransport`)."""

    queue_size: int
    timeout: float
    connect_timeout: float
    retry_interval: float
    reliable: bool
    max_reply_size: int
    _log: RateLimitedLog

    def wake(self, conn: Connection) -> None: ...

    def forget(self, conn: Connection) -> bool: ...


class Connection(ConnectionCounters):
    """One destination address: the bounded queue (any thread) and the connection (loop)."""

    def __init__(self, owner: ConnectionOwner, key: tuple[Any, ...], addr: InetAddress) -> None:
        super().__init__()
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

    def counters(self) -> dict[str, int]:
        out = {f.name: getattr(self, f.name) for f in fields(ConnectionCounters)}
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
    def __init__(self, conn: Connection) -> None:
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


async def shutdown(conns: list[Connection], timeout: float) -> None:
    """Write out what is queued (up to ``timeout``), then abort every connection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for conn in conns:
        conn.service()
    # Checked every 10 ms, at close only: asyncio has no "write buffer now empty" signal
    # (pause/resume_writing fire at the high-water marks, not at zero).
    while any(not c.idle() for c in conns) and loop.time() < deadline:
        await asyncio.sleep(0.01)
    for conn in conns:
        conn.abort()
    await asyncio.sleep(0)  # let the aborted transports report connection_lost
