"""The HTTP side: ``POST /mi`` (OpenSIPS mi_http compatible), ``/metrics``, ``/health/*``.

``/mi`` behaves as OpenSIPS's mi_http: POST only (405 otherwise), an empty body is 400, a
JSON-RPC notification is answered 202 with no body, everything else 200 with the JSON-RPC
response (errors included). In front of it:

* **bearer token** (optional): ``Authorization: Bearer <token>`` or 401; compared in
  constant time, never logged;
* **size limit**: a body over ``max_request_bytes`` is 413 (with a JSON-RPC error body),
  without being read;
* **slow clients**: a connection has ``read_timeout`` seconds to deliver each whole request
  (headers and body), and is closed when idle that long between requests;
* **connection cap**: at most ``max_connections`` connections are open at once. At the cap a
  new connection closes the one that has waited longest without a request being handled
  (idle, or still sending its request): idle or slow clients can never lock out a health
  probe, a scrape or an MI caller. Only when every connection has a request being handled
  (an MI command, bounded by ``mi.command_timeout``) is the new one closed at once.

``/metrics`` (Prometheus text format) and ``/health/live`` / ``/health/ready`` need no token;
serve them on a separate listener (``metrics.listen``) to expose them beyond loopback
without exposing the MI.

Example::

    app = make_app(HttpConfig(mi_path="/mi"), mi=dispatcher, registry=registry, ready=ready)
    server = HttpServer(app, "127.0.0.1", 8888, read_timeout=10.0, max_connections=64)
    await server.start()
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from .mi import MIDispatcher, error_response
from .mi.errors import INVALID_REQUEST

__all__ = ["HttpConfig", "HttpCounters", "HttpServer", "ReadyCheck", "make_app"]

log = logging.getLogger("event_kafka.service.http")

ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
"""``() -> (ready, details)`` for ``/health/ready``."""


@dataclass
class HttpCounters:
    """Requests refused before reaching the MI, by reason."""

    unauthorized: int = 0
    too_large: int = 0
    timeout: int = 0
    overload: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class HttpConfig:
    """What :func:`make_app` serves. ``token`` is read on every request (a reload may change
    it); ``None`` means no authentication."""

    mi_path: str | None = "/mi"
    token: Callable[[], str | None] = lambda: None
    max_request_bytes: int = 65536
    read_timeout: float = 10.0
    metrics: bool = True
    counters: HttpCounters = field(default_factory=HttpCounters)


def make_app(
    config: HttpConfig,
    *,
    mi: MIDispatcher | None,
    registry: CollectorRegistry | None,
    ready: ReadyCheck | None,
) -> web.Application:
    """The aiohttp application: the MI (when ``mi`` and ``config.mi_path``), metrics (when
    ``registry``) and health endpoints (when ``ready``)."""
    app = web.Application(client_max_size=config.max_request_bytes, middlewares=[_guard_middleware])
    counters = config.counters

    if mi is not None and config.mi_path:

        async def handle_mi(request: web.Request) -> web.StreamResponse:
            token = config.token()
            if token is not None and not _authorized(request, token):
                counters.unauthorized += 1
                return web.Response(
                    status=401,
                    text="401: Unauthorized\n",
                    headers={"WWW-Authenticate": 'Bearer realm="event-kafka"'},
                )
            length = request.content_length
            if length is not None and length > config.max_request_bytes:
                counters.too_large += 1
                return _too_large(config.max_request_bytes)
            try:
                body = await asyncio.wait_for(_read_body(request), config.read_timeout)
            except TimeoutError:
                counters.timeout += 1
                return web.Response(status=408, text="408: Request Timeout\n", headers=_CLOSE)
            except web.HTTPRequestEntityTooLarge:
                counters.too_large += 1
                return _too_large(config.max_request_bytes)
            if not body:
                return web.Response(status=400, text="400: Bad Request (empty body)\n")
            reply = await mi.handle(body)
            if reply is None:
                return web.Response(status=202)
            return web.Response(body=orjson.dumps(reply), content_type="application/json")

        app.router.add_post(config.mi_path, handle_mi)

    if registry is not None and config.metrics:
        reg = registry

        async def handle_metrics(request: web.Request) -> web.StreamResponse:
            data = generate_latest(reg)
            return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", handle_metrics)

    if ready is not None:
        check = ready

        async def handle_live(request: web.Request) -> web.StreamResponse:
            return web.json_response({"status": "ok"}, dumps=_dumps)

        async def handle_ready(request: web.Request) -> web.StreamResponse:
            ok, details = await check()
            body = {"status": "ok" if ok else "not ready", **details}
            return web.json_response(body, status=200 if ok else 503, dumps=_dumps)

        app.router.add_get("/health/live", handle_live)
        app.router.add_get("/health/ready", handle_ready)
    return app


_CLOSE = {"Connection": "close"}


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _too_large(limit: int) -> web.Response:
    body = error_response(*INVALID_REQUEST, f"request larger than {limit} bytes")
    return web.Response(
        status=413, body=orjson.dumps(body), content_type="application/json", headers=_CLOSE
    )


def _authorized(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time: the comparison must not reveal how much of a guess was right.
    return hmac.compare_digest(given.strip().encode(), token.encode())


@web.middleware
async def _guard_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    guard = _Guard.of(request.transport)
    if guard is not None:
        guard.enter()
    try:
        return await handler(request)
    finally:
        if guard is not None:
            guard.leave()


async def _read_body(request: web.Request) -> bytes:
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
        self.waiting_since = 0.0

    @classmethod
    def of(cls, transport: object) -> _Guard | None:
        return _GUARDS.get(transport) if transport is not None else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if len(self.server.guards) >= self.server.max_connections and not self._evict():
            self.server.counters.overload += 1
            transport.abort()
            return
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
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

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
