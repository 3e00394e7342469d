"""Fuzz targets, their oracles and random input generators (issue 8, part 3).

Shared by ``tests/fuzz/test_fuzz_inputs.py`` (hypothesis, short, in CI) and
``tests/fuzz/longrun.py`` (>= 1 M inputs, outside CI). Nothing here opens a socket.

A *target* takes one input, runs it through the code under test and checks the oracle:

* no exception other than the documented rejection (``SocketError``, ``ConfigError``,
  ``IngestError``/``StreamError``, a JSON-RPC error reply);
* every rejection is a non-empty message that names something (a position, a key path, a
  JSON-RPC code and message);
* no secret value of the input in any message or printed form;
* target-specific invariants (round trips, counters, replies the HTTP layer can serialise).

It returns an *outcome label* (for statistics: how deep the input got) or raises
:class:`FuzzFailure`. Every oracle violation is a failure: nothing is excused as a bug
"already known" (``test_mutations.py`` re-introduces fixed bugs and checks the fuzz tests fail).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import random
import re
import string
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from event_kafka import EventKafka
from event_kafka.errors import ConfigError, SocketError
from event_kafka.jsonstream import StreamError, StreamSplitter
from event_kafka.kafka_socket import check_command, parse_broker_id, parse_socket
from event_kafka.payload import build_payload
from event_kafka.properties import is_sensitive
from event_kafka.service.config import ServiceSettings, load_config_text
from event_kafka.service.ingest import (
    IngestError,
    RaiseOutcome,
    TcpIngestServer,
    UdpIngestServer,
    parse_notification,
)
from event_kafka.service.ingest.tcp import _TcpProtocol
from event_kafka.service.mi import MIDispatcher, service_commands

__all__ = [
    "FuzzFailure",
    "MIEnv",
    "check_mi_reply",
    "config_target",
    "gen_config",
    "gen_mi_body",
    "gen_notification",
    "gen_socket",
    "gen_stream",
    "mi_commands",
    "mi_target",
    "mutate",
    "notification_target",
    "socket_target",
    "stream_target",
    "toml_dumps",
    "udp_target",
]


class FuzzFailure(AssertionError):
    """An oracle violation: the input found a bug."""


def _check(cond: object, what: str) -> None:
    if not cond:
        raise FuzzFailure(what)


# --------------------------------------------------------------------------------------------
# Shared helpers


def message_ok(msg: str, what: str, limit: int = 20_000) -> None:
    """A rejection message: a non-empty string that says something, of bounded length."""
    _check(isinstance(msg, str) and msg.strip(), f"{what}: empty error message")
    _check(len(msg) < limit, f"{what}: error message of {len(msg)} characters")


def sensitive_values(text: str) -> list[str]:
    """Values of ``name=value`` chunks with a sensitive name, distinctive enough to grep for
    (>= 6 characters, alphanumeric, written once in ``text``)."""
    query = text.partition("?")[2]
    out = []
    for chunk in query.split("&"):
        name, eq, value = chunk.partition("=")
        if (
            eq
            and is_sensitive(name)
            and len(value) >= 6
            and value.isascii()
            and value.isalnum()
            and text.count(value) == 1
        ):
            out.append(value)
    return out


_LOOSE_SECRET = re.compile(
    r"(?i)[A-Za-z0-9._-]*(?:password|secret|passphrase|private\.key)[A-Za-z0-9._-]*="
    r"([A-Za-z0-9]{6,})"
)


def loose_secrets(text: str, strict: Iterable[str]) -> list[str]:
    """Secret-looking ``...password=value`` anywhere in ``text`` (not only in a well-formed
    pair after the '?'), written once, that ``strict`` does not already hold."""
    known = set(strict)
    return [
        v
        for v in dict.fromkeys(_LOOSE_SECRET.findall(text))
        if v not in known and text.count(v) == 1
    ]


def check_secrets(what: str, out: str, strict: Iterable[str], loose: Iterable[str]) -> None:
    for secret in strict:
        _check(secret not in out, f"{what}: secret in error")
    for secret in loose:
        _check(secret not in out, f"{what}: secret outside a well-formed pair in error")


# --------------------------------------------------------------------------------------------
# (a) socket and broker_id grammar


def socket_target(text: str) -> str:
    """``parse_socket``, ``parse_broker_id`` and ``check_command`` on ``text``."""
    labels = []
    secrets = sensitive_values(text)
    loose = loose_secrets(text, secrets)
    for kind, label in (("socket", "Kafka socket"), ("broker_id", "broker_id")):
        try:
            if kind == "socket":
                sock = parse_socket(text)
                again = parse_socket(sock.to_text(unmasked=True))
                shown = [str(sock), repr(sock)]
            else:
                bid, sock = parse_broker_id(text)
                _check(bid, "empty broker id accepted")
                _, again = parse_broker_id(f"[{bid}]" + sock.to_text(unmasked=True, prefix=""))
                shown = [str(sock), repr(sock), sock.to_text(prefix="")]
        except SocketError as exc:
            msg = str(exc)
            message_ok(msg, kind)
            _check(msg.startswith(f"invalid {label} "), f"{kind}: message {msg[:80]!r}")
            _check("\n" not in msg and "\r" not in msg, f"{kind}: error not on one line")
            pos = exc.position
            _check(pos is None or 0 <= pos <= len(text), f"{kind}: position {pos} out of range")
            check_secrets(kind, msg + repr(exc), secrets, loose)
            labels.append(f"{kind}:rejected")
            continue
        except Exception as exc:  # the bug: anything but SocketError
            raise FuzzFailure(f"{kind}: {type(exc).__name__}: {exc!s:.200}") from exc
        _check(again == sock and hash(again) == hash(sock), f"{kind}: no round trip")
        for value in sock.secret_values():
            if len(value) >= 6 and text.count(value) == 1:
                for out in shown:
                    _check(value not in out, f"{kind}: secret in {out[:60]!r}")
        labels.append(f"{kind}:ok")
    try:
        code, out = check_command(text)
    except Exception as exc:
        raise FuzzFailure(f"check_command: {type(exc).__name__}: {exc!s:.200}") from exc
    _check(code in (0, 2) and out, "check_command: bad result")
    as_broker = text.lstrip(" \t\r\n").startswith("[")
    _check((code == 0) == (f"{'broker_id' if as_broker else 'socket'}:ok" in labels), "check")
    check_secrets("check_command", out, secrets, loose)
    return " ".join(labels)


_HOSTS = ["127.0.0.1", "localhost", "[::1]", "h", "kafka-1.example.com", "10.0.0.5", ""]
_TOPIC_CHARS = string.ascii_letters + string.digits + "._-"
_WEIRD = ["", " ", "\t", "\n", "\0", "é", "😀", "\udcff", "/", "?", "&", "=", "[", "]", ":", ","]
_FALLBACK_PROPS = [
    ("global", "linger.ms"),
    ("global", "client.id"),
    ("global", "sasl.password"),
    ("global", "compression.codec"),
    ("topic", "acks"),
    ("topic", "message.timeout.ms"),
]


def _catalogue_props() -> list[tuple[str, str, str, str]]:
    """(scope, name, type, range) of every librdkafka property (or a few, without it)."""
    try:
        from event_kafka.properties import catalogue

        cat = catalogue()
    except Exception:
        return [(s, n, "string", "") for s, n in _FALLBACK_PROPS]
    out = []
    for scope, table in (("global", cat.global_props), ("topic", cat.topic_props)):
        for name, info in table.items():
            out.append((scope, name, info.type, info.range))
    return out


PROPS = _catalogue_props()
SECRET_PROPS = [
    "g.sasl.password",
    "g.ssl.key.password",
    "g.ssl.keystore.password",
    "g.sasl.oauthbearer.client.secret",
    "g.ssl.key.pem",
    "g.sasl.pasword",  # misspelt: must be masked too
    "t.sasl.password",
]


def random_secret(r: random.Random) -> str:
    return "Sx" + "".join(r.choices(string.ascii_letters + string.digits, k=r.randint(8, 20)))


def _value_for(r: random.Random, kind: str, rng: str) -> str:
    if kind == "integer":
        lo, _, hi = rng.partition(" .. ")
        try:
            a, b = int(lo), int(hi)
        except ValueError:
            a, b = -10, 10**6
        return str(r.choice([a, b, a - 1, b + 1, r.randint(a, b), 0, -1]))
    if kind == "boolean":
        return r.choice(["true", "false", "1", "0", "yes", "maybe", ""])
    if kind in ("enum value", "CSV flags") and rng:
        options = [o.strip() for o in rng.split(",") if o.strip()]
        if options:
            if kind == "CSV flags" and r.random() < 0.5:
                return ",".join(r.sample(options, min(len(options), r.randint(1, 3))))
            return r.choice([*options, "bogus"])
    if kind == "float":
        return r.choice(["0.5", "1e3", "-1", "nan", "1.5", "x"])
    return _free_text(r, 12)


def _free_text(r: random.Random, n: int) -> str:
    pool = string.ascii_letters + string.digits + "._-:/@ "
    text = "".join(r.choices(pool, k=r.randint(0, n)))
    if r.random() < 0.1:
        text += r.choice(_WEIRD)
    return text


def _gen_pair(r: random.Random, secrets: list[str]) -> str:
    roll = r.random()
    if roll < 0.55 and PROPS:
        scope, name, kind, rng = r.choice(PROPS)
        prefix = "g." if scope == "global" else "t."
        if r.random() < 0.1:
            prefix = "t." if prefix == "g." else "g."  # wrong scope
        return f"{prefix}{name}={_value_for(r, kind, rng)}"
    if roll < 0.7:
        secret = random_secret(r)
        secrets.append(secret)
        return f"{r.choice(SECRET_PROPS)}={secret}"
    if roll < 0.8:
        return r.choice(["key=callid", "key=sipid", "key=", "key"])
    return r.choice(["", "=", "g.", "t.", "x=1", "g.=1", "g.nope=1", "topic.acks=1"]) + (
        _free_text(r, 4) if r.random() < 0.3 else ""
    )


def gen_socket(r: random.Random) -> str:
    """A Kafka socket or broker_id, often valid, often broken in one place."""
    brokers = ",".join(
        f"{r.choice(_HOSTS)}:{r.choice([9092, 1, 65535, 0, 70000])}" for _ in range(r.randint(1, 3))
    )
    if r.random() < 0.05:
        brokers = r.choice(["", "h", "h/x", "a?b"])
    topic = "".join(r.choices(_TOPIC_CHARS, k=r.randint(1, 30)))
    roll = r.random()
    if roll < 0.03:
        topic = "x" * r.choice([249, 250, 1000])
    elif roll < 0.06:
        topic = r.choice([".", "..", "", "a b", "t/u", "é"])
    secrets: list[str] = []
    pairs = [_gen_pair(r, secrets) for _ in range(r.randint(0, 5))]
    if pairs and r.random() < 0.1:
        pairs.append(r.choice(pairs))  # duplicate
    sep = "&&" if r.random() < 0.1 else "&"
    query = ("?" + sep.join(pairs)) if pairs or r.random() < 0.05 else ""
    body = f"{brokers}/{topic}{query}"
    head = r.choices(
        ["kafka:", "[k1]", " \t[id x]\n", "Kafka:", "", "[]", "[k1]kafka:", "kafka"],
        weights=[50, 25, 5, 3, 3, 2, 2, 2],
    )[0]
    return head + body


# --------------------------------------------------------------------------------------------
# (b) configuration loader


def _socket_values(text: str) -> list[str]:
    """The broker_ids and subscription sockets of a TOML text (none if it does not parse:
    then the loader's only message is tomllib's, which quotes no value)."""
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return []
    ids = doc.get("broker_ids", [])
    out = [v for v in ids if isinstance(v, str)] if isinstance(ids, list) else []
    subs = doc.get("subscriptions", [])
    if isinstance(subs, list):
        out += [
            x["socket"] for x in subs if isinstance(x, dict) and isinstance(x.get("socket"), str)
        ]
    return out


def config_target(text: str, secrets: Iterable[str] = ()) -> str:
    """``load_config_text`` on ``text``; ``secrets`` must never be shown."""
    secrets = [s for s in secrets if s and text.count(s) == 1]
    # Where each secret sits decides what is expected: in a broker_id or Kafka socket, masked
    # (even when it is not a well-formed pair there); in a udp:/tcp: socket, masked too;
    # anywhere else (a listen address, a key) it is not a secret to the loader. The MI token is
    # never shown.
    strict = set(re.findall(r'(?m)^\s*token\s*=\s*"([^"\\]*)"', text))
    loose: list[str] = []
    other_scheme: list[str] = []
    for literal in _socket_values(text):
        inside = [x for x in secrets if x in literal]
        if literal.startswith("kafka:") or not re.match(r"[a-z]+:", literal):
            wellformed = sensitive_values(literal)
            strict.update(x for x in inside if x in wellformed)
            loose += [x for x in inside if x not in wellformed]
        elif literal.startswith(("udp:", "tcp:")):
            other_scheme += inside
    loose = [x for x in loose if x not in strict]
    secrets = [x for x in secrets if x in strict]
    try:
        settings = load_config_text(text, "fuzz.toml")
    except ConfigError as exc:
        msg = str(exc)
        message_ok(msg, "config")
        # One problem per line, as a log reader splits them (on CR/LF).
        for line in re.split(r"\r\n|[\r\n]", msg):
            _check(line.startswith("fuzz.toml"), f"config: problem line {line[:80]!r}")
            _check(": " in line, f"config: problem line without a reason {line[:80]!r}")
        check_secrets("config", msg, secrets, loose)
        for secret in other_scheme:
            _check(secret not in msg, "config: secret of a udp/tcp socket in error")
        return "rejected"
    except Exception as exc:
        raise FuzzFailure(f"config: {type(exc).__name__}: {exc!s:.200}") from exc
    _check(isinstance(settings, ServiceSettings), "config: not ServiceSettings")
    shown = [settings.summary()]
    for section in ("mi", "metrics", "udp", "tcp"):
        shown.append(str(settings.listen(section)))  # type: ignore[arg-type]
    shown += [str(sock) for sock in settings.brokers.values()]
    for secret in secrets:
        for out in shown:
            _check(secret not in out, "config: secret in summary/listen/brokers")
        _check(secret not in repr(settings), "config: secret in repr(ServiceSettings)")
    return "accepted"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(s: str) -> str:
    """A TOML basic string (TOML allows no raw control characters or DEL)."""
    out = json.dumps(s, ensure_ascii=False)
    return out.replace("\x7f", "\\u007f")


def toml_key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else toml_string(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_dumps(doc: Mapping[str, Any]) -> str:
    """TOML for ``doc``: scalars and arrays first, then ``[tables]`` and ``[[arrays]]``."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], path: list[str]) -> None:
        subtables = []
        for k, v in table.items():
            if isinstance(v, dict):
                subtables.append((k, v, False))
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                subtables.append((k, v, True))
            else:
                lines.append(f"{toml_key(k)} = {_toml_value(v)}")
        for k, v, is_array in subtables:
            sub = [*path, toml_key(k)]
            if is_array:
                for item in v:
                    lines.append(f"[[{'.'.join(sub)}]]")
                    emit(item, sub)
            else:
                lines.append(f"[{'.'.join(sub)}]")
                emit(v, sub)

    emit(doc, [])
    return "\n".join(lines) + "\n"


