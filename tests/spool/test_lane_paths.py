"""The spool on the other paths: raise_event through kafka: subscribers, forked workers, and
``spool_dir=None`` (unchanged, nothing of the spool loaded)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson

from event_kafka import EventKafka
from event_kafka.devkafka import LocalKafka, Record, TansuBroker
from event_kafka.report import Report, report_future
from event_kafka.spool.dedupe import SPOOL_HEADER, parse_id

Broker = LocalKafka | TansuBroker


def _writer(r: Record) -> str:
    got = parse_id(dict(r.headers).get(SPOOL_HEADER))
    assert got is not None
    return got[0]


def test_raise_event_through_a_spooled_kafka_subscriber(
    kafka_broker: Broker,
    topic: str,
    consume: Callable[..., list[Record]],
    tmp_path: Path,
) -> None:
    sock = f"kafka:{kafka_broker.bootstrap}/{topic}?key=param:id"
    ek = EventKafka(spool_dir=tmp_path)
    ek.publish_event("E_CDR")
    ek.subscribe("E_CDR", sock)
    for i in range(10):
        assert ek.raise_event("E_CDR", {"id": f"c{i}"}) == 1
    assert ek.flush(10) == 0
    spool = ek.stats()["spool"]
    assert [s["event"] for s in spool] == ["E_CDR"] and spool[0]["records"] == 0
    assert (tmp_path / "event" / "E_CDR").is_dir()
    assert ek.close(5) == 0
    records = consume(topic, expect=10)
    assert [r.key for r in records] == [f"c{i}".encode() for i in range(10)]
    for r in records:
        h = dict(r.headers)
        assert h["event"] == b"E_CDR" and SPOOL_HEADER in h


def test_event_records_left_by_a_process_go_before_the_next_ones(
    kafka_broker: Broker,
    topic: str,
    consume: Callable[..., list[Record]],
    tmp_path: Path,
) -> None:
    # linger.ms keeps the first process's records in librdkafka: close leaves them. The
    # subscriber's directory does not depend on properties, so the second one finds them.
    ek = EventKafka(spool_dir=tmp_path)
    ek.publish_event("E_CDR")
    ek.subscribe("E_CDR", f"kafka:{kafka_broker.bootstrap}/{topic}?g.linger.ms=60000")
    for i in range(5):
        assert ek.raise_event("E_CDR", {"n": i}) == 1
    assert ek.close(0.2) == 5
    ek2 = EventKafka(spool_dir=tmp_path)
    ek2.publish_event("E_CDR")
    ek2.subscribe("E_CDR", f"kafka:{kafka_broker.bootstrap}/{topic}")
    # Subscribing is enough: the replay starts, and flush() waits for it.
    assert ek2.flush(30) == 0
    assert ek2.stats()["spool"][0]["replayed"] == 5
    assert ek2.raise_event("E_CDR", {"n": 5}) == 1
    assert ek2.flush(30) == 0
    assert ek2.close(5) == 0
    records = consume(topic, expect=6)
    assert [orjson.loads(r.value or b"")["params"]["n"] for r in records] == list(range(6))


def test_forked_worker_gets_its_own_writer(
    kafka_broker: Broker,
    topic: str,
    consume: Callable[..., list[Record]],
    tmp_path: Path,
) -> None:
    ek = EventKafka([f"[k1]{kafka_broker.bootstrap}/{topic}"], spool_dir=tmp_path)
    assert ek.kafka_publish("k1", "parent") == 1
    assert ek.flush(10) == 0
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fut, on_report = report_future()
            ok = ek.kafka_publish("k1", "child", on_report=on_report) == 1
            ok = ek.close(10) == 0 and ok
            r = fut.result(10)
            code = 0 if ok and r.ok and not r.replayed else 2  # its own record, not replayed
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ek.kafka_publish("k1", "parent2") == 1
    assert ek.close(10) == 0
    records = consume(topic, expect=3)
    assert sorted(r.value or b"" for r in records) == [b"child", b"parent", b"parent2"]
    by_value = {r.value: _writer(r) for r in records}
    assert by_value[b"parent"] == by_value[b"parent2"] != by_value[b"child"]
    assert not list((tmp_path / "broker_id" / "k1").glob("*.seg"))


def test_without_spool_dir_nothing_changes() -> None:
    # A fresh interpreter: the spool's modules are not even imported.
    code = (
        "import sys\n"
        "from event_kafka import EventKafka\n"
        "ek = EventKafka(['[k1]127.0.0.1:1/t'])\n"
        "ek.publish_event('E')\n"
        "ek.subscribe('E', 'kafka:127.0.0.1:1/t')\n"
        "assert ek.raise_event('E', {'a': 1}) == 1 and ek.kafka_publish('k1', 'm') == 1\n"
        "assert ek.spool is None and 'spool' not in ek.stats()\n"
        "assert type(ek._new_lane('k1', None)).__name__ == 'Lane'\n"
        "assert ek.close(0) == 2\n"
        "assert not [m for m in sys.modules if m.startswith('event_kafka.spool')], sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_reload_hands_what_the_old_broker_id_left_to_the_new_one(
    kafka_broker: Broker,
    topic: str,
    consume: Callable[..., list[Record]],
    tmp_path: Path,
) -> None:
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        ek = EventKafka([f"[k1]127.0.0.1:{port}/{topic}"], spool_dir=tmp_path, flush_timeout=0.3)
        reports: list[Report] = []
        ek.add_report_route("r", reports.append)
        for i in range(5):
            assert ek.kafka_publish("k1", f"old{i}", report_route="r") == 1
        # A reload points k1 at the real broker: the old lane gives up after flush_timeout
        # and its records, left in k1's directory, are taken over by the new lane.
        ek.set_broker_ids([f"[k1]{kafka_broker.bootstrap}/{topic}"])
        assert ek.kafka_publish("k1", "new", report_route="r") == 1
        assert ek.flush(30) == 0  # counts the records changing hands too
    assert sorted(r.kafka_msg for r in reports) == ["new", *(f"old{i}" for i in range(5))]
    assert all(r.ok for r in reports)
    assert ek.close(5) == 0
    assert sorted(r.value or b"" for r in consume(topic, expect=6)) == sorted(
        f"{m}".encode() for m in ["new", *(f"old{i}" for i in range(5))]
    )


def test_max_total_bytes_bounds_every_directory_together(tmp_path: Path) -> None:
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        brokers = [f"[k{i}]127.0.0.1:{dead.getsockname()[1]}/t" for i in (1, 2)]
        ek = EventKafka(brokers, spool_dir=tmp_path, spool_max_total_bytes=8192)
        ok = {"k1": 0, "k2": 0}
        for i in range(200):
            bid = f"k{1 + i % 2}"
            if ek.kafka_publish(bid, "x" * 100) == 1:
                ok[bid] += 1
        spool = {s["broker_id"]: s for s in ek.stats()["spool"]}
        total = sum(s["bytes"] for s in spool.values())
        assert 0 < total <= 8192 + 2 * 256  # a sum is at most 0.1 s old
        assert ok["k1"] > 0 and ok["k2"] > 0 and sum(ok.values()) < 200
        assert sum(s["rejected_spool_full"] for s in spool.values()) == 200 - sum(ok.values())
        assert ek.close(0) == sum(ok.values())
