"""Every parser that sees outside input runs in linear time (issue 12 item 2).

Each case times a ~1 KiB and a ~64 KiB hostile input (the best of a few runs, so a loaded
machine does not decide) and bounds the ratio: 64x more input may cost at most 8 x 64 x the
time plus a small constant (big inputs fall out of the CPU caches: linear parsers measure
60-400x here). A quadratic parser costs ~4000x and fails by far; a run that exceeds its bound
is interrupted, so a regression fails in seconds instead of hanging. Speed itself is measured
in bench/, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress

import pytest

from event_kafka.cjson import loads_json
from event_kafka.jsonstream import StreamSplitter
from event_kafka.kafka_socket import mask_secrets, parse_broker_id, parse_socket
from event_kafka.migrate import migrate_cfg
from event_kafka.properties import redact, untrusted_policy
from event_kafka.service.config import KeyLines, load_config_text
from event_kafka.service.ingest import parse_notification
from event_kafka.sip import callid_of
from event_kafka.transports.tcp_connection import _ReplyBuffer
from tests.support.timing import best_of

SMALL, LARGE = 1024, 64 * 1024
FACTOR = 8
SLACK_S = 0.05  # fixed costs (a first catalogue lookup, allocator) that do not grow
CAP_S = 5.0  # no 64 KiB input may take longer, whatever the ratio (it would stall the MI)


def _quiet(fn: Callable[[str], object], text: str) -> None:
    with suppress(Exception):  # rejected input is the point: only the time matters
        fn(text)


def _best(fn: Callable[[str], object], text: str, runs: int, limit: float = CAP_S) -> float:
    return best_of(lambda: _quiet(fn, text), runs, limit)


def _fill(unit: str, size: int, head: str = "", tail: str = "") -> str:
    return head + unit * ((size - len(head) - len(tail)) // len(unit) + 1) + tail


def _chunked_feed(cls: Callable[[], object], chunk: int = 8) -> Callable[[str], object]:
    """Feed the text in small segments, as a slow sender would."""

    def run(text: str) -> object:
        splitter = cls()
        data = text.encode()
        for i in range(0, len(data), chunk):
            splitter.feed(data[i : i + chunk])  # type: ignore[attr-defined]
        return None

    return run


_MI = untrusted_policy(source="the MI")


def _mi_socket(text: str) -> object:
    """What MI event_subscribe runs on its socket: the allow-list and the refusal's text."""
    return parse_socket(text, policy=_MI)