_SCHEMA: dict[str, dict[str, str]] = {
    "kafka": {"flush_timeout": "seconds", "queue_full_wait": "seconds"},
    "events": {"publish": "events", "auto_publish": "bool", "auto_publish_max": "count"},
    "mi": {
        "enabled": "bool",
        "listen": "listen",
        "path": "path",
        "token": "token",
        "token_file": "token_file",
        "max_request_bytes": "count",
        "read_timeout": "seconds",
        "max_connections": "count",
        "report_wait_timeout": "seconds",
        "default_report_route": "name",
    },
    "metrics": {
        "enabled": "bool",
        "listen": "listen",
        "check_brokers": "bool",
        "check_timeout": "seconds",
    },
    "logging": {"level": "level", "format": "format", "rate_limit_interval": "seconds"},
}
_UDP = {"listen": "listen", "max_datagram": "count"}
_TCP = {
    "listen": "listen",
    "max_buffer": "count",
    "max_connections": "count",
    "idle_timeout": "seconds",
    "event_param": "name",
}
_ROUTE = {"log": "log", "dead_letter": "name", "count": "bool"}


def _rvalue(r: random.Random, depth: int = 0) -> Any:
    """A random TOML value of a random type."""
    kind = r.randrange(8 if depth < 2 else 6)
    if kind == 0:
        return r.choice([True, False])
    if kind == 1:
        return r.choice([0, 1, -1, 8888, 2**31, -(2**63), 2**63 - 1, r.randint(-99, 99999)])
    if kind == 2:
        return r.choice([0.0, 0.5, -1.5, 1e308, math.inf, -math.inf, math.nan, 1e-9])
    if kind in (3, 4, 5):
        return _free_text(r, 20)
    if kind == 6:
        return [_rvalue(r, depth + 1) for _ in range(r.randint(0, 3))]
    return {_free_text(r, 6) or "k": _rvalue(r, depth + 1) for _ in range(r.randint(0, 3))}


