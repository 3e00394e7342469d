"""``Service`` in process (``event_kafka.service.service``): start, ingest, the MI it serves,
shutdown; no ``event-kafka serve`` process (tests/service/test_daemon.py runs that)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import orjson
import pytest

from event_kafka.devkafka import consume_all
from event_kafka.payload import build_payload
from event_kafka.service.config import load_config_text
from event_kafka.service.service import Service
from tests.support import MakeTopic, await_until


@pytest.mark.asyncio
async def test_auto_publish_is_bounded_and_unknown_events_are_counted() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    settings = load_config_text(
        f"""
[events]
auto_publish = true
auto_publish_max = 2
[[subscriptions]]
event = "E_AUTO_SEEN"
socket = "udp:127.0.0.1:{sink.getsockname()[1]}"
[mi]
listen = "127.0.0.1:0"
[ingest.udp]
listen = "127.0.0.1:0"
"""
    )
    service = Service(settings)
    await service.start()
    try:
        assert service.udp is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            # One rule for names (event_name.py): auto_publish cannot publish what the file
            # refuses; such a datagram is malformed, whatever the auto-publish budget.
            s.sendto(build_payload("E_AUTO\nINJECTED", {"n": 1}), service.udp.address)
            for name in ("E_AUTO_SEEN", "E_AUTO_1", "E_AUTO_2", "E_AUTO_3", "E_AUTO_1"):
                s.sendto(build_payload(name, {"n": 1}), service.udp.address)
        udp = service.udp
        await await_until(lambda: udp.counters.received >= 6, 10, "the six datagrams")
        names = [e.name for e in service.ek.evi.list_events()]
        assert names == ["E_AUTO_SEEN", "E_AUTO_1", "E_AUTO_2"]  # the third is over the bound
        assert service.udp.counters.malformed == 1
        assert service.raiser.unknown_events["udp"] == 1
        assert service.raiser.auto_published == 2
        assert sink.recv(65535) == build_payload("E_AUTO_SEEN", {"n": 1})
        groups = service.statistics()
        assert groups["ingest_udp"]["unknown_event"] == 1
        assert groups["event_E_AUTO_1"]["raised"] == 2
        assert await service.ready() == (True, {})
    finally:
        await service.shutdown()
        sink.close()
    assert await service.ready() == (False, {"reason": "stopping"})


@pytest.mark.asyncio
async def test_event_header_false_writes_records_as_opensips(
    kafka_broker: Any, make_topic: MakeTopic
) -> None:
    """[events] event_header = false: an ingested OpenSIPS notification lands with no headers
    and its exact bytes (not UTF-8 here), as OpenSIPS's own kafka: socket writes it."""
    topic = make_topic(1)
    settings = load_config_text(
        f"""
[events]
event_header = false
[[subscriptions]]
event = "E_PLAIN"
socket = "kafka:{kafka_broker.bootstrap}/{topic}"
[mi]
listen = "127.0.0.1:0"
[ingest.udp]
listen = "127.0.0.1:0"
"""
    )
    raw = b'{"jsonrpc":"2.0","method":"E_PLAIN","params":{"ua":"\xfe\xff","p":{}}}'
    service = Service(settings)
    await service.start()
    try:
        assert service.udp is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(raw, service.udp.address)
        udp = service.udp
        await await_until(lambda: udp.counters.raised >= 1, 10, "the datagram raised")
    finally:
        await service.shutdown()
    [r] = await asyncio.to_thread(consume_all, kafka_broker.bootstrap, topic, 30, 1)
    assert (r.value, r.key, r.headers) == (raw, None, [])


@pytest.mark.asyncio
async def test_a_slow_mi_command_never_stalls_health() -> None:
    import threading
    import urllib.request

    from event_kafka.service.mi import Command, Recipe

    settings = load_config_text('[mi]\nlisten = "127.0.0.1:0"\ncommand_timeout = 1.0\n')
    service = Service(settings)
    await service.start()
    release = threading.Event()
    # Blocks its thread like a quadratic parser or a hung resolver would.
    service.dispatcher.add(Command("slow", (Recipe(()),), lambda p: release.wait(30) and "x"))
    host, port = service.servers[0].address
    url = f"http://{host}:{port}"

    def post() -> bytes:
        req = urllib.request.Request(
            url + "/mi", data=b'{"jsonrpc":"2.0","id":1,"method":"slow"}', method="POST"
        )
        with urllib.request.urlopen(req, timeout=20) as r:
            return bytes(r.read())

    def live() -> float:
        t0 = time.monotonic()
        with urllib.request.urlopen(url + "/health/live", timeout=20) as r:
            assert r.status == 200
        return time.monotonic() - t0

    try:
        slow = [asyncio.create_task(asyncio.to_thread(post)) for _ in range(6)]
        workers = service.workers
        await await_until(
            lambda: workers.pending + workers.busy >= 6, 10, "the six requests at the workers"
        )
        latencies = [await asyncio.to_thread(live) for _ in range(5)]
        assert max(latencies) < 0.5, latencies
        replies = [orjson.loads(b) for b in await asyncio.gather(*slow)]
        assert {r["error"]["code"] for r in replies} <= {408, 503}, replies
        assert any(r["error"]["code"] == 408 for r in replies)
        mi = service.statistics()["mi"]  # counted: get_statistics and event_kafka_mi_overrun
        assert mi["timeout"] + mi["busy"] == 6 and mi["timeout"] >= 1
    finally:
        release.set()
        await service.shutdown()


