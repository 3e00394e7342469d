"""The spooled lane against a real Kafka: accepted means on disk, acked means gone, what a
process leaves is delivered (once) by the next one, outages fail nothing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from event_kafka import EventKafka
from event_kafka.devkafka import Record
from event_kafka.spool import OwnerSpool
from event_kafka.spool.dedupe import SPOOL_HEADER
from tests.support import Broker, Reports, wait_until


def _pending(d: Path) -> int:
    """Unacknowledged records in an owner directory, as a fresh process would adopt them."""
    s = OwnerSpool(d)
    try:
        s.adopt()
        return s.pending()
    finally:
        s.close()


def _ids(records: list[Record]) -> list[bytes | None]:
    return [dict(r.headers).get(SPOOL_HEADER) for r in records]


def _ek(
    tmp_path: Path, brokers: str, topic: str, props: str = "", **kw: object
) -> tuple[EventKafka, Reports]:
    ek = EventKafka([f"[k1]{brokers}/{topic}{props}"], spool_dir=tmp_path / "spool", **kw)  # type: ignore[arg-type]
    reports = Reports()
    ek.add_report_route("r", reports)
    return ek, reports


def test_publish_ack_removes_from_spool(
    kafka_broker: Broker, topic: str, consume: Callable[..., list[Record]], tmp_path: Path
) -> None:
    ek, reports = _ek(tmp_path, kafka_broker.bootstrap, topic)
    n = 200
    for i in range(n):
        assert ek.kafka_publish("k1", f"m{i}", key=f"k{i % 7}", report_route="r") == 1
    got = reports.wait(n)
    assert ek.flush(10) == 0
    assert all(r.ok and not r.replayed for r in got)
    records = consume(topic, expect=n)
    assert [r.value for r in records] == [f"m{i}".encode() for i in range(n)]
    ids = _ids(records)
    assert None not in ids and len(set(ids)) == n  # each record carries its spool id
    assert records[0].headers[0][0] == SPOOL_HEADER
    sl = ek.spool.lanes[0]  # type: ignore[union-attr]
    assert sl.spool_stats()["records"] == 0
    assert ek.stats()["broker_ids"]["k1"]["delivered"] == n
    assert ek.close(5) == 0
    assert _pending(tmp_path / "spool" / "broker_id" / "k1") == 0


def test_close_leaves_records_next_instance_delivers_them_replayed_once(
    kafka_broker: Broker,
    topic: str,
    consume: Callable[..., list[Record]],
    tmp_path: Path,
    closed_port: int,
) -> None:
    # The first process cannot reach Kafka: close leaves everything in the spool, no reports.
    ek, reports = _ek(tmp_path, f"127.0.0.1:{closed_port}", topic)
    n = 50
    for i in range(n):
        assert ek.kafka_publish("k1", f"m{i}", key=f"k{i % 3}", report_route="r") == 1
    assert ek.close(0.5) == n
    assert reports.items == []
    assert _pending(tmp_path / "spool" / "broker_id" / "k1") == n
    # The next process, same spool_dir and broker_id (now reachable), delivers them.
    ek2, reports2 = _ek(tmp_path, kafka_broker.bootstrap, topic)
    assert ek2.flush(30) == 0
    got = reports2.wait(n)
    assert len(got) == n and all(r.ok and r.replayed for r in got)
    assert sorted(r.kafka_msg for r in got) == sorted(f"m{i}" for i in range(n))
    records = consume(topic, expect=n)
    assert [r.value for r in records] == [f"m{i}".encode() for i in range(n)]
    assert ek2.close(5) == 0
    assert len(reports2.items) == n
    assert _pending(tmp_path / "spool" / "broker_id" / "k1") == 0


def test_outage_longer_than_message_timeout_fails_nothing(
    kafka_broker: Broker,
    topic: str,
    consume: Callable[..., list[Record]],
    tmp_path: Path,
    closed_port: int,
) -> None:
    props = "?t.message.timeout.ms=1000"
    ek, reports = _ek(tmp_path, f"127.0.0.1:{closed_port}", topic, props)
    n = 30
    for i in range(n):
        assert ek.kafka_publish("k1", f"m{i}", report_route="r") == 1
    sl = ek.spool.lanes[0]  # type: ignore[union-attr]
    # Every record timed out (message.timeout.ms=1 s), went back to the spool, and waits
    # there while the topic's tail cannot be read (seconds later): nothing failed.
    wait_until(
        lambda: sl.spool_stats()["retried"] >= n and sl.spool_stats()["tail_unreadable"],
        20,
        "a retry whose tail read failed",
    )
    assert reports.items == []
    assert ek.stats()["broker_ids"]["k1"]["failed"] == 0
    assert ek.close(0.5) == n
    ek2, reports2 = _ek(tmp_path, kafka_broker.bootstrap, topic, props)
    assert ek2.flush(30) == 0
    got = reports2.wait(n)
    assert all(r.ok for r in got)
    assert len(consume(topic, expect=n)) == n
    ek2.close(5)


def test_records_already_in_kafka_are_not_sent_twice(
    kafka_broker: Broker,
    make_topic: Callable[..., str],
    consume: Callable[..., list[Record]],
    tmp_path: Path,
    closed_port: int,
) -> None:
    topic = make_topic(3)  # every partition's tail is read
    owner = tmp_path / "spool" / "broker_id" / "k1"
    ek, _ = _ek(tmp_path, f"127.0.0.1:{closed_port}", topic)
    n = 40
    for i in range(n):
        assert ek.kafka_publish("k1", f"m{i}", key=f"k{i}", report_route="r") == 1
    assert ek.close(0.2) == n
    old = tmp_path / "old"
    shutil.copytree(owner, old)  # the spool as a crash would leave it: nothing acked
    ek2, _ = _ek(tmp_path, kafka_broker.bootstrap, topic)
    assert ek2.flush(30) == 0
    assert ek2.close(5) == 0
    assert len(consume(topic, expect=n)) == n
    # Acks lost (kill -9 before they were persisted): the same records look unacked again.
    shutil.rmtree(owner)
    shutil.copytree(old, owner)
    assert _pending(owner) == n
    ek3, reports3 = _ek(tmp_path, kafka_broker.bootstrap, topic)
    assert ek3.flush(30) == 0
    got = reports3.wait(n)
    assert all(r.ok and r.replayed and r.offset is not None for r in got)
    stats = ek3.stats()["spool"][0]
    assert stats["deduplicated"] == n and stats["dedupe_incomplete"] == 0
    ek3.close(5)
    records = consume(topic, expect=n)
    assert len(records) == n, f"{len(records) - n} duplicates"
    # The reports point at the copies already there.
    assert {(r.partition, r.offset) for r in got} == {(r.partition, r.offset) for r in records}
    assert _pending(owner) == 0


def test_permanent_failure_is_reported_once_and_leaves_the_spool(
    kafka_broker: Broker,
    make_topic: Callable[..., str],
    consume: Callable[..., list[Record]],
    tmp_path: Path,
) -> None:
    topic = make_topic(1, {"max.message.bytes": "2000"})
    ek, reports = _ek(tmp_path, kafka_broker.bootstrap, topic)
    assert ek.kafka_publish("k1", "x" * 5000, report_route="r") == 1
    assert ek.kafka_publish("k1", "small", report_route="r") == 1
    got = reports.wait(2)
    assert ek.flush(10) == 0
    big = next(r for r in got if len(r.message or b"") == 5000)
    assert not big.ok and "too large" in (big.reason or "").lower()
    assert next(r for r in got if r.message == b"small").ok
    assert ek.stats()["broker_ids"]["k1"]["failed"] == 1
    assert ek.close(5) == 0
    assert len(reports.items) == 2
    assert _pending(tmp_path / "spool" / "broker_id" / "k1") == 0


def test_max_age_expires_waiting_records_with_one_failure_report(
    tmp_path: Path, topic: str, closed_port: int
) -> None:
    props = "?t.message.timeout.ms=1000"
    ek, reports = _ek(tmp_path, f"127.0.0.1:{closed_port}", topic, props, spool_max_age=1.5)
    for i in range(5):
        assert ek.kafka_publish("k1", f"m{i}", report_route="r") == 1
    got = reports.wait(5)
    assert all(not r.ok and "expired in the spool" in (r.reason or "") for r in got)
    assert ek.spool.lanes[0].spool_stats()["expired"] == 5  # type: ignore[union-attr]
    assert ek.close(1) == 0
    assert len(reports.items) == 5
    assert _pending(tmp_path / "spool" / "broker_id" / "k1") == 0
