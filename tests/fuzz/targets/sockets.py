"""Target (a): the socket and broker_id grammar, and its input generator."""

from __future__ import annotations

import random
import string

from event_kafka.errors import SocketError
from event_kafka.kafka_socket import check_command, parse_broker_id, parse_socket

from .oracles import (
    FuzzFailure,
    _check,
    check_secrets,
    loose_secrets,
    message_ok,
    sensitive_values,
)

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