# (name, parser, make(size) -> hostile text)
CASES: list[tuple[str, Callable[[str], object], Callable[[int], str]]] = [
    # The case: secret-looking names and no '=' (the masking regex backtracked).
    ("socket: password runs", parse_socket, lambda n: _fill("password", n, "kafka:")),
    ("socket: password= runs", parse_socket, lambda n: _fill("apassword=", n, "kafka:h/t")),
    ("socket: many g.", parse_socket, lambda n: _fill("g.a=b&", n, "kafka:h/t?", "&")),
    ("socket: many &", parse_socket, lambda n: _fill("&", n, "kafka:h/t?g.sasl.password=x")),
    ("socket: ?password", parse_socket, lambda n: _fill("?password=", n, "kafka:h/t")),
    ("socket: = runs", parse_socket, lambda n: _fill("=", n, "kafka:h/t?g.x")),
    ("socket: dup", parse_socket, lambda n: _fill("t.acks=1&", n, "kafka:h/t?", "g.x")),
    ("MI socket: refused", _mi_socket, lambda n: _fill("g.ssl.providers=x&", n, "kafka:h/t?")),
    ("MI socket: safe", _mi_socket, lambda n: _fill("g.linger.ms=5&", n, "kafka:h/t?", "g.x")),
    ("MI socket: password", _mi_socket, lambda n: _fill("password", n, "kafka:h/t?g.")),
    ("broker_id: no ]", parse_broker_id, lambda n: _fill("password", n, "[")),
    ("broker_id: ids", parse_broker_id, lambda n: _fill("[secret=", n, "", "]h/t?g.x=1")),
    ("mask_secrets", mask_secrets, lambda n: _fill("private.key", n)),
    ("mask_secrets ?", mask_secrets, lambda n: _fill("passphrase=a?", n)),
    ("redact", lambda t: redact(t, ["a" * 300 + "b", "aaab", "x"]), lambda n: _fill("a", n)),
    ("MI JSON: nested", loads_json, lambda n: _fill("[", n)),
    ("MI JSON: surrogates", loads_json, lambda n: _fill("\\ud800", n, '"', '"')),
    ("MI JSON: whitespace", loads_json, lambda n: _fill(" ", n, "", "1 x")),
    ("MI JSON: keys", loads_json, lambda n: _fill('"a":1,', n, "{", '"a":1}')),
    ("MI JSON: digits", loads_json, lambda n: _fill("1", n, "0.")),
    ("ingest: nested", lambda t: parse_notification(t.encode()), lambda n: _fill("[", n)),
    (
        "ingest: params",
        lambda t: parse_notification(t.encode()),
        lambda n: _fill('"a":1.5,', n, '{"jsonrpc":"2.0","method":"E","params":{', '"b":1}}'),
    ),
    ("ingest splitter: string", _chunked_feed(StreamSplitter), lambda n: _fill("\\\\", n, '{"')),
    ("ingest splitter: {", _chunked_feed(StreamSplitter), lambda n: _fill('{"a":[', n)),
    (
        "tcp replies: string",
        _chunked_feed(lambda: _ReplyBuffer(1 << 20)),
        lambda n: _fill("x", n, '{"'),
    ),
    (
        "tcp replies: many",
        _chunked_feed(lambda: _ReplyBuffer(1 << 20)),
        lambda n: _fill('{"id":1}', n),
    ),
    (
        "SIP Call-ID: folded spaces",
        callid_of,
        lambda n: _fill(" ", n, "BYE sip:a@b SIP/2.0\r\nCall-ID: x", "y\r\n z\r\n\r\n"),
    ),
    ("SIP: long header", callid_of, lambda n: _fill("X", n, "BYE sip:a@b SIP/2.0\r\n", "\r\n")),
    (
        "migrate: module regex",
        migrate_cfg,
        lambda n: _fill("(.*)", n, 'modparam("', '", "b", "x")'),
    ),
    (
        "migrate: nested regex",
        migrate_cfg,
        lambda n: _fill("(a*)*", n, 'modparam("(', ')", "b", "x")'),
    ),
    ("migrate: comments", migrate_cfg, lambda n: _fill("/* /* a */", n, "", "*/")),
    ("migrate: open calls", migrate_cfg, lambda n: _fill("modparam(", n)),
    (
        "migrate: broker_ids",
        migrate_cfg,
        lambda n: _fill('modparam("event_kafka","broker_id","[k]h/t?g.sasl.password=x");', n),
    ),
    ("config lines: keys", KeyLines, lambda n: _fill("a.", n, "", "a")),
    ("config lines: quotes", KeyLines, lambda n: _fill('"a" . ', n, "[", "")),
    ("config lines: spaces", KeyLines, lambda n: _fill(" ", n, "a", "b")),
    ("config lines: array", KeyLines, lambda n: _fill('"x",', n, "a = [", "]")),
    ("config: long value", load_config_text, lambda n: _fill("a", n, 'broker_ids = ["[', '"]')),
    (
        "config: secret echo",
        load_config_text,
        lambda n: _fill("password", n, '[mi]\ndefault_report_route = "', '"'),
    ),
]


@pytest.mark.parametrize(("name", "parse", "make"), CASES, ids=[c[0] for c in CASES])
def test_parser_is_linear(
    name: str, parse: Callable[[str], object], make: Callable[[int], str]
) -> None:
    small, large = make(SMALL), make(LARGE)
    assert len(small) >= SMALL and len(large) >= LARGE
    _quiet(parse, small)  # warm caches (catalogue, regex compilation)
    t_small = _best(parse, small, 5)
    bound = min(t_small * (LARGE / SMALL) * FACTOR + SLACK_S, CAP_S)
    t_large = _best(parse, large, 3, limit=min(max(4 * bound, 1.0), CAP_S))
    assert t_large < bound, f"{name}: 1 KiB {t_small * 1e3:.2f} ms, 64 KiB {t_large * 1e3:.1f} ms"
