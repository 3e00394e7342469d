"""The HTTP endpoints: ``POST /mi`` (OpenSIPS mi_http compatible), ``/metrics``, ``/health/*``.

``/mi`` behaves as OpenSIPS's mi_http: POST only (405 otherwise), an empty body is 400, a
JSON-RPC notification is answered 202 with no body, everything else 200 with the JSON-RPC
response (errors included). The checks in front of it are middlewares (:mod:`.mi_checks`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from ..mi import MIDispatcher
from .connections import HttpCounters, guard_middleware
from .mi_checks import MI_BODY, MI_ROUTE, BearerToken, BodySizeLimit, ReadBody, RequireBody

__all__ = ["HttpConfig", "ReadyCheck", "make_app"]

ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
"""``() -> (ready, details)`` for ``/health/ready``."""


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
    counters = config.counters
    limit = config.max_request_bytes
    app = web.Application(
        client_max_size=limit,
        middlewares=[
            guard_middleware,
            BearerToken(config.token, counters),
            BodySizeLimit(limit, counters),
            ReadBody(limit, config.read_timeout, counters),
            RequireBody(),
        ],
    )

    if mi is not None and config.mi_path:
        dispatcher = mi

        async def handle_mi(request: web.Request) -> web.StreamResponse:
            reply = await dispatcher.handle(request[MI_BODY])
            if reply is None:
                return web.Response(status=202)
            return web.Response(body=orjson.dumps(reply), content_type="application/json")

        app.router.add_post(config.mi_path, handle_mi, name=MI_ROUTE)

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


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()
