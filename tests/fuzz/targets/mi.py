"""Target (c): MI dispatch (JSON-RPC), its reply oracle and the request generator."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from event_kafka import EventKafka
from event_kafka.service.mi import MIDispatcher, service_commands

from .oracles import (
    FuzzFailure,
    _check,
    message_ok,
    sensitive_values,
)
from .sockets import (
    _free_text,
)

# --------------------------------------------------------------------------------------------
# (c) MI dispatch


class MIEnv:
    """An :class:`~event_kafka.service.mi.MIService` around a real EventKafka whose brokers
    are unreachable (127.0.0.1:1): every command runs for real, nothing leaves the process.

    ``handle(body)`` runs one request on a private event loop. Sockets the fuzzer may
    subscribe are a small fixed set, so producers (threads) stay bounded.
    """

    EVENTS = ("E_TEST", "E_OTHER", "E_FUZZ")
    SOCKETS = (
        "kafka:127.0.0.1:1/fz1?t.message.timeout.ms=200",
        "kafka:127.0.0.1:1/fz2?t.message.timeout.ms=200&key=callid",
        "udp:127.0.0.1:9",
        "tcp:127.0.0.1:9/e",
    )
    STATIC = ("E_OTHER", "kafka:127.0.0.1:1/static?t.message.timeout.ms=200")
    SECRET = "MiFuzzS3cretValue"
    """In the configured broker_ids only: no reply may ever show it."""
    REQUEST_SECRET = "MiFuzzReqS3cret"
    """Sent by the fuzzer only as a password in a ``socket`` param: no reply may show it."""
    BROKER_IDS = (
        "[k1]127.0.0.1:1/t1?t.message.timeout.ms=200&g.queue.buffering.max.messages=1000"
        f"&g.sasl.password={SECRET}",
        "[k2]127.0.0.1:1/t2?t.message.timeout.ms=200&g.queue.buffering.max.messages=1000",
    )

    def __init__(self) -> None:
        self.ek = EventKafka(broker_ids=self.BROKER_IDS, flush_timeout=0.0)
        for name in self.EVENTS:
            self.ek.evi.publish_event(name)
        self.ek.evi.subscribe(self.STATIC[0], self.STATIC[1], expire=None)
        self.started_at = time.time() - 5
        self.report_wait_timeout = 0.0
        self.default_report_route: str | None = None
        self.dispatcher = MIDispatcher([])
        for cmd in service_commands(self, lambda: self.dispatcher):
            self.dispatcher.add(cmd)
        self.loop = asyncio.new_event_loop()
        self.count = 0

    # -- MIService
    def report_routes(self) -> tuple[str, ...]:
        return ()

    def statistics(self) -> dict[str, dict[str, int | float]]:
        return {"event_kafka": {"accepted": 3, "delivered": 2}, "mi": {"requests": self.count}}

    def is_static(self, event: str, socket: str) -> bool:
        return (event, socket) == self.STATIC

    # -- running
    def handle(self, body: bytes | str) -> Any:
        self.count += 1
        return self.loop.run_until_complete(self.dispatcher.handle(body))

    def close(self) -> None:
        self.loop.run_until_complete(asyncio.sleep(0))  # one loop turn: callbacks run, no wait
        self.loop.close()
        self.ek.close(0.0)


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN / Infinity: not JSON, a parse error for the dispatcher


def _request_id(body: bytes | str) -> tuple[bool, Any]:
    """(has a usable id, the id) as the dispatcher should echo it."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        req = json.loads(text, object_pairs_hook=_first_wins, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(req, dict) or "id" not in req:
        return False, None
    rid = req["id"]
    if isinstance(rid, bool) or not (rid is None or isinstance(rid, int | str | float)):
        return False, None
    if isinstance(rid, float) and not math.isfinite(rid):
        return False, None
    if isinstance(rid, int) and not -(2**63) <= rid < 2**64:
        return False, None
    return True, rid


def check_mi_reply(
    body: bytes | str, reply: Any, secrets: Iterable[str] = (), loose: Iterable[str] = ()
) -> str:
    """The oracle of one MI request: a JSON-RPC 2.0 reply the HTTP layer can send, showing
    none of ``secrets`` (nor of ``loose``: secrets the request held outside a well-formed
    socket property: a password with the '?' forgotten or after a stray '=')."""
    if reply is None:
        return "notification"
    _check(isinstance(reply, dict) and reply.get("jsonrpc") == "2.0", f"mi: reply {reply!r:.80}")
    _check(("result" in reply) != ("error" in reply), "mi: result and error")
    try:
        text = orjson.dumps(reply)  # what http.py does with it
    except Exception as exc:
        raise FuzzFailure(f"mi: reply not serialisable: {exc}") from exc
    for secret in secrets:
        _check(secret.encode() not in text, "mi: secret in reply")
    for secret in loose:
        _check(secret.encode() not in text, "mi: secret outside a well-formed pair in reply")
    ok, rid = _request_id(body)
    # A parse error (a nesting or text limit may refuse what json.loads took) has no id.
    if ok and not ("error" in reply and reply["error"]["code"] in (-32600, -32700)):
        _check(reply.get("id") == rid, f"mi: id {reply.get('id')!r} for {rid!r}")
    if "error" not in reply:
        return "result"
    err = reply["error"]
    _check(isinstance(err, dict) and isinstance(err.get("code"), int), "mi: error code")
    message_ok(err.get("message"), "mi")
    _check(set(err) <= {"code", "message", "data"}, f"mi: error members {set(err)}")
    if "data" in err:
        message_ok(err["data"], "mi data", limit=len(body) + 1000)  # may quote the input
    _check(
        not (err["code"] == -32000 and err.get("data") == "Internal error"),
        "mi: a command failed internally (-32000 Internal error)",
    )
    return f"error {err['code']}"


