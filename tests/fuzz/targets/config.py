"""Target (b): the configuration loader, a TOML writer and the configuration generator."""

from __future__ import annotations

import json
import math
import random
import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from event_kafka.errors import ConfigError
from event_kafka.service.config import ServiceSettings, load_config_text

from .oracles import (
    FuzzFailure,
    _check,
    check_secrets,
    message_ok,
    sensitive_values,
)
from .sockets import (
    _TOPIC_CHARS,
    _free_text,
    gen_socket,
    random_secret,
)

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
