"""``key=param:<name>``: the record key from a named event parameter (event-kafka extension)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from event_kafka.devkafka import LocalKafka, TansuBroker
from event_kafka.errors import SocketError
from event_kafka.event_interface import EventInterface
from event_kafka.kafka_socket import check_command, parse_broker_id, parse_socket
from event_kafka.producer import ProducerPool
from event_kafka.transports.kafka import param_key
from tests.support import Consume

CALLID = "a84b4c76e66710@pc33.atlanta.example.com"


def test_parse_and_canonical_text() -> None:
    s = parse_socket("kafka:h:9092/cdrs?key=param:callid&t.acks=all")
    assert (s.key_param, s.key_callid) == ("callid", False)
    assert s.to_text() == "kafka:h:9092/cdrs?t.acks=all&key=param:callid"
    assert parse_socket(s.to_text()) == s
    assert s != parse_socket("kafka:h:9092/cdrs?t.acks=all&key=param:ip")
    assert s != parse_socket("kafka:h:9092/cdrs?t.acks=all")
    assert parse_broker_id("[k]h/t?key=param:x.y-z_1")[1].key_param == "x.y-z_1"


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("kafka:h/t?key=param:", 20, "invalid parameter name"),
        ("kafka:h/t?key=param:a b", 20, "invalid parameter name"),
        ("kafka:h/t?key=param:" + "x" * 65, 20, "invalid parameter name"),
        ("kafka:h/t?key=Param:x", 10, "write key=callid or key=param:"),
        ("kafka:h/t?key=callid&key=param:x", 21, "duplicate property key"),
    ],
)
def test_bad_key_param(text: str, position: int, message: str) -> None:
    with pytest.raises(SocketError) as err:
        parse_socket(text)
    assert message in str(err.value)
    assert err.value.position == position


def test_strict_grammar_refuses_the_extension() -> None:
    text = "kafka:h/t?t.acks=all&key=param:callid"
    with pytest.raises(SocketError, match="strict OpenSIPS grammar at position 21"):
        parse_socket(text, strict=True)
    with pytest.raises(SocketError, match="event-kafka extension"):
        parse_broker_id("[k1]h/t?key=param:callid", strict=True)
    # What OpenSIPS accepts stays accepted in strict mode.
    assert parse_socket("kafka:h/t?t.acks=all&key=callid", strict=True).key_callid
    assert check_command(text, strict=True)[0] == 2
    code, out = check_command(text)
    assert code == 0 and '"key_param": "callid"' in out
    cli = [sys.executable, "-m", "event_kafka.cli", "check", "--strict", text]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "strict OpenSIPS grammar" in done.stderr


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"callid": CALLID, "duration": 118}, CALLID.encode()),
        ([("duration", 1), ("callid", "c1"), ("callid", "c2")], b"c1"),  # the first one
        ({"callid": 42}, b"42"),
        ({"callid": -7}, b"-7"),
        ({"callid": "é"}, "é".encode()),
        ({"callid": None}, None),
        ({"callid": ""}, None),
        ({"other": "x"}, None),
        ([CALLID], None),  # positional params have no names
        (None, None),
    ],
)
def test_param_key(params: Any, key: bytes | None) -> None:
    assert param_key(params, "callid") == key


# -- on the real broker ---------------------------------------------------------------------


@pytest.fixture
def real_pool() -> Iterator[ProducerPool]:
    p = ProducerPool(flush_timeout=10)
    yield p
    p.close()


def test_record_key_is_the_param_value(
    kafka_broker: LocalKafka | TansuBroker,
    topic: str,
    consume: Consume,
    real_pool: ProducerPool,
) -> None:
    evi = EventInterface(real_pool, clock=time.time, expiry_interval=0)
    evi.publish_event("E_ACC_CDR")
    evi.subscribe("E_ACC_CDR", f"kafka:{kafka_broker.bootstrap}/{topic}?key=param:callid")
    raised: list[Any] = [
        {"callid": CALLID, "duration": 118},
        [("duration", 5), ("callid", "c-pairs")],
        {"callid": 1234},
        {"duration": 7},  # no callid param: no key
        {"callid": None},
        ["positional"],
    ]
    try:
        for params in raised:
            assert evi.raise_event("E_ACC_CDR", params) == 1
    finally:
        evi.close()
    records = consume(topic, expect=len(raised))
    assert [r.key for r in records] == [CALLID.encode(), b"c-pairs", b"1234", None, None, None]
    assert all(r.headers == [("event", b"E_ACC_CDR")] for r in records)
