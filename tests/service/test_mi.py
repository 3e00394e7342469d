"""MI dispatch (no HTTP): OpenSIPS's JSON-RPC rules, recipes, errors and every command."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from event_kafka import EventKafka
from event_kafka.cjson import FloatText, JObject, compact_json, loads_json
from event_kafka.payload import Params
from event_kafka.service.mi import (
    Command,
    MIDispatcher,
    Recipe,
    raise_event_params,
    service_commands,
)
from event_kafka.transports import Destination, Transport
from tests.support import await_until, wait_until

# -- fixtures ---------------------------------------------------------------------------------


class CaptureDestination(Destination):
    def __init__(self, name: str, sink: list[bytes]) -> None:
        self.name, self.sink = name, sink

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CaptureDestination) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("cap", self.name))

    def print(self) -> str:
        return self.name

    def send(self, payload: bytes, event: str, params: Params, key: bytes | None) -> bool:
        self.sink.append(payload)
        return True


SINK: list[bytes] = []


class CaptureTransport(Transport):
    scheme = "cap"

    def parse(self, text: str) -> Destination:
        return CaptureDestination(text, SINK)


class FakeService:
    """The MIService protocol around a real EventKafka (brokers unreachable, nothing sent)."""

    def __init__(self, ek: EventKafka) -> None:
        self.ek = ek
        self.started_at = time.time() - 5
        self.report_wait_timeout = 2.0
        self.default_report_route: str | None = None
        self.routes: set[str] = set()
        self.static: set[tuple[str, str]] = set()

    def report_routes(self) -> Collection[str]:
        return self.routes

    def statistics(self) -> Mapping[str, Mapping[str, int | float]]:
        return {
            "event_kafka": {"accepted": 3, "delivered": 2},
            "broker_k1": {"accepted": 3},
            "mi": {"requests": 7},
        }

    def is_static(self, event: str, socket: str) -> bool:
        return (event, socket) in self.static


@pytest.fixture
def service() -> Iterator[FakeService]:
    ek = EventKafka(
        broker_ids=["[k1]127.0.0.1:1/t1?t.message.timeout.ms=300", "[k2]127.0.0.1:1/t2"],
        flush_timeout=0.0,
    )
    ek.evi.register_transport("cap", lambda ctx: CaptureTransport())
    ek.evi.publish_event("E_TEST")
    ek.evi.publish_event("E_OTHER")
    SINK.clear()
    try:
        yield FakeService(ek)
    finally:
        ek.close(0.0)


@pytest.fixture
def mi(service: FakeService) -> MIDispatcher:
    d = MIDispatcher([])
    for cmd in service_commands(service, lambda: d):
        d.add(cmd)
    return d


def call(d: MIDispatcher, method: str, params: Any = None, rid: Any = 1) -> dict[str, Any]:
    req: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        req["params"] = params
    reply = asyncio.run(d.handle(orjson.dumps(req)))
    assert reply is not None
    return reply


def result(d: MIDispatcher, method: str, params: Any = None) -> Any:
    reply = call(d, method, params)
    assert "error" not in reply, reply
    return reply["result"]


def error(d: MIDispatcher, method: str, params: Any = None) -> tuple[int, str, str | None]:
    reply = call(d, method, params)
    assert "result" not in reply, reply
    err = reply["error"]
    return err["code"], err["message"], err.get("data")


# -- JSON-RPC envelope --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "rid"),
    [
        (b"{", -32700, None),
        (b"\xff\xfe", -32700, None),
        (b'{"jsonrpc":"2.0","id":1,"method":"version"} trailing', -32700, None),
        (b"[]", -32600, None),
        (b'[{"jsonrpc":"2.0","id":1,"method":"version"}]', -32600, None),
        (b'"version"', -32600, None),
        (b'{"id":1,"method":"version"}', -32600, 1),
        (b'{"jsonrpc":"1.0","id":"a","method":"version"}', -32600, "a"),
        (b'{"jsonrpc":"2.0","id":1,"method":7}', -32600, 1),
        (b'{"jsonrpc":"2.0","id":1,"method":"version","params":"x"}', -32600, 1),
        (b'{"jsonrpc":"2.0","id":{"a":1},"method":"version"}', -32600, None),
        (b'{"jsonrpc":"2.0","id":true,"method":"version"}', -32600, None),
        (b'{"jsonrpc":"2.0","id":1,"method":"nope"}', -32601, 1),
        (b'{"jsonrpc":"2.0","id":1,"method":"version","params":{"x":1}}', -32602, 1),
    ],
)
def test_envelope_errors(mi: MIDispatcher, body: bytes, code: int, rid: Any) -> None:
    reply = asyncio.run(mi.handle(body))
    assert reply is not None
    assert reply["error"]["code"] == code
    assert reply["id"] == rid
    assert list(reply) == ["jsonrpc", "error", "id"]


def test_response_shape_and_ids(mi: MIDispatcher) -> None:
    for rid in (1, "abc", None, 2.5):
        reply = call(mi, "version", rid=rid)
        assert list(reply) == ["jsonrpc", "result", "id"]
        assert reply["jsonrpc"] == "2.0" and reply["id"] == rid


def test_notifications_get_no_reply_unless_invalid(mi: MIDispatcher, service: FakeService) -> None:
    note = {"jsonrpc": "2.0", "method": "event_subscribe", "params": ["E_TEST", "cap:n"]}
    assert asyncio.run(mi.handle(orjson.dumps(note))) is None
    assert service.ek.evi.find_subscriber("E_TEST", "cap:n") is not None  # it ran
    assert asyncio.run(mi.handle(b'{"jsonrpc":"2.0","method":"nope"}')) is None
    bad = asyncio.run(mi.handle(b'{"jsonrpc":"2.0","method":5}'))
    assert bad is not None and bad["error"]["code"] == -32600


def test_empty_params_mean_no_params(mi: MIDispatcher) -> None:
    assert "Server" in result(mi, "version", {})
    assert "Server" in result(mi, "version", [])


def test_counts_requests_and_errors(mi: MIDispatcher) -> None:
    result(mi, "version")
    error(mi, "nope")
    asyncio.run(mi.handle(b"{"))
    assert (mi.requests, mi.errors) == (3, 2)


# -- recipes ------------------------------------------------------------------------------------


def test_recipe_matching_like_opensips() -> None:
    seen: list[tuple[str, ...]] = []

    def record(p: Any) -> str:
        seen.append(p.recipe.params)
        return "OK"

    d = MIDispatcher(
        [
            Command("c", (Recipe(("a",)), Recipe(("b",)), Recipe(("a", "b"))), record),
            Command("n", (Recipe(("a", "b")), Recipe(("a", "c"), named_only=True)), record),
        ]
    )
    assert error(d, "c", ["x"]) == (
        -32602,
        "Invalid params",
        "Ambiguous call, use named parameters instead",
    )
    assert result(d, "c", {"b": 1}) == "OK" and seen[-1] == ("b",)
    assert result(d, "c", ["x", "y"]) == "OK" and seen[-1] == ("a", "b")
    assert error(d, "c", ["x", "y", "z"])[2] == "Too few or too many parameters"
    assert error(d, "c", {"z": 1})[2] == "Named parameters do not match"
    assert error(d, "c")[2] == "Too few or too many parameters"
    # named_only recipes do not make positional calls ambiguous
    assert result(d, "n", [1, 2]) == "OK" and seen[-1] == ("a", "b")
    assert result(d, "n", {"c": 1, "a": 2}) == "OK" and seen[-1] == ("a", "c")
    # duplicate names count twice, as cJSON sees them
    body = b'{"jsonrpc":"2.0","id":1,"method":"c","params":{"a":1,"a":2}}'
    reply = asyncio.run(d.handle(body))
    assert reply is not None and reply["error"]["data"] == "Named parameters do not match"


def test_handler_exceptions_do_not_leak() -> None:
    def boom(p: Any) -> Any:
        raise RuntimeError("password=hunter2")

    d = MIDispatcher(
        [Command("boom", (Recipe(()),), boom), Command("none", (Recipe(()),), lambda p: None)]
    )
    reply = call(d, "boom")
    assert reply["error"]["code"] == -32000 and "hunter2" not in orjson.dumps(reply).decode()
    assert error(d, "none") == (-32000, "Server error", "Command handler returned null")


def test_duplicate_command_names_refused() -> None:
    d = MIDispatcher([Command("a", (Recipe(()),), lambda p: 1, aliases=("b",))])
    with pytest.raises(ValueError):
        d.add(Command("b", (Recipe(()),), lambda p: 1))


# -- core commands ------------------------------------------------------------------------------


def test_which(mi: MIDispatcher) -> None:
    names = result(mi, "which")
    for name in (
        "event_subscribe", "evi:subscribe", "subscribe", "events_list", "evi:list",
        "subscribers_list", "evi:subscribers", "raise_event", "evi:raise", "kafka_publish",
        "get_statistics", "statistics:get", "version", "uptime", "which",
    ):  # fmt: skip
        assert name in names
    assert result(mi, "which", {"command": "event_subscribe"}) == [
        ["event", "socket"],
        ["event", "socket", "expire"],
    ]
    assert result(mi, "which", ["evi:"]) == [
        "evi:subscribe",
        "evi:list",
        "evi:subscribers",
        "evi:raise",
    ]
    assert error(mi, "which", ["nope"]) == (404, "unknown MI command", None)
    assert error(mi, "which", ["zz:"]) == (404, "unknown MI command", None)


def test_version_and_uptime(mi: MIDispatcher) -> None:
    assert result(mi, "version")["Server"].startswith("event-kafka ")
    up = result(mi, "uptime")
    assert set(up) == {"Now", "Up since", "Up time"}
    assert up["Up time"].endswith(" [sec]") and int(up["Up time"].split()[0]) >= 5


def test_get_statistics(mi: MIDispatcher) -> None:
    assert result(mi, "get_statistics", [["all"]]) == {
        "event_kafka:accepted": 3,
        "event_kafka:delivered": 2,
        "broker_k1:accepted": 3,
        "mi:requests": 7,
    }
    assert result(mi, "get_statistics", {"statistics": ["event_kafka:"]}) == {
        "event_kafka:accepted": 3,
        "event_kafka:delivered": 2,
    }
    # a bare name finds the first group that has it; group:name picks one
    assert result(mi, "get_statistics", [["delivered", "broker_k1:accepted"]]) == {
        "event_kafka:delivered": 2,
        "broker_k1:accepted": 3,
    }
    assert result(mi, "statistics:get", [["nope", "mi:"]]) == {"mi:requests": 7}
    assert error(mi, "get_statistics", [["nope", "nope:"]]) == (404, "Statistics Not Found", None)
    assert error(mi, "get_statistics", ["all"])[2] == "Bad type for parameter 'statistics'"
    assert error(mi, "get_statistics", [[]])[2] == "Empty array in parameter 'statistics'"
    assert error(mi, "get_statistics", [[{"a": 1}]])[2] == (
        "Bad type for array item in parameter 'statistics'"
    )


# -- Event Interface commands ---------------------------------------------------------------------


def test_subscribe_list_refresh_unsubscribe(mi: MIDispatcher) -> None:
    assert result(mi, "event_subscribe", ["E_TEST", "cap:one"]) == "OK"
    assert result(mi, "subscribe", {"event": "E_TEST", "socket": "cap:two", "expire": "60"}) == "OK"
    assert result(mi, "evi:subscribe", ["E_OTHER", "cap:one", 0]) == "OK"  # nothing to remove
    listing = result(mi, "subscribers_list")
    assert listing == {
        "Events": [
            {
                "name": "E_TEST",
                "id": 0,
                "Subscribers": [
                    {"socket": "cap:two", "expire": 60, "ttl": 60},
                    {"socket": "cap:one", "expire": 3600, "ttl": 3600},
                ],
            }
        ]
    }
    # a refresh does not add a duplicate
    assert result(mi, "event_subscribe", ["E_TEST", "cap:one", 100]) == "OK"
    one = result(mi, "subscribers_list", ["E_TEST", "cap:one"])
    assert one == {
        "Event": {
            "name": "E_TEST",
            "id": 0,
            "Subscriber": {"socket": "cap:one", "expire": 100, "ttl": 100},
        }
    }
    assert len(result(mi, "evi:subscribers", ["E_TEST"])["Event"]["Subscribers"]) == 2
    assert result(mi, "event_subscribe", ["E_TEST", "cap:one", 0]) == "OK"
    assert error(mi, "subscribers_list", ["E_TEST", "cap:one"]) == (
        404,
        "Subscriber does not exist",
        None,
    )
    assert result(mi, "subscribers_list", ["E_OTHER"]) == {"Event": {}}
    assert error(mi, "subscribers_list", ["E_NOPE"]) == (404, "Event not published", None)
    assert error(mi, "subscribers_list", ["E_TEST", "Kafka:x"]) == (
        404,
        "Subscriber does not exist",
        None,
    )


def test_subscribe_errors(mi: MIDispatcher) -> None:
    assert error(mi, "event_subscribe", ["E_TEST", "cap:x", -1]) == (
        -32602,
        "Invalid params",
        "Negative expire value",
    )
    assert (
        error(mi, "event_subscribe", ["E_TEST", "cap:x", "soon"])[2]
        == "Bad type for parameter 'expire'"
    )
    assert error(mi, "event_subscribe", ["", "cap:x"])[:2] == (-32602, "Invalid params")
    assert (
        error(mi, "event_subscribe", [["E_TEST"], "cap:x"])[2] == "Bad type for parameter 'event'"
    )
    code, msg, data = error(mi, "event_subscribe", ["E_NOPE", "cap:x"])
    assert (code, msg) == (400, "Bad parameter value") and data is not None and "E_NOPE" in data
    code, msg, data = error(
        mi, "event_subscribe", ["E_TEST", "kafka:h:1/t?g.sasl.password=Sup3rS3cret&t.acks=x"]
    )
    assert (code, msg) == (400, "Bad parameter value")
    assert data is not None and "Sup3rS3cret" not in data and "acks" in data
    assert error(mi, "event_subscribe", ["E_TEST", "nope:x"])[:2] == (400, "Bad parameter value")


def test_static_subscriptions_are_protected(mi: MIDispatcher, service: FakeService) -> None:
    service.ek.evi.subscribe("E_TEST", "cap:static")
    service.static.add(("E_TEST", "cap:static"))
    assert result(mi, "event_subscribe", ["E_TEST", "cap:static", 60]) == "OK"
    sub = result(mi, "subscribers_list", ["E_TEST", "cap:static"])["Event"]["Subscriber"]
    assert sub["expire"] == "never"  # a refresh did not make it expire
    code, _, data = error(mi, "event_subscribe", ["E_TEST", "cap:static", 0])
    assert code == 400 and data is not None and "static" in data


def test_events_list(mi: MIDispatcher, service: FakeService) -> None:
    assert result(mi, "events_list") == {
        "Events": [{"name": "E_TEST", "id": 0}, {"name": "E_OTHER", "id": 1}]
    }
    assert result(mi, "evi:list") == result(mi, "events_list")


def test_raise_event_payloads(mi: MIDispatcher) -> None:
    assert error(mi, "raise_event", ["E_NOPE"]) == (404, "Event not registered", None)
    assert error(mi, "raise_event", ["E_TEST"]) == (480, "Temporarily Unavailable", None)
    result(mi, "event_subscribe", ["E_TEST", "cap:r"])
    assert result(mi, "raise_event", ["E_TEST"]) == "OK"
    assert result(mi, "raise_event", ["E_TEST", []]) == "OK"
    assert result(mi, "evi:raise", ["E_TEST", ["a", 5, -7.9, "x\ty"]]) == "OK"
    assert (
        result(
            mi,
            "raise_event",
            {
                "event": "E_TEST",
                "params": '{"n":2.7,"s":"v","b":true,"z":null,"o":{"k":[1,1.5]},"big":1e12}',
            },
        )
        == "OK"
    )
    assert SINK == [
        b'{"jsonrpc":"2.0","method":"E_TEST"}',
        b'{"jsonrpc":"2.0","method":"E_TEST"}',
        b'{"jsonrpc":"2.0","method":"E_TEST","params":["a","5","-7","x\\ty"]}',
        b'{"jsonrpc":"2.0","method":"E_TEST","params":{"n":2,"s":"v","b":"true","z":"null",'
        b'"o":"{\\"k\\":[1,1.500000]}","big":2147483647}}',
    ]
    assert error(mi, "raise_event", ["E_TEST", "not json"]) == (400, "Bad Params", None)
    assert error(mi, "raise_event", ["E_TEST", "[1,2]"]) == (400, "Bad Params", None)
    assert error(mi, "raise_event", ["E_TEST", [{"a": 1}]]) == (400, "Bad Params", None)
    assert error(mi, "raise_event", ["E_TEST", {"a": 1}]) == (400, "No Params", None)
    assert error(mi, "raise_event", ["E_TEST", True]) == (400, "No Params", None)


def test_raise_event_params_keeps_duplicates_and_order() -> None:
    assert raise_event_params('{"a":1,"a":"2","":3}') == [("a", 1), ("a", "2"), ("", 3)]
    assert raise_event_params("{}") is None
    with pytest.raises(Exception, match="Bad Params"):
        raise_event_params("7")


# -- kafka_publish --------------------------------------------------------------------------------


def test_kafka_publish_checks(mi: MIDispatcher, service: FakeService) -> None:
    assert error(mi, "kafka_publish", ["nope", "m"]) == (
        400,
        "Bad parameter value",
        "unknown broker_id [nope]",
    )
    assert (
        error(mi, "kafka_publish", ["k1", "m", "key", "noroute"])[2]
        == "unknown report route 'noroute'"
    )
    # A broker_id definition pasted in place of a name: never echoed with its password.
    pasted = "[k9]h:9092/t?g.sasl.password=hunter2"
    for params in ([pasted, "m"], ["k1", "m", "key", pasted]):
        detail = error(mi, "kafka_publish", params)[2]
        assert detail is not None and "g.sasl.password=*****" in detail, detail
        assert "hunter2" not in detail
    assert error(mi, "kafka_publish", {"broker_id": "k1", "message": "m", "wait": "perhaps"})[
        2
    ] == ("Bad type for parameter 'wait'")
    assert error(mi, "kafka_publish", ["k1"])[2] == "Too few or too many parameters"
    assert result(mi, "kafka_publish", ["k1", "hello"]) == "OK"
    assert result(mi, "kafka_publish", {"broker_id": "k2", "message": 42, "key": ""}) == "OK"
    assert service.ek.stats()["broker_ids"]["k1"]["accepted"] == 1


def test_kafka_publish_wait_returns_the_report(mi: MIDispatcher, service: FakeService) -> None:
    ran: list[Any] = []
    service.ek.add_report_route("r", ran.append)
    service.routes.add("r")
    service.default_report_route = "r"
    # k1 has t.message.timeout.ms=300 and no broker: the report is a failure, quickly.
    report = result(
        mi, "kafka_publish", {"broker_id": "k1", "message": "m1", "key": "c1", "wait": True}
    )
    assert report["kafka_id"] == "k1" and report["kafka_status"] == -1
    assert report["kafka_key"] == "c1" and report["kafka_msg"] == "m1" and report["reason"]
    wait_until(lambda: ran, 5, "the default report route")
    assert len(ran) == 1  # the default report route ran too
    # report_route="" means none, even with a default
    assert (
        result(
            mi,
            "kafka_publish",
            {"broker_id": "k1", "message": "m2", "report_route": "", "wait": "y"},
        )["kafka_status"]
        == -1
    )


def test_kafka_publish_wait_timeout(mi: MIDispatcher, service: FakeService) -> None:
    service.report_wait_timeout = 0.2
    code, msg, data = error(mi, "kafka_publish", ["k2", "m", "", "", 1])  # k2: 300 s timeout
    assert (
        (code, msg) == (408, "Request Timeout") and data is not None and "still in flight" in data
    )


# -- JSON helpers -------------------------------------------------------------------------------


def test_loads_json_keeps_duplicates_and_float_text() -> None:
    obj = loads_json(' {"a":1,"a":2,"b":1.50} ', float_text=True)
    assert isinstance(obj, JObject) and obj["a"] == 1 and obj.pairs[1] == ("a", 2)
    assert isinstance(obj["b"], FloatText) and obj["b"] == "1.50"
    for bad in ("NaN", "[1] 2", "", "{'a':1}"):
        with pytest.raises(ValueError):
            loads_json(bad)
    with pytest.raises(ValueError):
        loads_json("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (-0.0, "0"),
        (5, "5"),
        (2147483647, "2147483647"),
        (2147483648, "2147483648"),
        (1.5, "1.500000"),
        (1e-7, "1.000000e-07"),
        (1.5e10, "15000000000"),
        (1.25e10 + 0.5, "1.250000e+10"),
        (float("inf"), "null"),
        (10**400, "null"),
        ('a/b"\\\x01\x7fé', '"a/b\\"\\\\\\u0001\x7fé"'),
        ("cut\x00here", '"cut"'),
        ([True, False, None], "[true,false,null]"),
    ],
)
def test_compact_json_prints_like_cjson(value: Any, text: str) -> None:
    assert compact_json(value) == text


# -- fuzzing ------------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200))
def test_fuzz_bytes_never_crash(mi: MIDispatcher, body: bytes) -> None:
    reply = asyncio.run(mi.handle(body))
    assert reply is None or ("result" in reply) != ("error" in reply)


_SAFE = [
    "events_list",
    "subscribers_list",
    "raise_event",
    "get_statistics",
    "version",
    "uptime",
    "which",
    "nope",
]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(_SAFE),
    st.none()
    | st.lists(_json, max_size=4)
    | st.dictionaries(
        st.sampled_from(["event", "socket", "params", "statistics", "command", "x"]),
        _json,
        max_size=3,
    ),
    st.none() | st.integers() | st.text(max_size=4),
)
def test_fuzz_requests_always_get_a_valid_reply(
    mi: MIDispatcher, method: str, params: Any, rid: Any
) -> None:
    req: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        req["params"] = params
    reply = asyncio.run(mi.handle(json.dumps(req)))
    assert reply is not None
    orjson.dumps(reply)  # what the HTTP layer does: must never fail
    if isinstance(rid, int) and not -(2**63) <= rid < 2**64:
        assert reply["error"]["code"] == -32600
        return
    assert reply["id"] == rid
    assert ("result" in reply) != ("error" in reply)
    if "error" in reply:
        assert reply["error"]["code"] != -32000, reply  # no command may fail internally


# -- issue 12: one rule for event names, a subscription limit, nothing slow on the loop ---------


@pytest.mark.parametrize("bad", ["E\nINJECTED", "E X", "E\x7f", "E\u200b", "€" * 22])
def test_event_names_follow_the_one_rule(mi: MIDispatcher, service: FakeService, bad: str) -> None:
    for method, params in (
        ("event_subscribe", [bad, "cap:x"]),
        ("raise_event", [bad]),
        ("subscribers_list", [bad]),
    ):
        code, msg, data = error(mi, method, params)
        assert (code, msg) == (400, "Bad parameter value"), (method, code, msg)
        assert data is not None and ("non-printable" in data or "66 bytes" in data), data
    assert [e.name for e in service.ek.evi.list_events()] == ["E_TEST", "E_OTHER"]


def test_mi_subscriptions_are_limited(service: FakeService) -> None:
    limit = 3
    d = MIDispatcher([])

    def count() -> tuple[int, int]:
        evi = service.ek.evi
        return sum(evi.subscriber_count(e.name) for e in evi.list_events()), limit

    for cmd in service_commands(service, lambda: d, count):
        d.add(cmd)
    for i in range(limit):
        assert result(d, "event_subscribe", ["E_TEST", f"cap:s{i}"]) == "OK"
    code, msg, data = error(d, "event_subscribe", ["E_OTHER", "cap:one-more"])
    assert (code, msg) == (429, "Too many subscriptions")
    assert data == "3 MI subscriptions already: the limit is mi.max_subscriptions = 3"
    # A refresh and an unsubscribe are always allowed; then there is room again.
    assert result(d, "event_subscribe", ["E_TEST", "cap:s0", 60]) == "OK"
    assert result(d, "event_subscribe", ["E_TEST", "cap:s1", 0]) == "OK"
    assert result(d, "event_subscribe", ["E_OTHER", "cap:one-more"]) == "OK"
    assert error(d, "event_subscribe", ["E_OTHER", "cap:two-more"])[0] == 429
    assert count()[0] == limit


def test_slow_command_leaves_the_loop_within_a_budget(service: FakeService) -> None:
    from event_kafka.service.workers import WorkerPool

    release = threading.Event()
    pool = WorkerPool(workers=2, budget=0.3, max_pending=2)
    d = MIDispatcher([], offload=pool.run)
    for cmd in service_commands(service, lambda: d):
        d.add(cmd)
    # A command that blocks its thread (as a quadratic parser or a hung resolver would).
    d.add(Command("slow", (Recipe(()),), lambda p: release.wait(30) and "done"))

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ticks = 0

        async def ticker() -> None:  # stands for /health/live: needs the loop every 10 ms
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)  # the probe's period: part of the behaviour measured
                ticks += 1

        tick = loop.create_task(ticker())
        t0 = loop.time()
        slow = [d.handle(b'{"jsonrpc":"2.0","id":1,"method":"slow"}') for _ in range(3)]
        replies = await asyncio.gather(*slow)
        elapsed = loop.time() - t0
        tick.cancel()
        codes = sorted(r["error"]["code"] for r in replies if r is not None)
        assert codes == [408, 408, 503], replies  # two ran out of time, the third was refused
        assert "mi.command_timeout" in replies[0]["error"]["data"]
        assert elapsed < 2.0
        assert ticks >= elapsed / 0.01 / 3  # the loop kept turning while they were stuck
        # Quick commands still run while both workers are stuck... once one is free.
        release.set()
        await await_until(lambda: not pool.pending, 5, "the stuck workers freed")
        reply = await d.handle(b'{"jsonrpc":"2.0","id":2,"method":"version"}')
        assert reply is not None and "result" in reply

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        pool.close()
    assert pool.timeouts == 2 and pool.busy == 1


def test_big_request_bodies_are_parsed_off_the_loop(service: FakeService) -> None:
    seen: list[int] = []

    async def offload(fn: Any) -> Any:
        seen.append(threading.get_ident())
        return await asyncio.to_thread(fn)

    d = MIDispatcher([], offload=offload)
    for cmd in service_commands(service, lambda: d):
        d.add(cmd)
    big = orjson.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "get_statistics", "params": [["all"] * 2000]}
    )
    reply = asyncio.run(d.handle(big))
    assert reply is not None and "result" in reply
    assert len(seen) == 2  # the parse and the (synchronous) command


# -- trust: MI sockets get the allow-list of librdkafka properties (issue 12 item 1) ----------

CODE_LOADING = "kafka:127.0.0.1:1/t?g.ssl.providers=/tmp/evil"


def test_subscribe_refuses_properties_that_load_code(
    mi: MIDispatcher, service: FakeService
) -> None:
    code, msg, data = error(mi, "event_subscribe", ["E_TEST", CODE_LOADING])
    assert (code, msg) == (400, "Bad parameter value")
    assert data is not None
    assert "property g.ssl.providers at position 20: loads code" in data
    assert "not allowed from the MI (the operator can allow it in [mi] allow_properties)" in data
    assert service.ek.evi.subscriber_count("E_TEST") == 0
    for socket in (
        "kafka:127.0.0.1:1/t?g.sasl.mechanisms=GSSAPI&g.sasl.kerberos.principal=x;id",
        "kafka:127.0.0.1:1/t?g.ssl.ca.location=/etc/shadow",
        "kafka:127.0.0.1:1/t?g.sasl.oauthbearer.token.endpoint.url=http://169.254.169.254/",
    ):
        assert error(mi, "event_subscribe", ["E_TEST", socket])[0] == 400
    # Lookups parse with the same policy: such a socket matches nobody.
    assert error(mi, "subscribers_list", ["E_TEST", CODE_LOADING])[0] == 404
    # The safe list still covers what a subscriber needs, secrets included.
    safe = "kafka:127.0.0.1:1/t?g.sasl.mechanisms=SCRAM-SHA-512&g.sasl.password=x&t.acks=all"
    assert result(mi, "event_subscribe", ["E_TEST", safe]) == "OK"


def test_subscribe_policy_widened_by_the_operator(mi: MIDispatcher, service: FakeService) -> None:
    from event_kafka.service.config import mi_policy

    service.socket_policy = mi_policy(["ssl.providers"])  # type: ignore[attr-defined]
    assert result(mi, "event_subscribe", ["E_TEST", CODE_LOADING, 0]) == "OK"
    code, _, data = error(
        mi, "event_subscribe", ["E_TEST", CODE_LOADING.replace("providers", "engine.location")]
    )
    assert code == 400 and data is not None and "loads code" in data


def test_refusal_reason_survives_a_long_socket(mi: MIDispatcher) -> None:
    socket = f"kafka:127.0.0.1:1/{'t' * 200}?g.client.id={'x' * 40}&g.ssl.providers=x"
    data = error(mi, "event_subscribe", ["E_TEST", socket])[2]
    assert data is not None and len(data) <= 300
    assert "loads code" in data and "allow_properties" in data