_GOOD: dict[str, list[Any]] = {
    "bool": [True, False],
    "seconds": [0, 0.5, 1, 2.5, 10, 1e9],
    "count": [1024, 4096, 65535, 1 << 20],
    "listen": ["127.0.0.1:0", "[::1]:0", "localhost:0"],
    "path": ["/mi", "/", "/x/y", "/é"[:1] + "a"],
    "name": ["k1", "dlq", "main", "E_X"],
    "events": [["E_A"], ["E_A", "E_B"], []],
    "level": ["DEBUG", "INFO", "WARNING", "ERROR"],
    "format": ["text", "json"],
    "log": ["none", "failure", "all"],
    "token_file": ["/nonexistent/event-kafka-token"],
}
_BAD: dict[str, list[Any]] = {
    "bool": [0, "true"],
    "seconds": [-1, math.inf, math.nan, -math.inf],
    "count": [0, 1, 512, 2**40, -5, 2**63 - 1],
    "listen": [
        *["::1:80", "h:1", ":1", "1.2.3.4:99999", "127.0.0.1:\u00b2", "127.0.0.1:"],
        *["[x]:1", "127.0.0.1:-1", "127.0.0.1:\u0661", "[::1]80"],
    ],
    "path": ["mi", "/a b", "/é", ""],
    "name": ["", "_x", "a b", "\0"],
    "events": [["", "E X"], ["E" * 65], ["é\n"], "E_A"],
    "level": ["info", "TRACE", ""],
    "format": ["xml"],
    "log": ["some", ""],
    "token_file": ["", "token"],
}


