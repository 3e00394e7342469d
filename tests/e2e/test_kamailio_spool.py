"""Kamailio with the spool on (``EK_SPOOL_DIR``), stopped with a plain SIGTERM right after the
load while the broker is frozen (SIGSTOP): no drain-then-stop. Kamailio 5.6 workers
``_exit(0)`` on SIGTERM with no Python shutdown, so whatever librdkafka held is gone with them;
with the spool it is on disk, and a new process opening the same spool_dir (same broker_id,
same subscriber socket) sends it once the broker is back. Kafka must then hold every event and
every CDR: 0 lost. Duplicates are counted (the tail scan should make them 0); every CDR has
exactly one report, replayed by the new process.

Same set-up as test_kamailio.py (tests/e2e/kamailio.py, the conftest's fixture), skipped with
the same reason.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from event_kafka import EventKafka, Report
from event_kafka.devkafka import LocalKafka
from tests.e2e import kamailio as tk
from tests.support import Consume, MakeTopic
from tests.support.sipp import uac, udp_rcvbuf_errors

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("kamailio_prerequisites")]

CALLS = 1000
OPTIONS = 500


def test_kamailio_spool_plain_sigterm_loses_nothing(
    kafka_broker: LocalKafka,
    make_topic: MakeTopic,
    consume: Consume,
    kamailio_factory: Any,
    tmp_path: Path,
) -> None:
    if not isinstance(kafka_broker, LocalKafka):
        pytest.skip("freezes the broker node: Apache Kafka (LocalKafka) only")
    events_topic = make_topic(4)
    cdr_topic = make_topic(4)
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    spool = tmp_path / "spool"
    k = kamailio_factory(
        EK_BROKERS=kafka_broker.bootstrap,
        EK_EVENT_TOPIC=events_topic,
        EK_CDR_TOPIC=cdr_topic,
        EK_REPORT_DIR=str(report_dir),
        EK_SPOOL_DIR=str(spool),
    )
    drops0 = udp_rcvbuf_errors()
    # The broker frozen during the load: librdkafka in the workers holds everything they
    # accepted (without a spool, the SIGTERM below would lose all of it).
    node = kafka_broker.node_ids[0]
    kafka_broker.pause_node(node)
    try:
        uac(tmp_path / "sipp-uac", k.port, CALLS, tk.CALL_RATE)
        tk.options(tmp_path / "sipp-options", k.port, OPTIONS, tk.OPTIONS_RATE)
        why = f" (UDP datagrams dropped on this host meanwhile: {udp_rcvbuf_errors() - drops0})"
        assert k.python_errors() == []
        k.stop()  # SIGTERM at once: whatever the workers still held stays in the spool
    finally:
        kafka_broker.resume_node(node)
    in_workers = tk.read_reports(report_dir)

    # The next process on the same spool_dir: same broker_id, same subscriber socket.
    replayed: list[Report] = []
    lock = threading.Lock()

    def route(r: Report) -> None:
        with lock:
            replayed.append(r)

    t0 = time.monotonic()
    ek = EventKafka([f"[cdr]{kafka_broker.bootstrap}/{cdr_topic}?t.acks=all"], spool_dir=spool)
    try:
        ek.add_report_route("kafka_report", route)
        ek.publish_event("E_SIP_REQUEST")
        ek.subscribe("E_SIP_REQUEST", f"kafka:{kafka_broker.bootstrap}/{events_topic}?key=callid")
        left = ek.flush(120)
        took = time.monotonic() - t0
    finally:
        ek.close(10)
    assert left == 0, f"{left} records still spooled after the recovery's flush"

    n_events = 3 * CALLS + OPTIONS
    events = consume(events_topic, expect=n_events, timeout=20)
    ids = collections.Counter()
    for r in events:
        p = json.loads(r.value)["params"]
        ids[(p["callid"], p["method"], p["cseq"])] += 1
    per_call: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for callid, method, _ in ids:
        per_call[callid][method] += 1
    calls = {c for c, m in per_call.items() if "INVITE" in m}
    incomplete = [
        (c, m) for c, m in per_call.items() if c in calls and m != {"INVITE": 1, "ACK": 1, "BYE": 1}
    ]
    cdrs = consume(cdr_topic, expect=CALLS, timeout=20)
    cdr_ids = collections.Counter(r.key for r in cdrs)
    report_keys = collections.Counter([r[3] for r in in_workers])
    report_keys.update(r.key.decode() if isinstance(r.key, bytes) else str(r.key) for r in replayed)
    ev_dups = sum(c - 1 for c in ids.values())
    cdr_dups = sum(c - 1 for c in cdr_ids.values())
    print(
        f"\nkamailio + spool, plain SIGTERM: {len(ids)}/{n_events} events ({ev_dups} "
        f"duplicates), {len(cdr_ids)}/{CALLS} CDRs ({cdr_dups} duplicates); reports: "
        f"{len(in_workers)} in the workers, {len(replayed)} replayed by the next process "
        f"(in {took:.1f}s), CDRs reported twice "
        f"{sum(1 for c in report_keys.values() if c > 1)}"
    )
    assert len(ids) == n_events, f"{n_events - len(ids)} events lost{why}"
    assert len(calls) == CALLS and not incomplete, f"{incomplete[:5]}{why}"
    assert len(cdr_ids) == CALLS, f"{CALLS - len(cdr_ids)} CDRs lost"
    assert {k.decode() for k in cdr_ids if k} == calls
    # Every CDR has exactly one report (in its worker, or replayed by the next process).
    assert set(report_keys) == calls and max(report_keys.values()) == 1
    assert {r[1] for r in in_workers} <= {"ok"}
    assert all(r.kafka_status == 0 and r.replayed for r in replayed)
