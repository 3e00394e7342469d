"""The event_stream receiver: ``tcp:`` ingest, concatenated notifications on a connection.

JSON objects come back to back with no delimiter and are split incrementally by
:class:`~event_kafka.jsonstream.StreamSplitter` (a byte scanner that tracks strings and
nesting, so a notification split anywhere across segments, even inside a UTF-8 sequence, is
reassembled). A notification with an ``"id"`` (event_stream's ``reliable_mode``) is answered
on the same connection: ``{"jsonrpc":"2.0","result":"OK","id":N}`` or an error object. A
stream that cannot be re-synchronised (not starting with ``{``, or one notification larger
than ``max_buffer``) is closed; OpenSIPS reconnects for its next event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ...address import bound_address, format_peer
from ...jsonstream import StreamError, StreamSplitter
from ...ratelimit import RateLimitedLog
from .listener import IngestCounters, Listener, RaiseFunction

__all__ = ["TcpIngestServer"]

log = logging.getLogger("event_kafka.service.ingest")

_MAX_UNREAD_REPLIES = 1024 * 1024  # bytes of replies queued for a peer before it is dropped


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
        self.peer = format_peer(transport.get_extra_info("peername"))
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
        self.ingest = Listener(
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
        return bound_address(self._server.sockets[0])

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