def _typed(r: random.Random, kind: str, secrets: list[str]) -> Any:
    roll = r.random()
    if roll < 0.02:
        return _rvalue(r)  # a random type, most of the time the wrong one
    if kind == "token":
        secret = random_secret(r)
        secrets.append(secret)
        return secret if roll < 0.9 else r.choice([secret + " x", " ", "\t" + secret])
    if roll < 0.07:
        value = r.choice(_BAD[kind])
        return _free_text(r, 10) if kind in ("name", "path") and r.random() < 0.3 else value
    return r.choice(_GOOD[kind])


def _section(r: random.Random, schema: Mapping[str, str], secrets: list[str]) -> dict[str, Any]:
    keys = r.sample(sorted(schema), r.randint(0, len(schema)))
    if "token" in keys and "token_file" in keys and r.random() < 0.9:
        keys.remove("token_file")
    out = {k: _typed(r, schema[k], secrets) for k in keys}
    if r.random() < 0.03:
        out[r.choice(["nope", "Listen", "list en", "a\nb", "token "])] = _rvalue(r)
    return out


_NICE_PROPS = ["t.acks=all", "g.linger.ms=5", "t.message.timeout.ms=1000", "key=callid"]
_NICE_PROPS += ["g.compression.codec=lz4", "g.client.id=fuzz", "g.sasl.username=u"]


