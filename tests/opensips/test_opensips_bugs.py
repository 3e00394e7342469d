"""The OpenSIPS 3.6.8 bugs event-kafka fixes, each shown on the real binary next to
event-kafka doing the documented thing (docs/opensips-parity.md gives the causes in the source).
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from event_kafka import EventKafka
from event_kafka.devkafka import consume_all, create_topic
from event_kafka.report import Report
from tests.opensips.heldproxy import HeldProxy
from tests.opensips.osbed import (
    Pair,
    Scripted,
    make_opensips,
    read_topic,
    scripted_opensips,
    unique,
    wait_until,
)
from tests.support.sip import send_sip, sip_message

pytestmark = pytest.mark.opensips


def test_key_callid_is_never_applied_on_event_sockets(scripted: Scripted) -> None:
    """kafka_evi_raise reads sock->params as a producer, but it is a broker: the key flag is
    never seen, so OpenSIPS writes a null key. event-kafka keys the record with the Call-ID."""
    topic = scripted.topics["callid"]
    socket = f"kafka:{scripted.bootstrap}/{topic}?key=callid"
    assert scripted.os.ok("event_subscribe", ["E_CALLID", socket]) == "OK"
    call_id = f"callid-{uuid.uuid4().hex}@parity"
    request = sip_message(scripted.os.sip_port, call_id, "hello", "X-Case: event\r\n")
    assert send_sip(scripted.os.sip_port, [request]) == [b"SIP/2.0 200 OK"]
    (os_rec,) = read_topic(scripted.bootstrap, topic, 1)

    ek_topic = unique("callid-ek")
    create_topic(scripted.bootstrap, ek_topic, 1)
    with EventKafka() as ek:
        ek.publish_event("E_CALLID")
        ek.subscribe("E_CALLID", f"kafka:{scripted.bootstrap}/{ek_topic}?key=callid")
        assert ek.raise_event_script("E_CALLID", None, sip_msg=request) == 1
        assert ek.flush(10) == 0
    (ek_rec,) = read_topic(scripted.bootstrap, ek_topic, 1)

    assert os_rec.value == ek_rec.value == b'{"jsonrpc":"2.0","method":"E_CALLID"}'
    assert os_rec.key is None  # the OpenSIPS bug
    assert ek_rec.key == call_id.encode()  # decision 4: key=callid works


def test_resubscribing_never_matches(pair: Pair) -> None:
    """kafka_evi_match compares broker pointers and every parse makes a new broker: the same
    socket subscribed twice is two subscribers (two records per event), and expire=0 does not
    remove it. event-kafka refreshes the one subscriber and expire=0 removes it."""
    event = "E_MI7"
    tos, tek = unique("dup-os"), unique("dup-ek")
    for t in (tos, tek):
        create_topic(pair.bootstrap, t, 1)
    sock = {"os": f"kafka:{pair.bootstrap}/{tos}", "ek": f"kafka:{pair.bootstrap}/{tek}"}
    sides = {"os": pair.os, "ek": pair.ek}
    for name, side in sides.items():
        for _ in range(2):
            assert side.ok("event_subscribe", [event, sock[name], 600]) == "OK"
    counts = {
        n: len(s.ok("subscribers_list", [event])["Event"]["Subscribers"]) for n, s in sides.items()
    }
    assert counts == {"os": 2, "ek": 1}
    for side in sides.values():
        assert side.ok("raise_event", [event, ["once"]]) == "OK"
    assert len(read_topic(pair.bootstrap, tos, 2)) == 2  # duplicate records
    assert len(read_topic(pair.bootstrap, tek, 1)) == 1

    # expire=0: OpenSIPS adds a 0-second subscriber and keeps both old ones.
    for name, side in sides.items():
        assert side.ok("event_subscribe", [event, sock[name], 0]) == "OK"
    assert pair.ek.call("raise_event", [event, ["after"]])["error"]["code"] == 480
    assert pair.os.ok("raise_event", [event, ["after"]]) == "OK"
    after = [r for r in read_topic(pair.bootstrap, tos, 4) if b"after" in (r.value or b"")]
    assert len(after) >= 2  # still subscribed, twice (three while the 0 s one lives)


def test_kafka_publish_without_key_crashes_the_worker(
    opensips_prefix: Path, kafka_broker: Any, tmp_path: Path
) -> None:
    """The omitted key reaches kafka_publish as a NULL str* and key->len is read: the SIP
    worker segfaults and OpenSIPS shuts down. event-kafka publishes with a null key."""
    topic = unique("nokey")
    create_topic(kafka_broker.bootstrap, topic, 1)
    os_ = scripted_opensips(opensips_prefix, tmp_path, [f"[k1]{kafka_broker.bootstrap}/{topic}"])
    try:
        os_.start()
        req = sip_message(
            os_.sip_port, "nokey@parity", "no key", "X-Case: no-key\r\nX-Broker: k1\r\n"
        )
        with pytest.raises(TimeoutError):
            send_sip(os_.sip_port, [req], timeout=3)
        assert os_.proc is not None
        os_.proc.wait(30)
        assert "segfault in process" in os_.log(), os_.tail()
    finally:
        os_.kill()

    reports: list[Report] = []
    with EventKafka([f"[k1]{kafka_broker.bootstrap}/{topic}"]) as ek:
        ek.add_report_route("r", reports.append)
        assert ek.kafka_publish("k1", "no key", report_route="r") == 1
        assert ek.flush(10) == 0
    (rec,) = consume_all(kafka_broker.bootstrap, topic, expect=1)
    assert rec.key is None and rec.value == b"no key"
    wait_until(lambda: len(reports) == 1, 20, "the report")
    assert reports[0].avp == {
        "kafka_id": "k1",
        "kafka_status": 0,
        "kafka_key": "",
        "kafka_msg": "no key",
    }


def test_shutdown_drops_what_250ms_do_not_flush(
    opensips_prefix: Path, kafka_broker: Any, tmp_path: Path
) -> None:
    """On SIGTERM the Kafka worker flushes each producer for 250 ms, then destroys it: messages
    still queued are gone, with no report. Here the broker answers late (a held proxy);
    event-kafka's close() waits (10 s by default) and delivers every one."""
    host, port = kafka_broker.bootstrap.split(",")[0].rsplit(":", 1)
    topics = {k: unique(f"flush-{k}") for k in ("os", "ek", "rep")}
    for t in topics.values():
        create_topic(kafka_broker.bootstrap, t, 1)
    n = 5
    proxy = HeldProxy((host, int(port)))
    os_ = scripted_opensips(
        opensips_prefix, tmp_path, [f"[slow]127.0.0.1:{proxy.port}/{topics['os']}"]
    )
    try:
        os_.start()
        # Reports go through the real broker (a kafka: subscriber not behind the proxy).
        assert os_.ok(
            "event_subscribe", ["E_KREPORT", f"kafka:{kafka_broker.bootstrap}/{topics['rep']}"]
        )
        reqs = [
            sip_message(
                os_.sip_port,
                f"flush-{i}@parity",
                f"m{i}",
                "X-Case: key\r\nX-Broker: slow\r\nX-Key: k\r\n",
            )
            for i in range(n)
        ]
        assert send_sip(os_.sip_port, reqs) == [b"SIP/2.0 200 OK"] * n
        assert os_.stop() == 0
    finally:
        os_.kill()
    proxy.release()  # the broker answers now: nothing of OpenSIPS is left to send
    proxy.forwarded()  # all OpenSIPS had written reached the broker: absence is now proven
    assert consume_all(kafka_broker.bootstrap, topics["os"], timeout=5) == []
    assert consume_all(kafka_broker.bootstrap, topics["rep"], timeout=5) == []  # no report either
    proxy.close()

    proxy = HeldProxy((host, int(port)))
    reports: list[Report] = []
    ek = EventKafka([f"[slow]127.0.0.1:{proxy.port}/{topics['ek']}"])
    ek.add_report_route("r", reports.append)
    for i in range(n):
        assert ek.kafka_publish("slow", f"m{i}", "k", "r") == 1
    closing = threading.Thread(target=ek.close)
    closing.start()
    # The simulated broker answers 1 s after shutdown began: later than OpenSIPS's 250 ms,
    # well within event-kafka's flush_timeout (10 s by default).
    late = threading.Timer(1.0, proxy.release)
    late.start()
    closing.join(30)
    late.cancel()
    proxy.close()
    assert not closing.is_alive()
    assert len(consume_all(kafka_broker.bootstrap, topics["ek"], expect=n)) == n
    assert sorted(r.kafka_status for r in reports) == [0] * n


