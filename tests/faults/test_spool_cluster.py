"""The spool on the 3-node cluster: the partition leader is killed (kill -9) while a new
process replays what a dead one left. Every record is delivered, each reported once as
replayed, per-key order holds; duplicates are printed (and bounded: see below).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest

from event_kafka import EventKafka, Report
from event_kafka.devkafka import LocalKafka, consume_all
from tests.faults.cluster import heal, new_topic, partition_state
from tests.spool.conftest import (
    SAFE,
    Recovery,
    assert_nothing_lost,
    dead_address,
    spec,
    start_publisher,
    tally,
)
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration]


@pytest.fixture(autouse=True)
def healthy(cluster: LocalKafka) -> None:
    heal(cluster)


def test_leader_kill9_while_replaying_all_delivered_once_reported(
    cluster: LocalKafka, tmp_path: Path
) -> None:
    topic = new_topic(cluster, 3)
    spool = tmp_path / "spool"
    count = 30_000
    # A process spools while its broker is unreachable, and dies.
    child = start_publisher(spool, spec(dead_address(), topic), "q", count, tmp_path)
    child.wait("publishing done", lambda: child.marker("done"), 120)
    child.kill9()
    promised = child.promised()
    assert len(promised["q"]) == count

    victim = partition_state(cluster, topic)[0][0]
    rec = Recovery()
    lock = threading.Lock()
    marks: dict[str, float] = {}

    def route(r: Report) -> None:
        with lock:
            rec.reports.append(r)

    ek = EventKafka([spec(cluster.bootstrap, topic, SAFE)], spool_dir=spool)
    try:
        ek.add_report_route("rec", route)
        t0 = time.monotonic()
        # The replay runs from construction on: kill the leader once a sixth is through.
        wait_until(lambda: len(rec.reports) >= count // 6, 60, "a sixth replayed", step=0.005)
        marks["kill"] = time.monotonic()
        at_kill = len(rec.reports)
        cluster.kill_node(victim)
        rec.left_after_flush = ek.flush(180)
        rec.took = time.monotonic() - t0
    finally:
        rec.left_at_close = ek.close(10)
        with contextlib.suppress(Exception):
            heal(cluster, topic)
    assert rec.left_after_flush == 0, f"{rec.left_after_flush} left after flush"
    records = consume_all(cluster.bootstrap, topic, expect=count, timeout=90)
    rec.check_reports(records)
    t = tally(records, promised, {"q": count})
    print(
        f"\n[leader {victim} kill -9 mid-replay] killed after {at_kill} of {count} replayed; "
        f"{t.line()}; {len(rec.reports)} replayed reports; replay took {rec.took:.1f}s, "
        f"{time.monotonic() - marks['kill']:.1f}s since the kill"
    )
    assert_nothing_lost(t)
    assert len(rec.reports) == count, "exactly one report per record, in the replaying process"
    # Idempotent producer (acks=all, min.insync 2): librdkafka's retries across the failover
    # do not duplicate (tests/faults/test_cluster_faults.py section 1 proves it without a
    # spool), and the lane replays a record only when it had no delivery report: 0 expected.
    assert t.duplicates == 0, f"{t.duplicates} duplicates"