_SOCKET_METHODS = frozenset(
    ["event_subscribe", "evi:subscribe", "subscribe", "subscribers_list", "evi:subscribers"]
)


def _socket_params(body: bytes | str) -> list[str]:
    """The ``socket`` param of a request (by name, or second positional of the commands
    taking one), as the dispatcher would read it."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        req = json.loads(text, object_pairs_hook=_first_wins, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return []
    if not isinstance(req, dict) or not isinstance(req.get("method"), str):
        return []
    if req["method"] not in _SOCKET_METHODS:
        return []
    params = req.get("params")
    if isinstance(params, dict):
        value = params.get("socket")
    elif isinstance(params, list) and len(params) >= 2:
        value = params[1]
    else:
        return []
    return [value] if isinstance(value, str) else []


def mi_target(env: MIEnv, body: bytes | str) -> str:
    try:
        reply = env.handle(body)
    except Exception as exc:
        raise FuzzFailure(f"mi: {type(exc).__name__} out of handle(): {exc!s:.200}") from exc
    # REQUEST_SECRET is generated as a password inside a ``socket`` param; mutations may move
    # it elsewhere: echoing another param (an event name) is fine, a socket that holds it
    # outside a well-formed pair must still hide it.
    secrets, loose = [MIEnv.SECRET], []
    for value in _socket_params(body):
        if MIEnv.REQUEST_SECRET in value:
            wellformed = MIEnv.REQUEST_SECRET in sensitive_values(value)
            (secrets if wellformed else loose).append(MIEnv.REQUEST_SECRET)
    return check_mi_reply(body, reply, secrets, loose)


def _jdump(value: Any) -> str:
    """JSON text; a list of 2-tuples wrapped in :class:`Obj` prints as an object (duplicate
    names kept, in order)."""
    if isinstance(value, Lit):
        return str.__str__(value)
    if isinstance(value, Obj):
        return "{" + ",".join(f"{_jdump(k)}:{_jdump(v)}" for k, v in value.pairs) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_jdump(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "1e999" if value > 0 else "-1e999"
    return json.dumps(value, ensure_ascii=False)


class Obj:
    """A JSON object as ordered pairs (duplicates allowed)."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


class Lit(str):
    """JSON text :func:`_jdump` writes as is."""


SURROGATE_STRINGS = [
    *[Lit('"\\ud800"'), Lit('"a\\udfffb"'), Lit('"\\udbff\\udbff"'), Lit('"\\uDC00x"')],
    Lit('"\\ud83d\\ude00"'),  # a valid pair (U+1F600): accepted like any text
]
"""JSON strings with UTF-16 surrogate escapes, most of them unpaired (a Python ``str`` can
hold those, UTF-8 cannot: a reply or record echoing one must not crash)."""


def rjson(r: random.Random, depth: int = 0) -> Any:
    """A random JSON value, nested at most 5 deep; strings sometimes hold surrogate escapes."""
    kind = r.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return r.choice([True, False])
    if kind == 2:
        return r.choice([0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63, 2**64, 10**30])
    if kind == 3:
        return r.choice([0.5, -1.5, 1e300, 1e-300, 3.0, math.inf])
    if kind in (4, 5):
        return r.choice(SURROGATE_STRINGS) if r.random() < 0.03 else _free_text(r, 16)
    if kind in (6, 7):
        return [rjson(r, depth + 1) for _ in range(r.randint(0, 4))]
    return Obj([(_free_text(r, 6), rjson(r, depth + 1)) for _ in range(r.randint(0, 4))])


def _huge(r: random.Random) -> str:
    return r.choice("ax€") * r.choice([1000, 70_000, 300_000])


