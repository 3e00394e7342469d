"""The long run's generic mutation engine, its tokens, and quieting the library's logs."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

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
