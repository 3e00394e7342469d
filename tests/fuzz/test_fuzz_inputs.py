"""Fuzzing of every parser the service exposes (issue 8 §3), hypothesis-driven and short.

Targets and oracles live in :mod:`tests.fuzz.targets` (shared with the long run,
``python -m tests.fuzz.longrun``):

* (a) ``parse_socket`` / ``parse_broker_id`` / ``check_command`` with grammar-aware inputs
  built from librdkafka's own property catalogue (names, typed values, secrets);
* (b) the configuration loader with generated TOML: valid structure with random values,
  random keys and types, broken TOML, secrets in every place one can be written;
* (c) the MI dispatcher directly: recipe-shaped calls, random JSON values and shapes, deep
  nesting, huge strings, invalid UTF-8;
* (d) ingest: notification decoding, the UDP handler and the TCP protocol (split at random
  points): truncated, concatenated, huge, invalid UTF-8, deep nesting, wrong types.

Oracles: only the documented rejection, a non-empty message that names what is wrong, no
secret shown, counters that add up, replies the HTTP/TCP layers can serialise. Any violation
fails the test. The 16 bugs this fuzzing found (KB1-KB16) also have a regression test each
below; ``test_mutations.py`` re-introduces some of them and checks these tests then fail.

The number of inputs run per target is printed at the end of the module (``-s`` not needed).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import os
import random
import re
import socket
import string
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from event_kafka.errors import ConfigError, SocketError
from event_kafka.jsonstream import StreamSplitter
from event_kafka.kafka_socket import parse_broker_id, parse_socket
from event_kafka.service.config import load_config_text, parse_listen
from event_kafka.service.ingest import RaiseOutcome, TcpIngestServer, UdpIngestServer
from event_kafka.service.ingest.tcp import _TcpProtocol
from tests.fuzz import targets as T
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)

INPUTS: collections.Counter[str] = collections.Counter()
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]


# The T.gen_* generators are written for a real random.Random (as the long run uses): each
# branch has the probability it was given. Hypothesis's own Random skews every draw towards
# the simplest value (the first choice, 0.0): a branch at 5 % may then never run at all.
# A failure is still reproducible: hypothesis reports the seed.
GENERATOR = st.randoms(use_true_random=True)


def budget(examples: int) -> settings:
    """A short, deterministic-enough run: ``examples`` inputs, no deadline, no database."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=_HEALTH, database=None
    )


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    restore_logs = T.quiet_logs()
    yield
    restore_logs()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capman is None:
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line("")
        total = sum(INPUTS.values())
        reporter.write_line(f"fuzz inputs run: {total} {dict(sorted(INPUTS.items()))}")


def run(kind: str, call: Callable[[], str]) -> str:
    """Run one input of ``kind`` (counted); an oracle violation (FuzzFailure) propagates."""
    INPUTS[kind] += 1
    return call()


# --------------------------------------------------------------------------------------------
# (a) socket and broker_id

_NAMES = sorted({("g." if s == "global" else "t.") + n for s, n, _, _ in T.PROPS})
_PROP_INFO = {("g." if s == "global" else "t.") + n: (k, r) for s, n, k, r in T.PROPS}
_VALUE_CHARS = st.characters(codec="utf-8", exclude_characters="&=")


@st.composite
def property_pairs(draw: st.DrawFn) -> tuple[str, list[str]]:
    """One ``name=value`` pair; the second item lists the secrets it holds."""
    kind = draw(st.sampled_from(["catalogue", "secret", "key", "junk"]))
    if kind == "catalogue":
        name = draw(st.sampled_from(_NAMES))
        ptype, prange = _PROP_INFO[name]
        rnd = draw(st.randoms(use_true_random=False))
        value = draw(st.just(T._value_for(rnd, ptype, prange)) | st.text(_VALUE_CHARS, max_size=12))
        return f"{name}={value}", []
    if kind == "secret":
        secret = draw(st.text(string.ascii_letters + string.digits, min_size=8, max_size=24))
        secret = "Sx" + secret
        name = draw(st.sampled_from(T.SECRET_PROPS))
        extra = draw(st.sampled_from(["", "", "]", "?", "/", "[", "&x", "=y"]))
        stray = draw(st.sampled_from(["", "", "", "t.acks=", "x"]))  # not a pair of its own
        return f"{stray}{name}={secret}{extra}", [secret]
    if kind == "key":
        return draw(st.sampled_from(["key=callid", "key=sipid", "key=", "key"])), []
    return draw(st.text(_VALUE_CHARS, max_size=8) | st.sampled_from(["", "=", "g.", "t.x="])), []


