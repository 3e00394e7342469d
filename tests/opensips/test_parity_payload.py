"""Payload parity: the same MI ``raise_event`` on OpenSIPS and on ``event-kafka serve``, each
with a ``kafka:`` subscriber; the records must be byte for byte the same (value and key).

Cases where OpenSIPS has undefined behaviour (``PayloadCase.ub``) accept OpenSIPS's documented
alternative outputs, and require event-kafka to print the documented intent.
"""

from __future__ import annotations

import pytest

from event_kafka.devkafka import Record
from tests.opensips.osbed import PAYLOAD_CASES, Pair, PayloadCase, by_method, read_topic

pytestmark = pytest.mark.opensips


@pytest.fixture(scope="module")
def raised(pair: Pair) -> tuple[dict[str, list[Record]], dict[str, list[Record]]]:
    """Every case raised once on each side; records grouped by event name."""
    for c in PAYLOAD_CASES:
        for side, topic in ((pair.os, pair.topics["os"]), (pair.ek, pair.topics["ek"])):
            assert side.ok("event_subscribe", [c.event, f"kafka:{pair.bootstrap}/{topic}"]) == "OK"
    for c in PAYLOAD_CASES:
        a, b = pair.both("raise_event", c.request())
        assert a == b == {"jsonrpc": "2.0", "result": "OK", "id": 1}, (c.id, a, b)
    n = len(PAYLOAD_CASES)
    os_records = read_topic(pair.bootstrap, pair.topics["os"], n)
    ek_records = read_topic(pair.bootstrap, pair.topics["ek"], n)
    return by_method(os_records), by_method(ek_records)


@pytest.mark.parametrize("case", PAYLOAD_CASES, ids=[c.id for c in PAYLOAD_CASES])
def test_record_is_byte_for_byte_opensips(
    raised: tuple[dict[str, list[Record]], dict[str, list[Record]]], case: PayloadCase
) -> None:
    os_by, ek_by = raised
    (os_rec,) = os_by[case.event]
    (ek_rec,) = ek_by[case.event]
    # OpenSIPS never sets a key on event records; nor does event-kafka without key=callid.
    assert os_rec.key is None and ek_rec.key is None
    assert os_rec.headers == ek_rec.headers == []  # [events] event_header = false
    assert os_rec.value is not None and ek_rec.value is not None
    if os_rec.value != ek_rec.value and case.ub:
        # OpenSIPS took its undefined path: it printed one of the documented alternatives.
        prefix = f'{{"jsonrpc":"2.0","method":"{case.event}","params":'.encode()
        assert os_rec.value in {prefix + ub.encode() + b"}" for ub in case.ub}, os_rec.value
        assert not any(ek_rec.value == prefix + ub.encode() + b"}" for ub in case.ub)
        return
    assert ek_rec.value == os_rec.value
