"""The broker down for longer than ``message.timeout.ms``, then back: with a spool, no record
fails and none is lost; the same process delivers them all once the broker returns.

The session's broker is stopped (SIGTERM: its port refuses connections) and restarted with its
data; everything accepted before the stop was flushed first, so nothing was in flight when it
went down and no timed-out record can have been written: duplicates must be 0 too.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from event_kafka import EventKafka, Report
from event_kafka.devkafka import LocalKafka
from tests.spool.conftest import SAFE, assert_nothing_lost, spec, tally
from tests.support import Broker, Consume, MakeTopic, wait_until

pytestmark = pytest.mark.integration

TIMEOUT_MS = 2_000  # message.timeout.ms: the outage lasts several times this


def test_broker_down_longer_than_message_timeout_zero_failures_zero_lost(
    kafka_broker: Broker, make_topic: MakeTopic, consume: Consume, tmp_path: Path
) -> None:
    if not isinstance(kafka_broker, LocalKafka):
        pytest.skip("stops and restarts the broker node: Apache Kafka (LocalKafka) only")
    topic = make_topic(3)
    reports: list[Report] = []
    lock = threading.Lock()

    def route(r: Report) -> None:
        with lock:
            reports.append(r)

    props = f"{SAFE}&t.message.timeout.ms={TIMEOUT_MS}&t.request.timeout.ms=1000"
    ek = EventKafka([spec(kafka_broker.bootstrap, topic, props)], spool_dir=tmp_path / "spool")
    ek.add_report_route("rec", route)
    promised: set[int] = set()
    seq = 0

    def publish(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            rc = ek.kafka_publish("k", f"o:{seq:07d}", f"call-{seq % 50}", "rec")
            assert rc == 1, f"kafka_publish returned {rc} during the outage (seq {seq})"
            promised.add(seq)
            seq += 1

    node = kafka_broker.node_ids[0]
    try:
        publish(2_000)
        assert ek.flush(30) == 0  # nothing in flight when the broker goes down
        kafka_broker.stop_node(node)
        t_down = time.monotonic()
        publish(10_000)  # handed to librdkafka: these time out while it is down
        # The outage itself (the fault under test): down for 3 x message.timeout.ms, new
        # records arriving all along; librdkafka gives up on the first ones meanwhile.
        while time.monotonic() - t_down < 3 * TIMEOUT_MS / 1000:
            publish(500)
            time.sleep(0.1)  # pacing of the load (500 records a tick) during the outage, not a wait
        outage = time.monotonic() - t_down
        failed_during = [r for r in reports if r.kafka_status != 0]
        in_spool = ek.in_flight()
        kafka_broker.start_node(node)
        t_up = time.monotonic()
        left = ek.flush(120)
        took = time.monotonic() - t_up
        stats = ek.stats()["broker_ids"]["k"]
    finally:
        if not kafka_broker.node(node).pid:
            kafka_broker.start_node(node)
        ek.close(10)
    assert not failed_during, f"failure reports during the outage: {failed_during[0].reason}"
    assert left == 0, f"{left} still spooled or in flight {took:.0f}s after the broker returned"
    wait_until(lambda: len(reports) >= len(promised), 30, "every report")
    failed = [r for r in reports if r.kafka_status != 0]
    assert not failed, f"{len(failed)} failure reports, e.g. {failed[0].reason}"
    per = {r.message for r in reports}
    assert len(reports) == len(per) == len(promised), (len(reports), len(per), len(promised))
    records = consume(topic, expect=len(promised), timeout=60)
    t = tally(records, {"o": promised}, {"o": seq})
    print(
        f"\n[broker down {outage:.1f}s, message.timeout.ms={TIMEOUT_MS}] {t.line()}; waiting "
        f"when it came back {in_spool}, all delivered {took:.1f}s after; stats {stats}"
    )
    assert_nothing_lost(t)
    assert t.duplicates == 0
