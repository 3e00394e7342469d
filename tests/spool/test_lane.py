"""The spooled lane against a real Kafka: accepted means on disk, acked means gone, what a
process leaves is delivered (once) by the next one, outages fail nothing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from event_kafka import EventKafka
from event_kafka.devkafka import LocalKafka, Record, TansuBroker
from event_kafka.report import Report
from event_kafka.spool import OwnerSpool
from event_kafka.spool.dedupe import SPOOL_HEADER

Broker = LocalKafka | TansuBroker


class Reports:
    """A report route that remembers every report and wakes waiters."""

    def __init__(self) -> None:
        self.items: list[Report] = []
        self._cond = threading.Condition()

    def __call__(self, r: Report) -> None:
        with self._cond:
            self.items.append(r)
            self._cond.notify_all()

    def wait(self, n: int, timeout: float = 30.0) -> list[Report]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.items) >= n, timeout), (
                f"{len(self.items)} of {n} reports"
            )
            return list(self.items)


def _wait(cond: Callable[[], object], timeout: float = 20.0) -> bool:
    """Poll ``cond`` (counters have no event to wait on) until true or ``timeout``."""
    done = threading.Event()
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            return False
        done.wait(0.02)
    return True


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


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening: connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


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
    assert _wait(lambda: sl.spool_stats()["retried"] >= n and sl.spool_stats()["tail_unreadable"])
    assert reports.items == []
    assert ek.stats()["broker_ids"]["k1"]["failed"] == 0
    assert ek.close(0.5) == n
    ek2, reports2 = _ek(tmp_path, kafka_broker.bootstrap, topic, props)
    assert ek2.flush(30) == 0
    got = reports2.wait(n)
    assert all(r.ok for r in got)
    assert len(consume(topic, expect=n)) == n
    ek2.close(5)