def _param_value(r: random.Random, env_names: list[str]) -> Any:
    roll = r.random()
    if roll < 0.45:
        return r.choice(
            [
                *MIEnv.EVENTS,
                *MIEnv.SOCKETS,
                MIEnv.STATIC[1],
                "k1",
                "k2",
                "nope",
                "",
                "all",
                "event_kafka:",
                "mi:requests",
                "1",
                "0",
                "yes",
                "true",
                "-5",
                "+7",
                "2147483648",
                '{"a":1,"b":"x","c":[1],"d":null,"a":true}',
                "[1,2]",
                "{",
                *env_names[:3],
                "kafka:h:1/t?g.sasl.password=AnyPosS3cret",
                "kafka:h:1/t?g.nope=1&g.sasl.password=AnyPosS3cret",
            ]
        )
    if roll < 0.5:
        return [r.choice(["all", "event_kafka:", "mi:requests", "x", 1, None])]
    if roll < 0.52:
        return _huge(r)
    return rjson(r)


_PARAM_POOLS: dict[str, list[Any]] = {
    "event": [*MIEnv.EVENTS, "E_NONE", "", "e" * 65],
    "socket": [
        *MIEnv.SOCKETS,
        *[MIEnv.STATIC[1], "kafka:", "nope:x", "udp:127.0.0.1:0"],
        f"kafka:127.0.0.1:1/fz1?t.acks=x&g.sasl.password={MIEnv.REQUEST_SECRET}",
        "kafka:127.0.0.1:1/fz1?t.message.timeout.ms=200&g.ssl.key.password=" + MIEnv.REQUEST_SECRET,
        f"kafka:127.0.0.1:1/fz2?g.sasl.password={MIEnv.REQUEST_SECRET}]&g.nope=1",
    ],
    "expire": [0, 1, 3600, -1, "10", "x", 2**31, 1.5, True],
    "params": [[], ["a", 1], [None], '{"a":1,"b":"x","c":[1],"d":null,"a":true}', "{", 5, {}],
    "broker_id": ["k1", "k2", "nope", "", 1],
    "message": ["m", "", "é" * 10, 7, None],
    "key": ["key", "", 1],
    "report_route": ["", "r", "none"],
    "wait": [0, 1, "yes", "no", True, False, "maybe"],
    "statistics": [["all"], ["event_kafka:"], ["mi:requests", "accepted"], [], ["x:"], [1]],
    "command": ["version", "evi:", "nope", "which", "statistics:", ""],
}


def gen_mi_body(r: random.Random, commands: Mapping[str, list[tuple[str, ...]]]) -> bytes:
    """A JSON-RPC request. ``commands`` maps each callable name to its recipes: 40 % of the
    requests follow a recipe (positional or named) with plausible values, the rest are random
    envelopes and params shapes."""
    names = sorted(commands)
    if r.random() < 0.4:
        method: Any = r.choice(names)
        recipe = r.choice(commands[method])
        values = [
            r.choice(_PARAM_POOLS.get(n, [""])) if r.random() < 0.9 else _param_value(r, names)
            for n in recipe
        ]
        params: Any = (
            list(values) if r.random() < 0.5 else Obj(list(zip(recipe, values, strict=True)))
        )
        if not recipe and r.random() < 0.7:
            params = None
        pairs = [("jsonrpc", "2.0"), ("id", r.randint(0, 99)), ("method", method)]
        if params is not None:
            pairs.append(("params", params))
        return _jdump(Obj(pairs)).encode("utf-8", "surrogateescape")
    method = r.choice([*names, "nope", "", "VERSION", "evi:", "which ", "kafka_publish\0"])
    if r.random() < 0.05:
        method = rjson(r)
    roll = r.random()
    if roll < 0.2:
        params = None
    elif roll < 0.6:
        params = [_param_value(r, names) for _ in range(r.randint(0, 6))]
    elif roll < 0.9:
        keys = [*_PARAM_POOLS, "x"]
        params = Obj([(r.choice(keys), _param_value(r, names)) for _ in range(r.randint(0, 5))])
    else:
        params = rjson(r)
    pairs = []
    if r.random() < 0.95:
        pairs.append(("jsonrpc", "2.0" if r.random() < 0.95 else rjson(r)))
    if r.random() < 0.85:
        rid = r.choice([1, 0, -1, 2**63, "x", None, 1.5, 7, "id-1", SURROGATE_STRINGS[0]])
        if r.random() < 0.05:
            rid = r.choice([2**64, True, [1], {}])  # invalid
        pairs.append(("id", rid))
    pairs.append(("method", method))
    if params is not None:
        pairs.append(("params", params))
    if r.random() < 0.03:
        pairs.append((r.choice(["extra", "method", "id"]), rjson(r)))
    if r.random() < 0.2:
        r.shuffle(pairs)
    # surrogateescape: a stray "\udcff" of the text pools becomes an invalid UTF-8 byte.
    return _jdump(Obj(pairs)).encode("utf-8", "surrogateescape")


def mi_commands(dispatcher: MIDispatcher) -> dict[str, list[tuple[str, ...]]]:
    """Every callable name of ``dispatcher`` and its recipes (for :func:`gen_mi_body`)."""
    out = {}
    for cmd in dispatcher.commands:
        for name in (cmd.name, *cmd.aliases):
            out[name] = [r.params for r in cmd.recipes]
    return out