def _nice_body(r: random.Random) -> str:
    """brokers/topic?props that parse (most of the time)."""
    props = r.sample(_NICE_PROPS, r.randint(0, 3))
    topic = "".join(r.choices(_TOPIC_CHARS, k=r.randint(1, 12))).replace(".", "_")
    return f"127.0.0.1:{r.choice([1, 9092])}/{topic}" + ("?" + "&".join(props) if props else "")


def _gen_broker_id(r: random.Random, secrets: list[str], name: str) -> str:
    text = gen_socket(r) if r.random() < 0.3 else "[x]" + _nice_body(r)
    body = text.split("]", 1)[1] if text.startswith("[") else text.removeprefix("kafka:")
    if r.random() < 0.5:
        secret = random_secret(r)
        secrets.append(secret)
        sep = "&" if "?" in body else "?"
        body += f"{sep}g.sasl.password={secret}"
    return f"[{name}]{body}"


def _gen_sub_socket(r: random.Random, secrets: list[str]) -> str:
    roll = r.random()
    if roll < 0.5:
        body = _nice_body(r)
        if r.random() < 0.5:
            secret = random_secret(r)
            secrets.append(secret)
            body += ("&" if "?" in body else "?") + f"g.ssl.key.password={secret}"
        return "kafka:" + body
    if roll < 0.8:
        text = gen_socket(r)
        if text.startswith("[") and "]" in text:
            text = "kafka:" + text.split("]", 1)[1]
        for s in sensitive_values(text):
            secrets.append(s)
        return text
    # IP literals only: a host name would be resolved (DNS) while the file is validated.
    return r.choice(
        [
            *["udp:127.0.0.1:9", "tcp:127.0.0.1:9/x", "udp:[::1]:9", "udp:127.0.0.1:0", "tcp:"],
            *["ucp:1.2.3.4:5", "udp:127.0.0.1:9?g.x=1", "kafka:", ""],
        ]
    )