BAD_SOCKETS = {
    "empty-topic": "kafka:{b}/",
    "question-mark-no-props": "kafka:{b}/t?",
    "two-slashes": "kafka:{b}/a/b",
    "url-broker": "kafka:PLAINTEXT://{b}/t",
}


@pytest.mark.parametrize("template", BAD_SOCKETS.values(), ids=BAD_SOCKETS.keys())
def test_bad_socket_over_mi_takes_opensips_down(
    opensips_prefix: Path, pair: Pair, tmp_path: Path, template: str
) -> None:
    """kafka_parse_socket's error path frees brokers/topic without clearing them, and
    kafka_evi_parse frees them again: the MI process dies and OpenSIPS stops. event-kafka
    answers 400 naming the problem and keeps serving."""
    socket = template.format(b=pair.bootstrap)
    os_ = make_opensips(opensips_prefix, tmp_path, events=["E_BAD"])
    try:
        os_.start()
        with pytest.raises(OSError):  # the connection dies with the MI process
            os_.call("event_subscribe", ["E_BAD", socket])
        assert os_.proc is not None
        os_.proc.wait(30)
        assert "kafka_parse_socket" in os_.log(), os_.tail()  # the parse error path...
        assert "segfault in process" in os_.log() or "abort" in os_.log().lower(), os_.tail()
    finally:
        os_.kill()

    reply = pair.ek.call("event_subscribe", ["E_MI0", socket])
    assert reply["error"]["code"] == 400 and reply["error"]["message"] == "Bad parameter value"
    assert reply["error"].get("data"), reply  # says what is wrong
    assert pair.ek.alive and pair.ek.ok("version")
