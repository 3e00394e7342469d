"""What stands in front of ``POST /mi``: one aiohttp middleware per check, in this order.

* :class:`BearerToken` (optional): ``Authorization: Bearer <token>`` or 401; compared in
  constant time, never logged;
* :class:`BodySizeLimit`: a declared body over ``max_request_bytes`` is 413 (with a JSON-RPC
  error body), without being read;
* :class:`ReadBody`: the body is read within ``read_timeout`` (408) and within the limit
  (413 for a chunked body that grows past it), and handed to the handler;
* :class:`RequireBody`: an empty body is 400, as OpenSIPS's mi_http answers it.

Each applies to the MI route only (named :data:`MI_ROUTE`): ``/metrics`` and ``/health/*``
never need a token, and a wrong method on ``/mi`` is still 405.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from ..mi import error_response
from ..mi.errors import INVALID_REQUEST
from .connections import HttpCounters, read_body

__all__ = ["MI_BODY", "MI_ROUTE", "BearerToken", "BodySizeLimit", "ReadBody", "RequireBody"]

MI_ROUTE = "mi"
"""The name of the ``POST /mi`` route: the checks apply to it alone."""
MI_BODY = web.RequestKey("event_kafka.mi_body", bytes)
"""The request key :class:`ReadBody` leaves the body under."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CLOSE = {"Connection": "close"}


class _MICheck:
    """A middleware that looks at MI requests only: :meth:`refuse` returns the refusal, or
    None to let the request through."""

    __middleware_version__ = 1  # a new-style aiohttp middleware

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.name == MI_ROUTE:
            refusal = await self.refuse(request)
            if refusal is not None:
                return refusal
        return await handler(request)

    async def refuse(self, request: web.Request) -> web.StreamResponse | None:
        raise NotImplementedError


class BearerToken(_MICheck):
    """401 unless ``Authorization: Bearer <token>``; ``token()`` is read per request (a
    reload may change it), ``None`` meaning no authentication."""

    def __init__(self, token: Callable[[], str | None], counters: HttpCounters) -> None:
        self.token = token
        self.counters = counters

    async def refuse(self, request: web.Request) -> web.StreamResponse | None:
        token = self.token()
        if token is None or _authorized(request, token):
            return None
        self.counters.unauthorized += 1
        return web.Response(
            status=401,
            text="401: Unauthorized\n",
            headers={"WWW-Authenticate": 'Bearer realm="event-kafka"'},
        )


class BodySizeLimit(_MICheck):
    """413 for a declared ``Content-Length`` over ``limit``, before reading a byte of it."""

    def __init__(self, limit: int, counters: HttpCounters) -> None:
        self.limit = limit
        self.counters = counters

    async def refuse(self, request: web.Request) -> web.StreamResponse | None:
        length = request.content_length
        if length is None or length <= self.limit:
            return None
        self.counters.too_large += 1
        return too_large(self.limit)


class ReadBody(_MICheck):
    """Reads the body within ``read_timeout`` (else 408) and ``limit`` (else 413) and leaves
    it under :data:`MI_BODY`."""

    def __init__(self, limit: int, read_timeout: float, counters: HttpCounters) -> None:
        self.limit = limit
        self.read_timeout = read_timeout
        self.counters = counters

    async def refuse(self, request: web.Request) -> web.StreamResponse | None:
        try:
            request[MI_BODY] = await asyncio.wait_for(read_body(request), self.read_timeout)
        except TimeoutError:
            self.counters.timeout += 1
            return web.Response(status=408, text="408: Request Timeout\n", headers=_CLOSE)
        except web.HTTPRequestEntityTooLarge:
            self.counters.too_large += 1
            return too_large(self.limit)
        return None


class RequireBody(_MICheck):
    """400 for an empty body (after :class:`ReadBody`)."""

    async def refuse(self, request: web.Request) -> web.StreamResponse | None:
        if request.get(MI_BODY):
            return None
        return web.Response(status=400, text="400: Bad Request (empty body)\n")


def too_large(limit: int) -> web.Response:
    """413 with a JSON-RPC error body naming the limit."""
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