def gen_config(r: random.Random) -> tuple[str, list[str]]:
    """(TOML text, secrets it holds). Valid structure with random values, random keys, or
    (with ``mutate``) broken TOML."""
    secrets: list[str] = []
    doc: dict[str, Any] = {}
    names = [r.choice(["k1", "k2", "dlq", "a b", "x"]) for _ in range(r.randint(0, 3))]
    if names:
        doc["broker_ids"] = [_gen_broker_id(r, secrets, n) for n in names]
    for section, schema in _SCHEMA.items():
        if r.random() < 0.4:
            doc[section] = _section(r, schema, secrets)
    if r.random() < 0.3:
        ingest: dict[str, Any] = {}
        for name, schema in (("udp", _UDP), ("tcp", _TCP)):
            if r.random() < 0.7:
                section = _section(r, schema, secrets)
                if r.random() < 0.95:
                    section.setdefault("listen", r.choice(_GOOD["listen"]))
                ingest[name] = section
        doc["ingest"] = ingest
    if r.random() < 0.4:
        doc["subscriptions"] = [
            {
                "event": _typed(r, "name", secrets) if r.random() < 0.2 else "E_A",
                "socket": _gen_sub_socket(r, secrets),
            }
            for _ in range(r.randint(1, 3))
        ]
    if r.random() < 0.3:
        doc["report_routes"] = {
            r.choice(["main", "r", "_x", "a b", "a\nb", "é"]): _section(r, _ROUTE, secrets)
            for _ in range(r.randint(1, 2))
        }
    if r.random() < 0.1:
        doc[_free_text(r, 6) or "x"] = _rvalue(r)
    # A file is decoded from UTF-8: it can hold no lone surrogate (the pools' "\udcff").
    text = toml_dumps(doc).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text, secrets


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
        self.loop.run_until_complete(asyncio.sleep(0))
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


# --------------------------------------------------------------------------------------------
# (d) ingest: notification decoding, UDP datagrams, TCP streams


def notification_target(raw: bytes, event_param: str | None = None) -> str:
    try:
        note = parse_notification(raw, event_param=event_param)
    except IngestError as exc:
        message_ok(str(exc), "ingest")
        _check(exc.code in (-32700, -32600) and exc.message, "ingest: JSON-RPC code/message")
        return f"rejected {exc.code}"
    except Exception as exc:
        raise FuzzFailure(f"ingest: {type(exc).__name__}: {exc!s:.200}") from exc
    _check(isinstance(note.event, str) and note.event, "ingest: empty event")
    _check(len(note.event.encode()) <= 64, "ingest: event name too long")
    # Whatever is accepted is forwarded: as sent, unless an id or event_param was taken out.
    _check(isinstance(note.payload, bytes) and note.payload, "ingest: no payload")
    if event_param is None and not note.has_id:
        _check(note.payload == raw, "ingest: payload differs from what was sent")
    try:  # tcp: with /method or reliable mode rebuild it; a lone \uD800 escape cannot be
        build_payload(note.event, note.params, surrogateescape=True)
    except ValueError:
        pass  # refused by that subscriber (counted), not by ingest
    except Exception as exc:
        raise FuzzFailure(f"ingest: accepted but not rebuildable: {exc!s:.200}") from exc
    if note.has_id:
        try:
            orjson.dumps({"jsonrpc": "2.0", "result": "OK", "id": note.id})
        except Exception as exc:
            raise FuzzFailure(f"ingest: the reply to id {note.id!r:.40} fails: {exc}") from exc
    return "accepted"


def _accept_all(note: Any, listener: str) -> RaiseOutcome:
    return RaiseOutcome() if note.event != "E_REFUSED" else RaiseOutcome((404, "Event not"))


def udp_target(raw: bytes) -> str:
    """One datagram through the UDP listener's handler, as its reader does (no socket)."""
    server = UdpIngestServer(_accept_all, "127.0.0.1", 0)
    try:
        parse_notification(raw)
        bad = False
    except IngestError:
        bad = True
    except Exception:
        bad = False  # a bug, reported by handle() below
    try:
        server.ingest.handle(raw, "127.0.0.1:5060")
    except Exception as exc:
        # The reader thread survives it, but the datagram is neither counted as malformed
        # nor explained: a traceback instead of a clear rejection.
        raise FuzzFailure(f"udp: {type(exc).__name__} out of handle(): {exc!s:.200}") from exc
    c = server.counters
    _check(c.received == 1, "udp: received counter")
    _check(c.malformed == int(bad), "udp: malformed counter")
    _check(c.raised + c.refused + c.malformed == 1, "udp: counters do not add up")
    return "malformed" if bad else "raised"


