"""The HTTP listener: aiohttp behind a guard that cuts off slow and idle clients.

* **slow clients**: a connection has ``read_timeout`` seconds to deliver each whole request
  (headers and body), and is closed when idle that long between requests;
* **connection cap**: at most ``max_connections`` connections are open at once. At the cap a
  new connection closes the one that has waited longest without a request being handled
  (idle, or still sending its request): idle or slow clients can never lock out a health
  probe, a scrape or an MI caller. When every connection has a request being handled (MI
  commands, each bounded by ``mi.command_timeout``), up to :data:`RESERVE` more are let in
  for ``GET`` only (health, metrics): an MI call there is answered 503 at once, so MI
  callers can never lock out a probe either. Beyond that, a new connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from ...address import bound_address
from ..counters import counter_dict

__all__ = ["RESERVE", "HttpCounters", "HttpServer", "guard_middleware", "read_body"]

RESERVE = 8
"""Connections let in past ``max_connections`` when all are busy: for GET requests only."""

log = logging.getLogger("event_kafka.service.http")


@dataclass
class HttpCounters:
    """Requests refused before reaching the MI, by reason."""

    unauthorized: int = 0
    too_large: int = 0
    timeout: int = 0
    overload: int = 0

    def as_dict(self) -> dict[str, int]:
        return counter_dict(self)


@web.middleware
async def guard_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Marks the connection busy while its request is handled (not evictable, no deadline)."""
    guard = _Guard.of(request.transport)
    if guard is None:
        return await handler(request)
    if guard.reserve and request.method not in ("GET", "HEAD"):
        guard.server.counters.overload += 1
        response: web.StreamResponse = web.Response(status=503, text="busy: no free connection\n")
    else:
        guard.enter()
        try:
            response = await handler(request)
        finally:
            guard.leave()
    if guard.reserve:
        response.force_close()  # a reserve connection serves one request
    return response


async def read_body(request: web.Request) -> bytes:
    """The request body; while it is still arriving the connection counts as waiting."""
    # Still receiving the request: the connection may be evicted at the cap, like an idle one.
    guard = _Guard.of(request.transport)
    if guard is not None:
        guard.handling = False
    try:
        return await request.read()
    finally:
        if guard is not None:
            guard.handling = True


_GUARDS: dict[object, _Guard] = {}
"""The guard of each open transport, for the middleware (aiohttp hides its protocol)."""


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's protocol to cut off slow or idle connections and cap their number.

    The deadline runs whenever no handler is running for the connection: from accept until
    the handler of the first request starts (headers read), and again after each response.
    aiohttp has no header-read timeout of its own, so this is what stops a client that sends
    its request one byte at a time.
    """

    def __init__(self, inner: asyncio.Protocol, server: HttpServer) -> None:
        self.inner = inner
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._made = False
        self.handling = False
        """A request is being handled (not evictable)."""
        self.reserve = False
        """Let in past the cap while every other connection was busy: GET only."""
        self.waiting_since = 0.0

    @classmethod
    def of(cls, transport: object) -> _Guard | None:
        return _GUARDS.get(transport) if transport is not None else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if len(self.server.guards) >= self.server.max_connections and not self._evict():
            if len(self.server.guards) >= self.server.max_connections + RESERVE:
                self.server.counters.overload += 1
                transport.abort()
                return
            self.reserve = True
        self._made = True
        self.server.guards.add(self)
        _GUARDS[transport] = self
        self.inner.connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if not self._made:
            return
        self.server.guards.discard(self)
        _GUARDS.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _evict(self) -> bool:
        """Make room by closing the connection waiting longest with no request being
        handled; False when every connection is handling one."""
        idle = [g for g in self.server.guards if not g.handling]
        if not idle:
            return False
        victim = min(idle, key=lambda g: g.waiting_since)
        self.server.counters.overload += 1
        log.debug("http: at %d connections: closing the longest idle", len(self.server.guards))
        self.server.guards.discard(victim)
        if victim.transport is not None:
            victim.transport.abort()
        return True

    def enter(self) -> None:
        self.handling = True
        self._cancel()

    def leave(self) -> None:
        self.handling = False
        self._arm()

    def _arm(self) -> None:
        self._cancel()
        loop = asyncio.get_running_loop()
        self.waiting_since = loop.time()
        self._timer = loop.call_later(self.server.read_timeout, self._expire)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.server.counters.timeout += 1
            log.debug("http: closing a connection idle or slow for %ss", self.server.read_timeout)
            self.transport.abort()


class HttpServer:
    """Runs an aiohttp application on one listening socket, behind :class:`_Guard`.

    ``start`` raises ``OSError`` when the address cannot be bound.
    """

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        read_timeout: float = 10.0,
        max_connections: int = 64,
        counters: HttpCounters | None = None,
        shutdown_timeout: float = 2.0,
    ) -> None:
        self.app = app
        self.shutdown_timeout = shutdown_timeout
        self.host, self.port = host, port
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.counters = counters if counters is not None else HttpCounters()
        self.guards: set[_Guard] = set()
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when 0 was asked for)."""
        assert self._server is not None and self._server.sockets
        return bound_address(self._server.sockets[0])

    async def start(self) -> None:
        # No access log: one line per scrape or MI call would drown the useful lines.
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.shutdown_timeout,
        )
        await self._runner.setup()
        factory = self._runner.server
        assert factory is not None
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Guard(factory(), self), self.host, self.port, reuse_address=True
            )
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise

    def stop_accepting(self) -> None:
        """Close the listening socket; requests in progress go on."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Stop accepting, give running requests ``shutdown_timeout`` s, close everything."""
        self.stop_accepting()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for guard in list(self.guards):
            if guard.transport is not None:
                guard.transport.abort()
        self._server = None