@pytest.mark.asyncio
async def test_mi_sockets_get_the_configured_property_policy() -> None:
    """The running service hands the MI the allow-list widened by [mi] allow_properties."""
    settings = load_config_text(
        """
[events]
publish = ["E_TRUST"]
[mi]
listen = "127.0.0.1:0"
allow_properties = ["ssl.ca.location"]
"""
    )
    service = Service(settings)
    await service.start()

    async def subscribe(socket: str) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": 1, "method": "event_subscribe"}
        body["params"] = ["E_TRUST", socket]
        reply = await service.dispatcher.handle(orjson.dumps(body))
        assert reply is not None
        return reply

    try:
        widened = await subscribe("kafka:127.0.0.1:1/t?g.ssl.ca.location=/etc/ssl/ca.pem")
        assert widened.get("result") == "OK", widened
        refused = await subscribe("kafka:127.0.0.1:1/t?g.ssl.providers=/tmp/evil")
        assert refused["error"]["code"] == 400
        assert "not allowed from the MI" in refused["error"]["data"]
        assert service.ek.evi.subscriber_count("E_TRUST") == 1
    finally:
        await service.shutdown()


@pytest.mark.asyncio
async def test_every_connection_busy_with_the_mi_never_starves_health_or_metrics() -> None:
    """At the connection cap with every connection inside a slow MI command (none idle to
    evict), a probe or a scrape still gets in (a few reserve connections, GET only) and
    another MI call is told 503 at once instead of waiting."""
    import threading
    import urllib.error
    import urllib.request

    from event_kafka.service.mi import Command, Recipe

    settings = load_config_text(
        '[mi]\nlisten = "127.0.0.1:0"\nmax_connections = 4\ncommand_timeout = 20.0\n'
    )
    service = Service(settings)
    await service.start()
    release = threading.Event()
    service.dispatcher.add(Command("slow", (Recipe(()),), lambda p: release.wait(30) and "x"))
    server = service.servers[0]
    host, port = server.address
    url = f"http://{host}:{port}"
    slow_call = b'{"jsonrpc":"2.0","id":1,"method":"slow"}'

    def fetch(path: str, body: bytes | None = None) -> tuple[int, float]:
        t0 = time.monotonic()
        req = urllib.request.Request(url + path, data=body, method="POST" if body else "GET")
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                r.read()
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        return status, time.monotonic() - t0

    try:
        slow = [asyncio.create_task(asyncio.to_thread(fetch, "/mi", slow_call)) for _ in range(4)]
        await await_until(
            lambda: sum(g.handling for g in server.guards) >= 4, 10, "four slow MI calls"
        )
        for path in ("/health/live", "/metrics", "/health/live"):
            status, took = await asyncio.to_thread(fetch, path)
            assert (status, path) == (200, path) and took < 1.0, (path, status, took)
        status, took = await asyncio.to_thread(fetch, "/mi", slow_call)
        assert status == 503 and took < 1.0, (status, took)
        assert not any(t.done() for t in slow)  # the four were never cut off
    finally:
        release.set()
        await asyncio.gather(*slow)
        await service.shutdown()


@pytest.mark.asyncio
async def test_the_configured_subscription_limit_counts_mi_subscriptions_only() -> None:
    settings = load_config_text(
        """
[events]
publish = ["E_A"]
[[subscriptions]]
event = "E_A"
socket = "udp:127.0.0.1:9"
[mi]
listen = "127.0.0.1:0"
max_subscriptions = 2
"""
    )
    service = Service(settings)
    await service.start()

    async def subscribe(port: int) -> Any:
        req = {"jsonrpc": "2.0", "id": 1, "method": "event_subscribe"}
        req["params"] = ["E_A", f"udp:127.0.0.1:{port}"]  # type: ignore[assignment]
        reply = await service.dispatcher.handle(orjson.dumps(req))
        return orjson.loads(reply) if isinstance(reply, bytes) else reply

    try:
        assert (await subscribe(10))["result"] == "OK"  # the static one does not count
        assert (await subscribe(11))["result"] == "OK"
        refused = await subscribe(12)
        assert refused["error"]["code"] == 429, refused
        assert "mi.max_subscriptions = 2" in refused["error"]["data"]
        assert (await subscribe(11))["result"] == "OK"  # a refresh is always allowed
        assert service.ek.evi.subscriber_count("E_A") == 3
    finally:
        await service.shutdown()