class FakeTransport(asyncio.Transport):
    """Just enough of an asyncio transport for ``_TcpProtocol``."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return 0  # the peer reads everything

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def _predict_stream(data: bytes, max_size: int) -> tuple[int, int, int, bool, int]:
    """(notifications, malformed, replies, closed, bytes of a notification cut short by the
    end of the stream) the listener must count for ``data``."""
    splitter = StreamSplitter(max_size)
    failed = False
    try:
        objects = splitter.feed(data)
    except StreamError as exc:
        objects, failed = exc.objects, True
    malformed = replies = 0
    for obj in objects:
        try:
            note = parse_notification(obj)
        except IngestError as exc:
            malformed += 1
            replies += exc.id is not None
        else:
            replies += note.has_id
    pending = 0 if failed else splitter.pending
    return len(objects) + failed, malformed + failed, replies, failed, pending


def stream_target(data: bytes, cuts: Iterable[int] = (), max_size: int = 4096) -> str:
    """A TCP stream cut into segments at ``cuts``, through the TCP listener's protocol."""
    server = TcpIngestServer(_accept_all, "127.0.0.1", 0, max_buffer=max_size)
    proto = _TcpProtocol(server)
    transport = FakeTransport()
    proto.connection_made(transport)
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    try:
        for a, b in itertools.pairwise(points):
            proto.data_received(data[a:b])
            if transport.is_closing():
                break
        proto.connection_lost(None)
    except Exception as exc:
        raise FuzzFailure(f"tcp: {type(exc).__name__} out of the protocol: {exc!s:.200}") from exc
    c = server.counters
    _check(c.connections == 0 and not server.connections, "tcp: connection not released")
    _check(c.malformed <= c.received, "tcp: more malformed than received")
    _check(c.raised + c.refused + c.malformed == c.received, "tcp: counters do not add up")
    _check(transport.is_closing() == bool(c.streams_closed_on_error), "tcp: close vs counter")
    # Replies: concatenated JSON-RPC responses, one per notification with an id.
    try:
        replies = StreamSplitter(1 << 30).feed(bytes(transport.written))
    except StreamError as exc:
        raise FuzzFailure(f"tcp: replies do not split: {exc}") from exc
    _check(len(replies) == c.replies, "tcp: reply count")
    for reply in replies:
        obj = orjson.loads(reply)
        _check(obj.get("jsonrpc") == "2.0" and ("result" in obj) != ("error" in obj), "reply")
    if len(data) <= max_size:  # no size limit can strike: the outcome is cut-independent
        *expected, pending = _predict_stream(data, max_size)
        got = [c.received, c.malformed, c.replies, transport.is_closing()]
        # A notification cut short by the end of the stream counts as one malformed input.
        if pending:
            expected = [expected[0] + 1, expected[1] + 1, *expected[2:]]
        _check(got == expected, f"tcp: counted {got}, expected {expected}")
    return "closed" if transport.is_closing() else "open"


_BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"]
_EVENTS = ["E_GOOD", "E_REFUSED", "E_X", "", "E" * 65, "é", "E\0X", "E Y", Lit('"E_\\ud800"')]


def gen_notification(r: random.Random) -> bytes:
    """A JSON-RPC notification as OpenSIPS sends it, or one broken in a way it never would."""
    pairs: list[tuple[str, Any]] = []
    if r.random() < 0.95:
        pairs.append(("jsonrpc", "2.0" if r.random() < 0.93 else rjson(r)))
    method: Any = r.choice(_EVENTS)
    if r.random() < 0.05:
        method = rjson(r)
    if r.random() < 0.95:
        pairs.append(("method", method))
    roll = r.random()
    if roll < 0.4:
        named = [(_free_text(r, 6), rjson(r)) for _ in range(r.randint(0, 5))]
        pairs.append(("params", Obj(named)))
    elif roll < 0.7:
        pairs.append(("params", [rjson(r) for _ in range(r.randint(0, 5))]))
    elif roll < 0.75:
        pairs.append(("params", rjson(r)))
    if r.random() < 0.3:
        ids = [1, 2**31, "x", None, 1.5, True, [1], 2**70, SURROGATE_STRINGS[3]]
        pairs.append(("id", r.choice(ids)))
    if r.random() < 0.04:
        pairs.append((r.choice(["result", "error", "method", "x"]), rjson(r)))
    if r.random() < 0.1:
        r.shuffle(pairs)
    raw = _jdump(Obj(pairs)).encode("utf-8", "surrogateescape")
    roll = r.random()
    if roll < 0.05:  # deep nesting, beyond any limit (a clean "nested too deep")
        # 500 and 900: what the decoder takes but a recursive encoder cannot print again.
        n = r.choice([65, 100, 500, 900, 5000, 100_000])
        deep = b"[" * n + b"]" * n * r.randint(0, 1)
        if r.random() < 0.5:  # in a param (an extra member is refused before it is read)
            raw = b'{"jsonrpc":"2.0","method":"E_GOOD","params":{"p":' + deep + b"}}"
        else:
            raw = raw[:-1] + b',"x":' + deep + b"}"
    elif roll < 0.08:
        raw = raw[:-1] + b',"x":"' + _huge(r).encode() + b'"}'
    elif roll < 0.12:
        at = r.randrange(len(raw) + 1)
        raw = raw[:at] + r.choice(_BAD_UTF8) + raw[at:]
    return raw