@st.composite
def socket_texts(draw: st.DrawFn) -> str:
    hosts = st.sampled_from(["127.0.0.1", "h", "[::1]", "kafka-1.example.com", ""])
    ports = st.sampled_from(["9092", "1", "0", "65536", "x", ""])
    brokers = ",".join(
        f"{h}:{p}" for h, p in draw(st.lists(st.tuples(hosts, ports), min_size=1, max_size=3))
    )
    topic = draw(
        st.text(T._TOPIC_CHARS, min_size=1, max_size=40)
        | st.sampled_from([".", "..", "", "a b", "x" * 250, "é"])
    )
    pairs = draw(st.lists(property_pairs(), max_size=6))
    sep = draw(st.sampled_from(["&", "&", "&", "&&"]))
    start = draw(st.sampled_from(["?", "?", "?", "&", " ", ""]))  # the '?' forgotten
    query = start + sep.join(p for p, _ in pairs) if pairs else draw(st.sampled_from(["", "?"]))
    head = draw(
        st.sampled_from(["kafka:", "kafka:", "[k1]", " [k 2]\t", "", "Kafka:", "[]", "[k1"])
    )
    tail = draw(st.sampled_from(["", "", "", "\0", "\udcff", "]", " "]))
    return f"{head}{brokers}/{topic}{query}{tail}"


@budget(500)
@given(socket_texts())
def test_socket_grammar(text: str) -> None:
    run("socket", lambda: T.socket_target(text))


@budget(300)
@given(GENERATOR)
def test_socket_generated(rnd: random.Random) -> None:
    text = T.gen_socket(rnd)
    run("socket", lambda: T.socket_target(text))


# --------------------------------------------------------------------------------------------
# (b) configuration loader


def _toml_scalars() -> st.SearchStrategy[Any]:
    return (
        st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=20)
    )


