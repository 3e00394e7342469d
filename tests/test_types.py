"""Wrong types are errors, never silent records (issue 12, item 6)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

import orjson
import pytest

from event_kafka import EventKafka, Report
from event_kafka.devkafka import free_port
from event_kafka.service.mi import MIDispatcher, service_commands
from tests.support import Broker, Consume


@pytest.fixture
def ek() -> Iterator[EventKafka]:
    e = EventKafka([f"[k]127.0.0.1:{free_port()}/t"], flush_timeout=0)
    e.publish_event("E")
    try:
        yield e
    finally:
        e.close(0)


@pytest.mark.parametrize("message", [None, 42, 1.5, ["m"], {"m": 1}, bytearray(b"m")])
def test_message_must_be_str_or_bytes(ek: EventKafka, message: Any) -> None:
    with pytest.raises(TypeError, match="message must be str or bytes"):
        ek.kafka_publish("k", message)
    assert ek.stats()["broker_ids"]["k"]["accepted"] == 0


def test_none_message_names_the_tombstone_option(ek: EventKafka) -> None:
    with pytest.raises(TypeError, match="tombstone=True"):
        ek.kafka_publish("k", None, "key")


@pytest.mark.parametrize("key", [0, 1, 2.0, [], ["k"], object()])
def test_key_must_be_str_bytes_or_none(ek: EventKafka, key: Any) -> None:
    # 0 and [] are falsy: they must not silently become "no key".
    with pytest.raises(TypeError, match="key must be str, bytes or None"):
        ek.kafka_publish("k", "m", key)


@pytest.mark.parametrize("route", [None, "r"])
@pytest.mark.parametrize(
    ("message", "key", "error"),
    [
        *[(m, None, "message must be str or bytes") for m in (42, 1.5, ["m"], bytearray(b"m"))],
        *[("m", k, "key must be str, bytes or None") for k in (0, 1, 2.0, [], object())],
        ("m", bytearray(b"k"), "key must be str, bytes or None"),
        (None, "key", "tombstone=True"),
    ],
)
def test_the_common_call_refuses_the_same_once_its_lane_exists(
    ek: EventKafka, route: str | None, message: Any, key: Any, error: str
) -> None:
    # kafka_publish's common call skips its own checks once the lane exists (produce()
    # checks the types): what it refuses, and how it names it, must not change.
    ek.add_report_route("r", lambda r: None)
    assert ek.kafka_publish("k", "first", "", route) == 1
    with pytest.raises(TypeError, match=error):
        ek.kafka_publish("k", message, key, route)
    assert ek.kafka_publish("k", b"last", b"", route) == 1
    assert ek.stats()["broker_ids"]["k"]["accepted"] == 2


def test_other_kafka_publish_arguments(ek: EventKafka) -> None:
    ek.add_report_route("r", lambda r: None)
    with pytest.raises(TypeError, match="broker_id must be str"):
        ek.kafka_publish(5, "m")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="broker_id must be str"):
        ek.kafka_publish(["k"], "m")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="report_route must be str"):
        ek.kafka_publish("k", "m", None, 7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_report must be callable"):
        ek.kafka_publish("k", "m", on_report="r")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tombstone must be a bool"):
        ek.kafka_publish("k", None, "key", tombstone=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a tombstone has no message"):
        ek.kafka_publish("k", "m", "key", tombstone=True)
    with pytest.raises(ValueError, match="needs a non-empty key"):
        ek.kafka_publish("k", None, tombstone=True)
    with pytest.raises(ValueError, match="needs a non-empty key"):
        ek.kafka_publish("k", None, "", tombstone=True)
    assert ek.stats()["broker_ids"]["k"]["accepted"] == 0


def test_str_subclasses_are_text(ek: EventKafka) -> None:
    class Text(str):
        pass

    assert ek.kafka_publish("k", Text("m"), Text("key")) == 1


def test_explicit_tombstone_reaches_the_broker(
    kafka_broker: Broker, make_topic: Callable[..., str], consume: Consume
) -> None:
    topic = make_topic(1, {"cleanup.policy": "compact"})
    reports: list[Report] = []
    with EventKafka([f"[k]{kafka_broker.bootstrap}/{topic}"]) as ek:
        assert ek.kafka_publish("k", "v1", "user-1") == 1
        assert ek.kafka_publish("k", None, "user-1", tombstone=True, on_report=reports.append) == 1
    got = [(r.key, r.value) for r in consume(topic, expect=2)]
    assert got == [(b"user-1", b"v1"), (b"user-1", None)]
    [r] = reports
    assert r.ok and r.kafka_key == "user-1" and r.message is None and r.kafka_msg == ""


def test_event_interface_argument_types(ek: EventKafka) -> None:
    ek.subscribe("E", "udp:127.0.0.1:9", expire=60)
    with pytest.raises(TypeError, match="sip_msg must be"):
        ek.raise_event("E", {"a": 1}, sip_msg=123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sip_msg must be"):
        ek.raise_event("E", {"a": 1}, sip_msg=["INVITE"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event must be str"):
        ek.raise_event(["E"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event must be str"):
        ek.raise_event(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event must be str"):
        ek.subscribe(None, "udp:127.0.0.1:9")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="socket must be str"):
        ek.subscribe("E", b"udp:127.0.0.1:9")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expire"):
        ek.subscribe("E", "udp:127.0.0.1:9", expire=True)
    with pytest.raises(TypeError, match="event must be str"):
        ek.unsubscribe(1, "udp:127.0.0.1:9")  # type: ignore[arg-type]
    ek.publish_event("E_NOBODY")
    for bad in (5, "a=1", b"x", 1.5, object()):
        with pytest.raises(TypeError, match="params must be"):
            ek.raise_event("E_NOBODY", bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="params must be"):
            ek.raise_event("E", bad)  # type: ignore[arg-type]
    assert ek.raise_event("E_NOBODY", ("x",)) == 0
    stats = ek.stats()["events"]["E"]
    assert (stats.raised, stats.accepted) == (0, 0)  # nothing was sent


class _Service:
    def __init__(self, ek: EventKafka) -> None:
        self.ek = ek
        self.started_at = time.time()
        self.report_wait_timeout = 1.0
        self.default_report_route: str | None = None

    def report_routes(self) -> Collection[str]:
        return ()

    def statistics(self) -> dict[str, dict[str, int]]:
        return {}

    def is_static(self, event: str, socket: str) -> bool:
        return False


@pytest.mark.parametrize(
    "params",
    [
        ["k", None],
        {"broker_id": "k", "message": None},
        {"broker_id": "k", "message": "m", "key": None},
    ],
)
def test_mi_null_message_or_key_is_invalid_params(ek: EventKafka, params: Any) -> None:
    d = MIDispatcher([])
    for cmd in service_commands(_Service(ek), lambda: d):  # type: ignore[arg-type]
        d.add(cmd)
    req = {"jsonrpc": "2.0", "id": 1, "method": "kafka_publish", "params": params}
    reply = asyncio.run(d.handle(orjson.dumps(req)))
    assert reply is not None
    err = orjson.loads(reply)["error"] if isinstance(reply, bytes) else reply["error"]
    assert err["code"] == -32602 and "Bad type" in err["data"]
    assert ek.stats()["broker_ids"]["k"]["accepted"] == 0
