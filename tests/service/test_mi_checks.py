"""The MI's checks are middlewares on the MI route alone: the order of refusals, and the
other endpoints (and a wrong method on /mi) untouched by them."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from event_kafka.service.http import HttpConfig, HttpCounters, HttpServer, make_app
from event_kafka.service.mi import Command, MIDispatcher, Recipe


async def _ready() -> tuple[bool, dict[str, Any]]:
    return True, {}


@pytest.mark.asyncio
async def test_checks_apply_to_the_mi_route_only_and_in_order() -> None:
    counters = HttpCounters()
    mi = MIDispatcher([Command("ping", (Recipe(()),), lambda p: "pong")])
    config = HttpConfig(token=lambda: "s3cret", max_request_bytes=64, counters=counters)
    server = HttpServer(make_app(config, mi=mi, registry=None, ready=_ready), "127.0.0.1", 0)
    await server.start()
    host, port = server.address
    url = f"http://{host}:{port}"
    auth = {"Authorization": "Bearer s3cret"}
    ping = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    try:
        async with aiohttp.ClientSession() as http:

            async def post(body: bytes, headers: dict[str, str]) -> int:
                async with http.post(url + "/mi", data=body, headers=headers) as r:
                    return r.status

            # The token is checked before the size: an anonymous big body learns nothing.
            assert await post(b"x" * 100, {}) == 401
            assert await post(b"x" * 100, auth) == 413
            assert await post(b"", auth) == 400
            assert await post(ping, auth) == 200
            async with http.get(url + "/mi") as r:
                assert r.status == 405  # the router's answer, not the token's
            async with http.get(url + "/health/live") as r:
                assert r.status == 200  # no token for health
        assert (counters.unauthorized, counters.too_large) == (1, 1)
    finally:
        await server.close()