toml_values = st.recursive(
    _toml_scalars(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
_SECTIONS = {**T._SCHEMA, "ingest.udp": T._UDP, "ingest.tcp": T._TCP}


@st.composite
def config_docs(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A TOML document with the schema's sections and keys, random values of random types,
    some unknown keys, and secrets (sasl passwords, the MI token)."""
    secrets: list[str] = []
    rnd = draw(st.randoms(use_true_random=False))
    doc: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(_SECTIONS)), unique=True, max_size=5)):
        keys = draw(st.lists(st.sampled_from(sorted(_SECTIONS[section])), unique=True))
        table: dict[str, Any] = {}
        for key in keys:
            kind = _SECTIONS[section][key]
            table[key] = draw(st.just(T._typed(rnd, kind, secrets)) | toml_values)
        if draw(st.integers(0, 9)) == 0:
            table[draw(st.text(min_size=1, max_size=6))] = draw(toml_values)
        head, _, sub = section.partition(".")
        if sub:
            doc.setdefault(head, {})[sub] = table
        else:
            doc[head] = table
    if draw(st.booleans()):
        doc["broker_ids"] = [
            T._gen_broker_id(rnd, secrets, draw(st.sampled_from(["k1", "k2", "dlq"])))
            for _ in range(draw(st.integers(1, 3)))
        ]
    if draw(st.booleans()):
        doc["subscriptions"] = [
            {
                "event": draw(st.sampled_from(["E_A", "E_B", ""])),
                "socket": T._gen_sub_socket(rnd, secrets),
            }
            for _ in range(draw(st.integers(1, 3)))
        ]
    if draw(st.integers(0, 3)) == 0:
        doc["report_routes"] = {
            draw(st.sampled_from(["main", "r", "_x", "a b"])): {"dead_letter": "k1", "log": "all"}
        }
    return T.toml_dumps(doc), secrets


@budget(250)
@given(config_docs())
def test_config_structure_with_random_values(case: tuple[str, list[str]]) -> None:
    text, secrets = case
    run("config", lambda: T.config_target(text, secrets))


@budget(200)
@given(GENERATOR)
def test_config_generated(rnd: random.Random) -> None:
    text, secrets = T.gen_config(rnd)
    run("config", lambda: T.config_target(text, secrets))


@budget(250)
@given(GENERATOR, GENERATOR)
def test_config_broken_toml(gen: random.Random, mut: random.Random) -> None:
    """Valid documents with a few random byte edits (most no longer parse as TOML)."""
    text, secrets = T.gen_config(gen)
    raw = T.mutate(mut, text.encode(), T.TOKENS["config"], other=text.encode()[::-1])
    broken = raw.decode("utf-8", "replace")
    run("config", lambda: T.config_target(broken, secrets))


@budget(150)
@given(st.text(max_size=2000))
def test_config_any_text(text: str) -> None:
    run("config", lambda: T.config_target(text))


def test_config_file_not_utf8_and_huge(tmp_path: Path) -> None:
    from event_kafka.service.config import load_config

    cases = {
        "latin1.toml": b'[mi]\nlisten = "caf\xe9:1"\n',
        "nul.toml": b"\x00" * 100,
        "huge.toml": b"# " + b"x" * (4 << 20) + b"\n[mi]\nenabled = true\n",
        "deep.toml": b"a = " + b"[" * 200 + b"]" * 200 + b"\n",
        "deep-table.toml": b"a = " + b"{b = " * 200 + b"1" + b"}" * 200 + b"\n",
        "dotted.toml": b".".join([b"a"] * 20_000) + b" = 1\n",
    }
    for name, data in cases.items():
        INPUTS["config"] += 1
        path = tmp_path / name
        path.write_bytes(data)
        try:
            load_config(path)
        except ConfigError as exc:
            T.message_ok(str(exc), name)
            assert str(exc).startswith(str(path)), str(exc)[:200]


# --------------------------------------------------------------------------------------------
# (c) MI dispatch


_COMMANDS: dict[str, list[tuple[str, ...]]] = {}


def _mi(env: T.MIEnv, body: bytes) -> str:
    if not _COMMANDS:
        _COMMANDS.update(T.mi_commands(env.dispatcher))
    return run("mi", lambda: T.mi_target(env, body))


@budget(600)
@given(GENERATOR)
def test_mi_generated_requests(mi_env: T.MIEnv, rnd: random.Random) -> None:
    body = T.gen_mi_body(rnd, T.mi_commands(mi_env.dispatcher))
    _mi(mi_env, body)


# json.dumps writes these as \uD800-style escapes: unpaired surrogates, and one valid pair.
_SURROGATES = st.sampled_from(["\ud800", "a\udfffb", "\udbff\udbff", "\ud83d\ude00"])


def texts(max_size: int) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size) | _SURROGATES


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts(12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts(6), inner, max_size=4),
    max_leaves=12,
)
_METHODS = [
    "event_subscribe",
    "evi:subscribe",
    "subscribe",
    "events_list",
    "evi:list",
    "subscribers_list",
    "evi:subscribers",
    "raise_event",
    "evi:raise",
    "kafka_publish",
    "get_statistics",
    "statistics:get",
    "version",
    "uptime",
    "which",
]


@budget(500)
@given(
    st.sampled_from([*_METHODS, "nope", ""]) | st.text(max_size=10),
    st.none()
    | st.lists(json_values, max_size=6)
    | st.dictionaries(
        st.sampled_from([*T._PARAM_POOLS, "x"]) | st.text(max_size=4), json_values, max_size=6
    )
    | json_values,
    st.none() | st.integers() | texts(6) | st.floats(allow_nan=False) | st.booleans(),
    st.booleans(),
)
def test_mi_random_json(
    mi_env: T.MIEnv, method: str, params: Any, rid: Any, notification: bool
) -> None:
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if not notification:
        req["id"] = rid
    if params is not None:
        req["params"] = params
    _mi(mi_env, json.dumps(req).encode())


_OPENERS = {"[": "]", '{"a":': "}", '[{"b":[': "]}]", '"x",[': "]"}


@pytest.mark.parametrize("method", _METHODS)
def test_mi_deep_nesting(mi_env: T.MIEnv, method: str) -> None:
    """Nesting inside params (or inside a string param holding JSON, as raise_event takes
    it), for an event without and with a subscriber: a clean reply at every depth, never a
    RecursionError. 500 and 900 levels decode but cannot be printed again recursively."""
    for event, (opener, closer), depth, closed, in_string in itertools.product(
        ("E_TEST", T.MIEnv.STATIC[0]),
        _OPENERS.items(),
        (10, 64, 100, 140, 500, 900, 5_000, 100_000),
        (True, False),
        (False, True),
    ):
        nested = opener * depth + "1" + (closer * depth if closed else "")
        if in_string:
            nested = json.dumps(nested)
        body = f'{{"jsonrpc":"2.0","id":1,"method":"{method}","params":["{event}",{nested}]}}'
        _mi(mi_env, body.encode())


@budget(200)
@given(
    st.sampled_from(_METHODS),
    st.binary(max_size=64),
    st.integers(0, 200),
    st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\x80", b"\x00", b"\x80\x80"]),
)
def test_mi_invalid_utf8_and_truncation(
    mi_env: T.MIEnv, method: str, junk: bytes, cut: int, bad: bytes
) -> None:
    body = f'{{"jsonrpc":"2.0","id":1,"method":"{method}","params":["E_TEST","x"]}}'.encode()
    cut = min(cut, len(body))
    for variant in (body[:cut], body[:cut] + bad + body[cut:], junk, body + body, body + junk):
        _mi(mi_env, variant)


@budget(40)
@given(st.sampled_from(_METHODS), st.sampled_from([70_000, 1_000_000]), st.sampled_from('x€\\"'))
def test_mi_huge_strings(mi_env: T.MIEnv, method: str, size: int, char: str) -> None:
    huge = json.dumps(char * size)
    for params in (f"[{huge}]", f'["E_TEST",{huge}]', f'{{"{char * 1000}":{huge}}}'):
        body = f'{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}'
        _mi(mi_env, body.encode())


def test_mi_still_answers_after_fuzzing(mi_env: T.MIEnv) -> None:
    reply = mi_env.handle(b'{"jsonrpc":"2.0","id":9,"method":"version"}')
    assert reply["id"] == 9 and reply["result"]["Server"].startswith("event-kafka")


# --------------------------------------------------------------------------------------------
# (d) ingest


def _json_with(value: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": "E_GOOD", "params": value}).encode()


@budget(500)
@given(GENERATOR)
def test_notifications_generated(rnd: random.Random) -> None:
    raw = T.gen_notification(rnd)
    run("ingest", lambda: T.notification_target(raw))
    run("udp", lambda: T.udp_target(raw))


@budget(400)
@given(
    st.dictionaries(
        st.sampled_from(["jsonrpc", "method", "params", "id", "result", "x"]),
        json_values,
        max_size=5,
    )
    | json_values,
    st.sampled_from([None, "event", "name"]),
)
def test_notifications_wrong_types(obj: Any, event_param: str | None) -> None:
    raw = json.dumps(obj).encode()
    run("ingest", lambda: T.notification_target(raw, event_param))


@budget(300)
@given(
    st.lists(st.sampled_from(["E_GOOD", "E_REFUSED", "E" * 64, "é"]), min_size=1, max_size=1).map(
        lambda x: x[0]
    ),
    st.lists(json_values, max_size=5) | st.dictionaries(st.text(max_size=6), json_values),
    st.integers(0, 400),
    st.sampled_from([b"", b"\xff", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc3"]),
)
def test_datagrams_truncated_and_invalid_utf8(
    event: str, params: Any, cut: int, bad: bytes
) -> None:
    raw = json.dumps({"jsonrpc": "2.0", "method": event, "params": params}).encode()
    cut = min(cut, len(raw))
    for variant in (raw[:cut], raw[:cut] + bad + raw[cut:], raw + raw, raw + b" " * cut):
        run("udp", lambda v=variant: T.udp_target(v))


@pytest.mark.parametrize("depth", [1, 63, 64, 65, 100, 140, 500, 900, 5_000, 100_000])
def test_datagram_deep_nesting_below_and_far_above_any_limit(depth: int) -> None:
    for raw in (
        _json_with([]).replace(b"[]", b"[" * depth + b"]" * depth),
        b"[" * depth,
        b'{"jsonrpc":"2.0","method":"E","params":{"a":' + b"{" * depth,
    ):
        run("udp", lambda r=raw: T.udp_target(r))


@pytest.mark.parametrize("size", [65_507, 1 << 20])
def test_datagram_huge(size: int) -> None:
    for raw in (
        _json_with(["x" * size]),
        b'{"jsonrpc":"2.0","method":"' + b"E" * size + b'"}',
        b" " * size,
        b"\xff" * size,
    ):
        run("udp", lambda r=raw: T.udp_target(r))


@budget(250)
@given(GENERATOR)
def test_tcp_streams_generated(rnd: random.Random) -> None:
    data, cuts = T.gen_stream(rnd)
    max_size = rnd.choice([1024, 4096, 65536])
    run("tcp", lambda: T.stream_target(data, cuts, max_size))


@budget(300)
@given(
    st.lists(
        st.sampled_from(
            [
                b'{"jsonrpc":"2.0","method":"E_GOOD","params":{"a":1}}',
                b'{"jsonrpc":"2.0","method":"E_GOOD","id":7}',
                b'{"jsonrpc":"2.0","method":"E_REFUSED","id":"r"}',
                b'{"jsonrpc":"2.0","method":"","id":1}',
                b'{"a":"}{\\"[","b":["]"]}',
                b'{"jsonrpc":"2.0","method":"E_GOOD","params":["\xff"],"id":2}',
                b"{" * 70 + b"}" * 70,
                b" \r\n",
                b"}",
                b"]",
                b"x",
                b"{",
                b'"',
                b"\\",
            ]
        ),
        max_size=12,
    ),
    st.lists(st.integers(0, 2000), max_size=10),
)
def test_tcp_streams_concatenated_and_split(units: list[bytes], cuts: list[int]) -> None:
    data = b"".join(units)
    run("tcp", lambda: T.stream_target(data, cuts, 4096))


def test_tcp_stream_huge_and_deep() -> None:
    big = b'{"jsonrpc":"2.0","method":"E_GOOD","params":["' + b"a" * 100_000 + b'"]}'
    cases = [
        (big, []),  # one segment: larger than max_buffer but complete
        (big, list(range(0, len(big), 1000))),  # in 1000-byte segments
        (b"[" * 100_000, [50_000]),
        (b"{" * 100_000, list(range(0, 100_000, 7919))),
        (b'{"a":"' + b"\\" * 9999 + b'"}' * 3, [5000, 5001]),
        (b"\xff" * 10_000, [1]),
    ]
    for data, cuts in cases:
        run("tcp", lambda d=data, c=cuts: T.stream_target(d, c, 4096))


def test_tcp_protocol_after_failure_ignores_more_data() -> None:
    server = TcpIngestServer(T._accept_all, "127.0.0.1", 0, max_buffer=1024)
    proto = _TcpProtocol(server)
    transport = T.FakeTransport()
    proto.connection_made(transport)
    proto.data_received(b"x{}")
    assert transport.is_closing() and server.counters.streams_closed_on_error == 1
    proto.data_received(b'{"jsonrpc":"2.0","method":"E_GOOD"}' * 100)
    assert server.counters.raised == 0 and server.counters.received == 1
    proto.connection_lost(None)
    assert not server.connections


# --------------------------------------------------------------------------------------------
# Regressions: one test per bug this fuzzing found (KB1-KB16), stating the fixed behaviour.


def _mi_env_reply(body: bytes) -> dict[str, Any]:
    env = T.MIEnv()
    try:
        reply = env.handle(body)
    finally:
        env.close()
    assert reply is not None
    return reply


def test_kb1_mi_reply_echoing_a_lone_surrogate_is_serialisable() -> None:
    for body in (
        b'{"jsonrpc":"2.0","id":"\\ud800","method":"version"}',
        b'{"jsonrpc":"2.0","id":1,"method":"kafka_publish","params":["\\udfff","m"]}',
    ):
        orjson.dumps(_mi_env_reply(body))


def test_kb1_mi_kafka_publish_lone_surrogate_is_a_clear_error() -> None:
    reply = _mi_env_reply(
        b'{"jsonrpc":"2.0","id":1,"method":"kafka_publish","params":["k1","\\ud800"]}'
    )
    assert reply["error"]["code"] != -32000, reply


_SURROGATE_NOTES = [
    b'{"jsonrpc":"2.0","method":"\\ud800"}',
    b'{"jsonrpc":"2.0","method":"E_GOOD","id":"\\udc00"}',
    b'{"jsonrpc":"2.0","method":"E_GOOD","params":["a\\udfffb"]}',
    b'{"jsonrpc":"2.0","method":"E_GOOD","params":{"\\ud800":1}}',
    b'{"jsonrpc":"2.0","method":"E_GOOD","params":{"a":"\\udbff\\udbff"},"id":7}',
]
_VALID_PAIR_NOTE = b'{"jsonrpc":"2.0","method":"E_GOOD","params":["\\ud83d\\ude00"]}'


def test_kb1_ingest_lone_surrogates_are_rejected_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    """Unpaired \\uD800-\\uDFFF escapes in a notification's method, id, param names and
    values, sent to a real UDP listener one at a time. Whether ingest refuses one (counted
    malformed) or passes it on is the ingest's choice; what must hold: no exception escapes
    the handler (no traceback logged), each datagram is counted once, as malformed or handed
    on for delivery, and the listener keeps serving (a valid surrogate pair, then a plain
    notification, are delivered). Over TCP, every reliable-mode reply is valid JSON."""
    caplog.set_level(logging.WARNING, logger="event_kafka")
    handed_on: list[str] = []

    def raise_fn(note: Any, listener: str) -> RaiseOutcome:
        handed_on.append(listener)
        return RaiseOutcome()

    server = UdpIngestServer(raise_fn, "127.0.0.1", 0)
    asyncio.run(server.start())
    c = server.counters
    outcomes = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i, raw in enumerate([*_SURROGATE_NOTES, _VALID_PAIR_NOTE, _json_with(["x"])]):
                before = (c.malformed, c.raised + c.refused)
                tx.sendto(raw, server.address)
                wait_until(lambda i=i: c.received > i, 10, f"datagram {i} received")
                assert c.received == i + 1, f"datagram {raw!r} not received (or counted twice)"
                # Then it is counted as malformed or handed on (microseconds later; a handler
                # that crashed in between never does: the deadline fails it).
                wait_until(
                    lambda b=before: (c.malformed, c.raised + c.refused) != b,
                    5,
                    f"datagram {i} counted malformed or handed on",
                )
                after = (c.malformed, c.raised + c.refused)
                outcomes.append((raw, after[0] - before[0], after[1] - before[1]))
    finally:
        server.close()
    for raw, malformed, delivered in outcomes:
        assert (malformed, delivered) in ((1, 0), (0, 1)), (raw, malformed, delivered)
    assert outcomes[-2][2] == 1, "a valid surrogate pair was not delivered"
    assert outcomes[-1][2] == 1, "the listener stopped delivering"
    assert c.received == len(outcomes) == c.malformed + c.raised + c.refused
    assert len(handed_on) == c.raised + c.refused
    # The listener's own records only: producers that earlier tests left pointing at dead
    # brokers log their connection errors under event_kafka too.
    crashes = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("event_kafka.service.ingest")
        and (r.exc_info or r.levelno >= logging.ERROR)
    ]
    assert not crashes, crashes
    T.stream_target(b"".join([*_SURROGATE_NOTES, _VALID_PAIR_NOTE]))


def test_kb2_mi_raise_event_deeply_nested_params() -> None:
    env = T.MIEnv()
    try:
        env.handle(
            b'{"jsonrpc":"2.0","id":1,"method":"event_subscribe","params":'
            b'["E_TEST","udp:127.0.0.1:9"]}'
        )
        param = json.dumps('{"a":' + "[" * 400 + "]" * 400 + "}")
        body = '{"jsonrpc":"2.0","id":1,"method":"raise_event","params":["E_TEST",' + param + "]}"
        reply = env.handle(body.encode())
    finally:
        env.close()
    assert reply["error"]["code"] != -32000, reply


def test_kb2_ingest_deeply_nested_params() -> None:
    raw = _json_with([]).replace(b"[]", b"[" * 500 + b"]" * 500)
    T.udp_target(raw)


@pytest.mark.parametrize("digits", ["1" * 5000, "-" + "9" * 4301])
def test_kb3_mi_integer_param_with_thousands_of_digits(digits: str) -> None:
    body = (
        '{"jsonrpc":"2.0","id":1,"method":"event_subscribe",'
        '"params":["E_TEST","udp:127.0.0.1:9","' + digits + '"]}'
    )
    reply = _mi_env_reply(body.encode())
    assert reply.get("error", {}).get("code") != -32000, reply


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:9092/t?g.sasl.password=Secr3t]pw",
        "[k1 127.0.0.1:9092/t?g.sasl.password=Secr3t]pw&g.nope=1",
        "kafka:h/t?g.ssl.key.password=Secr3t]pw",
        "?g.sasl.password=Secr3tpw",
    ],
)
def test_kb4_broker_id_error_with_bracket_after_the_secret(text: str) -> None:
    with pytest.raises(SocketError) as info:
        parse_broker_id(text)
    assert "Secr3t" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        '[mi]\n"x\\nfake.toml:1: all good" = 1\n',
        '[report_routes.r]\ndead_letter = "k\\nfake.toml:1: all good"\n',
        '[mi]\ndefault_report_route = "r\\rx"\n',
    ],
)
def test_kb5_config_error_lines_stay_one_per_problem(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "svc.toml")
    for line in re.split(r"\r\n|[\r\n]", str(info.value)):
        assert line.startswith("svc.toml"), line


def test_kb6_settings_repr_hides_passwords() -> None:
    settings_ = load_config_text(
        'broker_ids = ["[k1]127.0.0.1:9092/t?g.sasl.password=BrokerS3cret"]\n'
        '[[subscriptions]]\nevent = "E"\n'
        'socket = "kafka:127.0.0.1:9092/t?g.ssl.key.password=SubS3cret"\n'
    )
    for text in (repr(settings_), repr(settings_.model), str(settings_.model)):
        assert "BrokerS3cret" not in text and "SubS3cret" not in text


def test_kb7_ingest_id_beyond_64_bits() -> None:
    for raw in (
        b'{"jsonrpc":"2.0","method":"E_GOOD","id":18446744073709551616}',
        b'{"jsonrpc":"2.0","method":"E_GOOD","id":-9223372036854775809,"x":1}',
    ):
        T.stream_target(raw)


def test_kb8_tcp_notification_cut_by_the_end_of_the_stream_is_counted() -> None:
    server = TcpIngestServer(T._accept_all, "127.0.0.1", 0)
    proto = _TcpProtocol(server)
    proto.connection_made(T.FakeTransport())
    proto.data_received(b'{"jsonrpc":"2.0","method":"E_GOOD"}{"jsonrpc":"2.0","meth')
    proto.connection_lost(None)
    assert (server.counters.received, server.counters.malformed) == (2, 1)


def test_kb9_token_file_that_is_not_a_small_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from event_kafka.service.config import load_config_text, ConfigError\n"
        "try:\n"
        "    load_config_text(sys.argv[1])\n"
        "except ConfigError as exc:\n"
        "    print('ConfigError', exc)\n"
    )
    for path in ("/dev/zero", str(fifo)):
        cfg = f'[mi]\ntoken_file = "{path}"\n'
        try:
            proc = subprocess.run(
                [sys.executable, "-c", script, cfg], capture_output=True, text=True, timeout=20
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"token_file = {path}: still loading after 20 s")
        assert proc.stdout.startswith("ConfigError"), (path, proc.stdout, proc.stderr[-300:])


def test_kb11_config_nested_too_deep_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        load_config_text("a = " + "[" * 1000 + "]" * 1000 + "\n")


@pytest.mark.parametrize(
    "text",
    [
        "kafka:h:9092/topic&g.sasl.password=Secr3tpw",
        "kafka:h:9092/t?t.acks=g.sasl.password=Secr3tpw",
        "[k1]h:9092/topic g.ssl.key.password=Secr3tpw",
    ],
)
def test_kb12_password_outside_a_well_formed_pair(text: str) -> None:
    with pytest.raises(SocketError) as info:
        parse_broker_id(text) if text.startswith("[") else parse_socket(text)
    assert "Secr3tpw" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "kafka:h/t?g.linger\nms=5",
        "kafka:h/t?key=sip\nid",
        "kafka:h/t?g.x\r=1&g.x\r=1",
        "kafka:h/t?g.builtin.features=gzip\n",  # librdkafka's reason quotes the value
    ],
)
def test_kb13_socket_error_stays_on_one_line(text: str) -> None:
    with pytest.raises(SocketError) as info:
        parse_socket(text)
    assert "\n" not in str(info.value) and "\r" not in str(info.value)


@pytest.mark.parametrize(
    "socket_text",
    [
        "udp:127.0.0.1:9?g.sasl.password=Secr3tpw",
        "tcp:127.0.0.1/t?g.sasl.password=Secr3tpw",
    ],
)
def test_kb14_udp_tcp_socket_error_masks_passwords(socket_text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(f'[[subscriptions]]\nevent = "E"\nsocket = "{socket_text}"\n')
    assert "Secr3tpw" not in str(info.value)
    reply = _mi_env_reply(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "event_subscribe",
                "params": ["E_TEST", socket_text],
            }
        ).encode()
    )
    assert "Secr3tpw" not in json.dumps(reply)


def test_kb15_token_file_with_a_nul_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        load_config_text('[mi]\ntoken_file = "/etc/x\\u0000y"\n')


def test_kb16_released_lanes_do_not_pile_up() -> None:
    from event_kafka import EventKafka

    ek = EventKafka(flush_timeout=0.0)
    try:
        evi = ek.evi
        evi.publish_event("E_A")
        evi.publish_event("E_B")
        # Two sockets, one producer (same brokers and properties, other topics).
        evi.subscribe("E_A", "kafka:127.0.0.1:1/a?t.message.timeout.ms=100", expire=None)
        evi.raise_event("E_A", ["x"])
        for _ in range(50):
            evi.subscribe("E_B", "kafka:127.0.0.1:1/b?t.message.timeout.ms=100", expire=60)
            evi.raise_event("E_B", ["x"])
            evi.subscribe("E_B", "kafka:127.0.0.1:1/b?t.message.timeout.ms=100", expire=0)
        wait_until(lambda: not any(ln.stats.in_flight for ln in ek.pool.lanes), 15, "every report")
        # The releaser thread drops a lane once its last report came (not at that instant):
        # lanes that are never dropped still fail here, at the deadline.
        wait_until(lambda: len(ek.pool.lanes) <= 2, 15, "released lanes dropped")
        assert len(ek.pool.lanes) <= 2, f"{len(ek.pool.lanes)} lanes for 2 subscribers"
    finally:
        ek.close(0.0)


@pytest.mark.parametrize("port", ["\u0661", "\u00b2", "\uff18\uff18"])
def test_kb10_listen_port_is_ascii_digits_only(port: str) -> None:
    with pytest.raises(ValueError, match="port must be 0-65535"):
        parse_listen(f"127.0.0.1:{port}")


# -- the splitter stays what the protocol relies on -----------------------------------------


@budget(200)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_splitter_is_cut_independent_on_any_bytes(data: bytes, cuts: list[int]) -> None:
    """Feeding in pieces gives the objects feeding it whole gives (or fails the same way)."""
    INPUTS["tcp"] += 1

    def split(pieces: list[bytes]) -> tuple[list[bytes], bool]:
        s = StreamSplitter(4096)
        out: list[bytes] = []
        for piece in pieces:
            try:
                out += s.feed(piece)
            except Exception as exc:  # only StreamError is allowed
                assert type(exc).__name__ == "StreamError", exc
                return out + exc.objects, True  # type: ignore[attr-defined]
        return out, False

    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    assert split(pieces) == split([data])


def test_socket_parsers_on_every_secret_property_name() -> None:
    """Each secret property, in a socket and a broker_id broken in each usual way: the
    secret never shows (a deterministic sweep next to the random ones)."""
    breakages = ["&g.nope=1", "&", "&&t.acks=1", "=x", "&key=sipid", "&g.linger.ms=-5", "\0"]
    for name in T.SECRET_PROPS:
        for tail in breakages:
            for head in ("kafka:h:1/t?", "[k]h:1/t?", " [k]\th:1/t?"):
                text = f"{head}{name}=Sx1234567890{tail}"
                run("socket", lambda t=text: T.socket_target(t))
                with pytest.raises(SocketError) as info:
                    parse_broker_id(text) if head != "kafka:h:1/t?" else parse_socket(text)
                assert "Sx1234567890" not in str(info.value)