def gen_stream(r: random.Random) -> tuple[bytes, list[int]]:
    """A TCP stream (notifications back to back, sometimes broken) and cut points."""
    units = []
    for _ in range(r.randint(1, 6)):
        roll = r.random()
        if roll < 0.7:
            units.append(gen_notification(r))
        elif roll < 0.8:
            note = gen_notification(r)
            units.append(note[: r.randrange(len(note) + 1)])  # truncated
        elif roll < 0.85:
            units.append(r.choice([b"x", b"]", b"}", b"\x00", b"null", b"[1]", b"\xff"]))
        elif roll < 0.9:
            n = r.choice([63, 64, 65, 1000])
            units.append(b'{"a":' + b"[" * n + b"]" * n + b"}")
        else:
            units.append(b'{"jsonrpc":"2.0","method":"E_GOOD","params":["' + b"a" * 5000 + b'"]}')
    data = r.choice([b"", b" ", b"\r\n", b"\t"]).join(units)
    cuts = [r.randrange(len(data) + 1) for _ in range(r.randint(0, 8))]
    if r.random() < 0.05:
        cuts = list(range(len(data)))  # byte by byte
    return data, cuts


# --------------------------------------------------------------------------------------------
# Mutation (the long run's generic engine)

TOKENS: dict[str, list[bytes]] = {
    "socket": [
        *[b"kafka:", b"[", b"]", b"/", b"?", b"&", b"=", b"g.", b"t.", b"key=callid", b","],
        *[b"g.sasl.password=", b"t.acks=all", b"g.linger.ms=5", b"\x00", b"\xc3\xa9"],
    ],
    "config": [
        *[b"[mi]", b"[[subscriptions]]", b"[ingest.tcp]", b"=", b'"', b"'", b"\n", b"["],
        *[b"broker_ids", b"listen", b'"127.0.0.1:0"', b"token", b"inf", b"nan", b"{", b"}"],
    ],
    "json": [
        *[b"{", b"}", b"[", b"]", b'"', b"\\", b":", b",", b'"jsonrpc":"2.0"', b'"id":'],
        *[b'"method":', b'"params":', b"\\u00e9", b"\\u0000", b"null", b"1e999", b"\xff"],
    ],
}


def mutate(r: random.Random, data: bytes, tokens: list[bytes], other: bytes = b"") -> bytes:
    """One to four random edits: flips, inserts, deletes, duplicates, tokens, splices."""
    buf = bytearray(data)
    for _ in range(r.randint(1, 4)):
        op = r.randrange(8)
        at = r.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << r.randrange(8)
        elif op == 1:
            buf[at:at] = bytes([r.randrange(256)])
        elif op == 2 and buf:
            end = min(len(buf), at + r.randint(1, 16))
            del buf[at:end]
        elif op == 3:
            buf[at:at] = r.choice(tokens)
        elif op == 4 and buf:
            end = min(len(buf), at + r.randint(1, 64))
            buf[at:at] = buf[at:end] * r.randint(1, 4)
        elif op == 5:
            del buf[at:]  # truncate
        elif op == 6 and other:
            cut = r.randrange(len(other) + 1)
            buf = buf[:at] + other[cut:]  # splice
        elif op == 7 and buf:
            buf[at:at] = bytes([buf[r.randrange(len(buf))]])
    return bytes(buf)


# --------------------------------------------------------------------------------------------
# Logging noise: librdkafka's connection errors to 127.0.0.1:1 and the rate-limited warnings.


def quiet_logs() -> Callable[[], None]:
    """Silence the library's loggers; returns the function that restores their levels."""
    loggers = [logging.getLogger(name) for name in ("event_kafka", "librdkafka")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)

    def restore() -> None:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)

    return restore
