"""Broker faults on a local 3-node KRaft cluster (RF 3, min.insync.replicas 2).

The producer runs with ``t.acks=all`` and ``g.enable.idempotence=true``. Each test streams keyed
events whose value carries a unique sequence number, injects a fault mid-stream, then proves:

* exactly once: every accepted event is in Kafka once (consumed back by its sequence number);
* per-key order: each key's sequence numbers rise along partition/offset order, on one partition;
* exactly one report per accepted message, with the right status (and, for successes, the
  partition/offset where the consumer found the record); none for rejected calls.

Section 5 shows, on the same cluster, what is *not* guaranteed (docs/guarantees.md): loss on
kill -9 of our process and with acks=1, duplicates without idempotence, failure reports for
messages that were written anyway, duplicates after message.timeout.ms despite idempotence.

Figures (failover time, stalls, counts) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import orjson
import pytest

from event_kafka import EventKafka, Report
from event_kafka.devkafka import LocalKafka, Record, consume_all
from tests.faults.cluster import heal, new_topic, partition_state
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration]

SAFE = "t.acks=all&g.enable.idempotence=true"
KEYS = 500  # distinct keys (Call-IDs) in a stream
STREAM = 200_000  # events in the kill -9 streams
RATE = 10_000.0  # events/s offered: a 200k stream lasts ~20 s, so faults land mid-stream


# -- every test on a healthy cluster ------------------------------------------------------------


@pytest.fixture(autouse=True)
def healthy(cluster: LocalKafka) -> Iterator[None]:
    """Every test starts (and, when it can, leaves) with all three nodes up and registered."""
    heal(cluster)
    yield
    with contextlib.suppress(Exception):
        heal(cluster)


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- the ledger: what was sent, what was reported -------------------------------------------------


def key_of(seq: int) -> str:
    return f"call-{seq % KEYS:04d}"


def seq_of(value: bytes | None) -> int:
    """The sequence number in a record value: ``b"123"`` or an event's ``params.seq``."""
    assert value is not None
    if value[:1] == b"{":
        return int(orjson.loads(value)["params"]["seq"])
    return int(value)


@dataclass
class ReportRow:
    key: bytes | None
    seq: int
    status: int
    partition: int | None
    offset: int | None
    reason: str | None
    at: float


@dataclass
class Ledger:
    """Accepted and rejected calls, every report the report route ran for, call latencies."""

    accepted: dict[int, str] = field(default_factory=dict)
    rejected: list[int] = field(default_factory=list)
    reports: list[ReportRow] = field(default_factory=list)
    worst_call: float = 0.0

    def route(self, r: Report) -> None:
        # A report route in the OpenSIPS sense, recording (key, value, status) and position.
        self.reports.append(
            ReportRow(
                r.key,
                seq_of(r.message),
                r.kafka_status,
                r.partition,
                r.offset,
                r.reason,
                time.monotonic(),
            )
        )

    def stream(
        self,
        publish: Callable[[int, str], int],
        first: int,
        count: int,
        rate: float,
        at: dict[int, Callable[[], None]] | None = None,
    ) -> float:
        """Publish ``count`` events from seq ``first`` at ``rate``/s; ``at[seq]`` runs then.

        Fault actions run on their own thread so the stream never waits for them. Returns
        the stream's duration.
        """
        at = at or {}
        t0 = time.monotonic()
        worst = self.worst_call
        perf = time.perf_counter
        for seq in range(first, first + count):
            if seq % 250 == 0:
                ahead = t0 + (seq - first) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # the offered rate is part of the scenario, not a wait
            action = at.get(seq)
            if action is not None:
                threading.Thread(target=action, name=f"fault@{seq}", daemon=True).start()
            key = key_of(seq)
            c0 = perf()
            rc = publish(seq, key)
            dt = perf() - c0
            if dt > worst:
                worst = dt
            if rc == 1:
                self.accepted[seq] = key
            else:
                assert rc == -1, rc
                self.rejected.append(seq)
        self.worst_call = worst
        return time.monotonic() - t0


@dataclass
class Verdict:
    ok: dict[int, tuple[int, int]]  # seq -> (partition, offset) reported
    failed: dict[int, str]  # seq -> reason reported
    in_kafka: set[int]
    duplicates: int  # extra copies in Kafka
    order_broken: list[bytes]  # keys whose seqs do not rise along the log
    lost: set[int]  # reported delivered, not in Kafka

    @property
    def failed_but_persisted(self) -> set[int]:
        return set(self.failed) & self.in_kafka


def verify(
    ledger: Ledger, records: list[Record], *, reports: bool = True, exact: bool = True
) -> Verdict:
    """The exactly-once / per-key-order / exactly-one-report checks shared by every test.

    Reports are always checked strictly (one per accepted call, none for a -1). With
    ``exact=False`` the Kafka-side anomalies (duplicates, order, loss) are measured, not
    asserted: the tests of what is *not* guaranteed use that.
    """
    accepted = set(ledger.accepted)
    assert not accepted & set(ledger.rejected)

    # Kafka holds each event at most once, and only events that were accepted.
    counts = Counter(seq_of(r.value) for r in records)
    dups = {s: c for s, c in counts.items() if c > 1}
    assert not exact or not dups, f"{len(dups)} duplicated in Kafka, e.g. {list(dups.items())[:5]}"
    assert set(counts) <= accepted, (
        f"not accepted but in Kafka: {sorted(set(counts) - accepted)[:5]}"
    )
    for r in records:
        assert r.key is not None and r.key.decode() == ledger.accepted[seq_of(r.value)]

    # Per-key order: along partition/offset order each key's seqs rise, on one partition.
    by_key: dict[bytes, list[int]] = defaultdict(list)
    parts: dict[bytes, set[int]] = defaultdict(set)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert r.key is not None
        by_key[r.key].append(seq_of(r.value))
        parts[r.key].add(r.partition)
    bad = [k for k, seqs in by_key.items() if seqs != sorted(seqs)]
    assert not exact or not bad, f"per-key order broken for {len(bad)} keys, e.g. {bad[:3]}"
    assert all(len(p) == 1 for p in parts.values())

    ok: dict[int, tuple[int, int]] = {}
    failed: dict[int, str] = {}
    lost: set[int] = set()
    if reports:
        per_seq = Counter(row.seq for row in ledger.reports)
        twice = {s: c for s, c in per_seq.items() if c > 1}
        assert not twice, f"{len(twice)} messages reported more than once: {list(twice)[:5]}"
        missing = accepted - set(per_seq)
        assert not missing, f"{len(missing)} accepted without a report, e.g. {sorted(missing)[:5]}"
        assert set(per_seq) == accepted, "a report for a call that returned -1"
        for row in ledger.reports:
            assert row.key is not None and row.key.decode() == ledger.accepted[row.seq]
            if row.status == 0:
                assert row.reason is None and row.partition is not None
                assert row.offset is not None
                ok[row.seq] = (row.partition, row.offset)
            else:
                assert row.status == -1 and row.reason, row
                failed[row.seq] = row.reason
        # A success report means the record is in Kafka, exactly where the report says.
        where: dict[int, set[tuple[int, int]]] = defaultdict(set)
        for r in records:
            where[seq_of(r.value)].add((r.partition, r.offset))
        lost = set(ok) - set(where)
        assert not exact or not lost, (
            f"{len(lost)} reported delivered but not in Kafka: {sorted(lost)[:5]}"
        )
        moved = [s for s, pos in ok.items() if s in where and pos not in where[s]]
        assert not moved, f"report position differs from Kafka for {len(moved)}: {moved[:5]}"
    extra = sum(c - 1 for c in dups.values())
    return Verdict(ok, failed, set(counts), extra, bad, lost)


def lane_totals(ek: EventKafka, topic: str) -> dict[str, int]:
    """Counters summed over every lane on ``topic`` (broker ids and event subscribers)."""
    out: Counter[str] = Counter()
    for lane in ek.stats()["lanes"]:
        if lane.topic == topic:
            out.update(lane.counters.as_dict())
    return dict(out)


def wait_reports(ek: EventKafka, topic: str, timeout: float) -> dict[str, int]:
    """Wait until nothing on ``topic`` is in flight and every report route has run; the
    totals then (or at ``timeout``: the callers' assertions say what is missing)."""

    def settled() -> bool:
        routes = ek.stats()["report_routes"]
        in_flight = lane_totals(ek, topic).get("in_flight", 1)
        return in_flight == 0 and all(r["pending"] == 0 for r in routes.values())

    with contextlib.suppress(AssertionError):
        wait_until(settled, timeout, f"every report of {topic}", step=0.1)
    return lane_totals(ek, topic)


def close_and_read(ek: EventKafka, cluster: LocalKafka, topic: str, ledger: Ledger) -> list[Record]:
    """``close()`` with nothing left undelivered, then the topic's records (as many as were
    accepted, or what came within 90 s)."""
    assert ek.close(30) == 0
    return consume_all(cluster.bootstrap, topic, expect=len(ledger.accepted), timeout=90)


def longest_gap(times: list[float], after: float) -> float:
    """The longest pause between consecutive success reports after ``after``."""
    ts = sorted(t for t in times if t >= after)
    return max((b - a for a, b in itertools.pairwise(ts)), default=0.0)


def wait_until_mark(marks: dict[str, float], name: str, timeout: float) -> bool:
    return bool(wait_until(lambda: name in marks, timeout, f"the mark {name!r}"))


# -- publishers: the kafka_publish path and the raise_event path ----------------------------------


Publisher = Callable[[int, str], int]


def publish_path(
    ek: EventKafka, kafka: LocalKafka, topic: str, ledger: Ledger, broker_id: str = "k"
) -> Publisher:
    ek.add_report_route("rec", ledger.route)
    publish = ek.kafka_publish

    def send(seq: int, key: str) -> int:
        return publish(broker_id, str(seq), key, "rec")

    return send


def event_path(ek: EventKafka, kafka: LocalKafka, topic: str, ledger: Ledger) -> Publisher:
    pytest.importorskip("event_kafka.event_interface", reason="event_interface.py not landed yet")
    from event_kafka.sip import CallId

    ek.publish_event("E_X")
    ek.subscribe("E_X", f"kafka:{kafka.bootstrap}/{topic}?{SAFE}&key=callid")
    raise_event = ek.raise_event

    def send(seq: int, key: str) -> int:
        return 1 if raise_event("E_X", {"seq": seq}, sip_msg=CallId(key)) == 1 else -1

    return send


# -- 1. kill -9 of a partition leader mid-stream ---------------------------------------------------


@pytest.mark.parametrize("path", ["kafka_publish", "raise_event"])
def test_kill_leader_mid_stream_exactly_once_in_order_one_report(
    cluster: LocalKafka, path: str
) -> None:
    topic = new_topic(cluster, 3)
    victim_partition = 0
    victim = partition_state(cluster, topic)[victim_partition][0]
    victim_parts = [
        p for p, (leader, _) in partition_state(cluster, topic).items() if leader == victim
    ]
    ledger = Ledger()
    marks: dict[str, float] = {}

    ek = EventKafka([f"[k]{cluster.bootstrap}/{topic}?{SAFE}"], queue_full_wait=5.0)
    make = publish_path if path == "kafka_publish" else event_path
    try:
        send = make(ek, cluster, topic, ledger)

        def kill_then_restart() -> None:
            marks["kill"] = time.monotonic()
            cluster.kill_node(victim)

            # Failover as the cluster sees it: the partition has another leader.
            def new_leader() -> bool:
                with contextlib.suppress(Exception):  # the metadata request may fail meanwhile
                    leader = partition_state(cluster, topic)[victim_partition][0]
                    if leader not in (-1, victim):
                        marks["new_leader"] = time.monotonic()
                return "new_leader" in marks

            with contextlib.suppress(AssertionError):  # the test checks the mark afterwards
                wait_until(new_leader, 60, "a new leader", step=0.1)
            time.sleep(2.0)  # the scenario: "later", streaming on two nodes for a while
            marks["restart"] = time.monotonic()
            cluster.start_node(victim, wait=True)
            marks["restarted"] = time.monotonic()

        duration = ledger.stream(send, 0, STREAM, RATE, at={STREAM // 4: kill_then_restart})
        tot = wait_reports(ek, topic, 120)
        assert "restarted" in marks or wait_until_mark(marks, "restarted", 90)
        records = close_and_read(ek, cluster, topic, ledger)
    finally:
        ek.close(5)
    verdict = verify(ledger, records, reports=path == "kafka_publish")
    # Nothing may fail here: acks=all + idempotence + the default message.timeout.ms ride
    # through a leader failover.
    assert verdict.in_kafka == set(ledger.accepted)
    assert tot["accepted"] == len(ledger.accepted)
    assert tot["delivered"] == len(ledger.accepted) and tot["failed"] == 0
    if path == "kafka_publish":
        assert not verdict.failed and len(verdict.ok) == len(ledger.accepted)
        stall = longest_gap(
            [r.at for r in ledger.reports if r.partition in victim_parts], marks["kill"] - 1
        )
    else:
        stall = float("nan")
    heal(cluster, topic)
    print(
        f"\n[kill -9 {path}] {STREAM} offered in {duration:.1f}s: accepted "
        f"{len(ledger.accepted)}, rejected {len(ledger.rejected)}, in Kafka "
        f"{len(verdict.in_kafka)}, delivered (reports/counters) {tot['delivered']}, failed "
        f"{tot['failed']}; killed node {victim} (led partitions {victim_parts}); "
        f"new leader after {marks.get('new_leader', float('nan')) - marks['kill']:.1f}s; "
        f"longest delivery stall on its partitions {stall:.1f}s; restart took "
        f"{marks['restarted'] - marks['restart']:.1f}s; worst call {ledger.worst_call * 1e3:.1f}ms"
    )


def test_kill_leader_during_a_handover_keeps_order_and_counts(cluster: LocalKafka) -> None:
    """Route-less calls (failures-only handle), a leader killed, and the first routed calls
    right after: they wait for the quiet handle's messages, which wait for the failover
    (docs/benchmarks.md, fourth pass). The same keys on both sides: one order per key,
    each record once, exact counts, one report per routed call."""
    topic = new_topic(cluster, 3)
    victim = partition_state(cluster, topic)[0][0]
    ledger = Ledger()
    first_routed = STREAM // 4 + 2_000  # 0.2 s after the kill: the leader is gone
    ek = EventKafka([f"[k]{cluster.bootstrap}/{topic}?{SAFE}"], queue_full_wait=5.0)
    ek.add_report_route("rec", ledger.route)
    publish = ek.kafka_publish

    def send(seq: int, key: str) -> int:
        if seq < first_routed:
            return publish("k", str(seq), key)
        return publish("k", str(seq), key, "rec")

    try:
        ledger.stream(
            send, 0, STREAM // 2, RATE, at={STREAM // 4: lambda: cluster.kill_node(victim)}
        )
        tot = wait_reports(ek, topic, 120)
        records = close_and_read(ek, cluster, topic, ledger)
    finally:
        ek.close(5)
    verdict = verify(ledger, records, reports=False)  # per-key order and once, across both
    assert verdict.in_kafka == set(ledger.accepted)
    assert tot["accepted"] == len(ledger.accepted)
    assert tot["delivered"] == len(ledger.accepted) and tot["failed"] == 0
    routed = [s for s in ledger.accepted if s >= first_routed]
    assert sorted(r.seq for r in ledger.reports) == routed  # one each
    assert all(r.status == 0 for r in ledger.reports)
    print(
        f"\nhandover at a leader kill: {len(ledger.accepted)} accepted "
        f"({len(ledger.rejected)} refused), {len(routed)} routed"
    )


# -- 2. below min.insync.replicas for longer than message.timeout.ms ------------------------------


REASONS = re.compile(r"timed out|NOT_ENOUGH_REPLICAS|enough in-sync|TIMED_OUT", re.IGNORECASE)


def test_two_of_three_down_past_message_timeout_then_recovery(cluster: LocalKafka) -> None:
    topic = new_topic(cluster, 3)
    timeout_ms = 4000
    max_queue = 20_000
    ledger = Ledger()
    ek = EventKafka(
        [
            f"[k]{cluster.bootstrap}/{topic}?{SAFE}&t.message.timeout.ms={timeout_ms}"
            f"&g.queue.buffering.max.messages={max_queue}"
        ]
    )  # queue_full_wait=0: a full queue means -1 at once
    samples: list[tuple[float, float, int]] = []
    stop_sampling = threading.Event()
    try:
        send = publish_path(ek, cluster, topic, ledger)
        # Healthy first.
        ledger.stream(send, 0, 2_000, RATE)
        tot = wait_reports(ek, topic, 30)
        assert tot["delivered"] == 2_000

        sp = ek.pool.producers[0]

        def sample() -> None:
            while not stop_sampling.wait(0.2):
                # Messages held, not len(producer): that also counts librdkafka's queued
                # error and log events, which a stalled cluster adds (a CI run read 20001).
                samples.append((time.monotonic(), rss_mb(), sp._in_flight()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        base_rss = rss_mb()

        # Stop two of three nodes (orderly), keep node 1: no partition can meet min.insync 2.
        t_stop = time.monotonic()
        stoppers = [
            threading.Thread(target=cluster.stop_node, args=(n,), daemon=True) for n in (2, 3)
        ]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(60)
        stopped_in = time.monotonic() - t_stop
        assert not cluster.node(2).pid and not cluster.node(3).pid

        # Keep offering 10k/s for 2.5 x message.timeout.ms: more than the queue can hold.
        outage_first = 2_000
        outage_n = int(RATE * timeout_ms / 1000 * 2.5)
        ledger.stream(send, outage_first, outage_n, RATE)
        stream_end = time.monotonic()
        tot = wait_reports(ek, topic, timeout_ms / 1000 + 15)
        outage_done = time.monotonic()
        assert tot["in_flight"] == 0, tot
        stop_sampling.set()
        sampler.join()

        # Recovery: the two nodes come back; the same EventKafka must deliver again.
        t_up = time.monotonic()
        for n in (2, 3):
            cluster.start_node(n, wait=False)
        cluster.wait_ready(120)
        up_in = time.monotonic() - t_up
        after_first = outage_first + outage_n
        before = len(ledger.reports)
        t_new = time.monotonic()
        ledger.stream(send, after_first, 2_000, 2_000.0)
        tot = wait_reports(ek, topic, 90)
        new_rows = [r for r in ledger.reports[before:] if r.seq >= after_first]
        first_ok = min((r.at for r in new_rows if r.status == 0), default=float("nan"))
        rebuilds = sp.rebuilds
        left = ek.close(30)
    finally:
        stop_sampling.set()
        ek.close(5)
    assert left == 0

    records = consume_all(cluster.bootstrap, topic, timeout=60)
    verdict = verify(ledger, records)
    outage = set(range(outage_first, after_first)) & set(ledger.accepted)
    after = set(range(after_first, after_first + 2_000))

    # Every outage message got exactly one report (verify); each failure names its cause.
    reasons = Counter(
        "timed out" if "timed out" in reason.lower() else reason
        for reason in verdict.failed.values()
    )
    assert all(REASONS.search(reason) for reason in verdict.failed.values()), reasons
    assert set(verdict.failed) <= outage, "a failure outside the outage"
    # Each failure came within message.timeout.ms of its call (+ librdkafka's 1 s scan).
    last_failure = max(r.at for r in ledger.reports if r.status != 0)
    assert last_failure - stream_end <= timeout_ms / 1000 + 2.0
    assert len(verdict.failed) >= len(outage) * 0.9, "below min.insync most must fail"
    # Calls never block: queue_full_wait=0, so a full queue is an immediate, counted -1.
    assert ledger.worst_call < 0.5, f"a call took {ledger.worst_call * 1e3:.0f} ms"
    assert tot["rejected_queue_full"] == len(ledger.rejected) > 0
    # Memory stays bounded: the producer queue never exceeds its limit; RSS grows little.
    peak_queue = max(q for _, _, q in samples)
    peak_rss = max(r for _, r, _ in samples)
    assert peak_queue <= max_queue
    assert peak_rss - base_rss < 150, (base_rss, peak_rss)
    # After recovery, without restarting anything of ours, new messages flow again.
    assert after <= set(ledger.accepted)
    assert all(r.status == 0 for r in new_rows) and len(new_rows) == 2_000
    assert after <= verdict.in_kafka
    heal(cluster, topic)
    print(
        f"\n[2 of 3 down] stopping took {stopped_in:.1f}s; during {outage_n} offered "
        f"({outage_done - t_stop:.1f}s outage): accepted {len(outage)}, rejected (queue full) "
        f"{len(ledger.rejected)}, failure reports {len(verdict.failed)} {dict(reasons)}, "
        f"of which persisted anyway {len(verdict.failed_but_persisted)}, success "
        f"{len(outage) - len(verdict.failed)}; peak queue {peak_queue}/{max_queue}; RSS "
        f"{base_rss:.0f} -> peak {peak_rss:.0f} MB; worst call {ledger.worst_call * 1e3:.1f}ms; "
        f"nodes back in {up_in:.1f}s; first new delivery {first_ok - t_new:.1f}s after the "
        f"first new publish; producer rebuilds {rebuilds}"
    )


# -- 3. network-level cut: the leader frozen with SIGSTOP, then SIGCONT ---------------------------


def test_leader_paused_sigstop_then_resumed(cluster: LocalKafka) -> None:
    topic = new_topic(cluster, 3)
    victim = partition_state(cluster, topic)[0][0]
    victim_parts = [
        p for p, (leader, _) in partition_state(cluster, topic).items() if leader == victim
    ]
    ledger = Ledger()
    marks: dict[str, float] = {}
    pause_s = 10.0

    ek = EventKafka([f"[k]{cluster.bootstrap}/{topic}?{SAFE}"], queue_full_wait=5.0)
    try:
        send = publish_path(ek, cluster, topic, ledger)

        def pause_then_resume() -> None:
            marks["pause"] = time.monotonic()
            cluster.pause_node(victim)
            time.sleep(pause_s)  # the fault under test: a node frozen for pause_s
            cluster.resume_node(victim)
            marks["resume"] = time.monotonic()

        n = 150_000
        duration = ledger.stream(send, 0, n, RATE, at={30_000: pause_then_resume})
        assert wait_until_mark(marks, "resume", 30)
        tot = wait_reports(ek, topic, 120)
        records = close_and_read(ek, cluster, topic, ledger)
    finally:
        ek.close(5)
    verdict = verify(ledger, records)
    assert verdict.in_kafka == set(ledger.accepted)
    assert not verdict.failed and tot["failed"] == 0
    assert tot["delivered"] == len(ledger.accepted)
    ok_times = [r.at for r in ledger.reports if r.partition in victim_parts]
    stall = longest_gap(ok_times, marks["pause"] - 1)
    resumed_after = min((t for t in ok_times if t > marks["pause"] + 1), default=float("nan"))
    others = [r.at for r in ledger.reports if r.partition not in victim_parts]
    other_stall = longest_gap(others, marks["pause"] - 1)
    heal(cluster, topic)
    print(
        f"\n[SIGSTOP {pause_s:.0f}s] {n} offered in {duration:.1f}s: accepted "
        f"{len(ledger.accepted)}, rejected {len(ledger.rejected)}, in Kafka "
        f"{len(verdict.in_kafka)}, success reports {len(verdict.ok)}; paused node {victim} "
        f"(led {victim_parts}); longest delivery stall on them {stall:.1f}s, on the other "
        f"partitions (it is in their ISR) {other_stall:.1f}s; deliveries "
        f"resumed {resumed_after - marks['pause']:.1f}s after the pause; worst call "
        f"{ledger.worst_call * 1e3:.1f}ms"
    )


# -- 4. close() right before the process exits -----------------------------------------------------

_EXIT_AFTER_CLOSE = """
import sys
from event_kafka import EventKafka
from event_kafka.sip import CallId
boot, topic, n, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sock = f"{boot}/{topic}?t.acks=all&g.enable.idempotence=true"
ek = EventKafka([f"[k]{sock}"], queue_full_wait=5.0)
if path == "raise_event":
    ek.publish_event("E_X")
    ek.subscribe("E_X", f"kafka:{sock}&key=callid")
accepted = 0
for i in range(n):
    if path == "raise_event":
        accepted += ek.raise_event("E_X", {"seq": i}, sip_msg=CallId(f"call-{i % 500}"))
    else:
        accepted += ek.kafka_publish("k", str(i), key=f"call-{i % 500}") == 1
left = ek.close(30)
print(accepted, left)
"""


@pytest.mark.parametrize("path", ["kafka_publish", "raise_event"])
def test_close_then_exit_delivers_everything_accepted(cluster: LocalKafka, path: str) -> None:
    """A script that publishes, calls close() and exits at once loses nothing it was told 1."""
    import subprocess
    import sys

    topic = new_topic(cluster, 3)
    n = 20_000
    res = subprocess.run(
        [sys.executable, "-c", _EXIT_AFTER_CLOSE, cluster.bootstrap, topic, str(n), path],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    accepted, left = map(int, res.stdout.split())
    assert accepted == n and left == 0
    records = consume_all(cluster.bootstrap, topic, timeout=30)
    assert len({seq_of(r.value) for r in records}) == n == len(records)


# -- 5. what is NOT guaranteed (docs/guarantees.md), shown on the same cluster --------------------

_KILL_SELF = """
import os, signal, sys
from event_kafka import EventKafka
boot, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
# A long linger keeps the accepted messages in librdkafka's memory, as a busy queue would.
ek = EventKafka([f"[k]{boot}/{topic}?t.acks=all&g.enable.idempotence=true&g.linger.ms=30000"])
assert all(ek.kafka_publish("k", str(i)) == 1 for i in range(n))
print("accepted", n, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_of_our_process_loses_what_librdkafka_held(cluster: LocalKafka) -> None:
    import subprocess
    import sys

    topic = new_topic(cluster, 1)
    res = subprocess.run(
        [sys.executable, "-c", _KILL_SELF, cluster.bootstrap, topic, "5000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == -9 and "accepted 5000" in res.stdout
    records = consume_all(cluster.bootstrap, topic, timeout=10)
    # Accepted (1) but never sent: gone with the process, and no report will ever say so.
    assert len(records) < 5000
    print(f"\n[kill -9 of our process] accepted 5000, in Kafka {len(records)}")


def test_acks_1_loses_acknowledged_messages_when_the_leader_dies(cluster: LocalKafka) -> None:
    """acks=1: the leader alone acknowledges; if it dies before replicating, the success
    report was a lie. (acks=all in the same situation: see the kill -9 test.)"""
    topic = new_topic(cluster, 1)
    leader = partition_state(cluster, topic)[0][0]
    followers = [n for n in cluster.node_ids if n != leader]
    ledger = Ledger()
    ek = EventKafka(
        [
            f"[all]{cluster.bootstrap}/{topic}?t.acks=all",  # first 1000: surely replicated
            f"[k]{cluster.bootstrap}/{topic}?t.acks=1",
        ]
    )
    first, n = 1_000, 3_000
    try:
        ledger.stream(publish_path(ek, cluster, topic, ledger, "all"), 0, first, RATE)
        assert wait_reports(ek, topic, 30)["delivered"] == first
        send = publish_path(ek, cluster, topic, ledger)
        # Frozen followers stay in the ISR for replica.lag.time.max.ms (30 s). A fetch
        # response already in their socket buffers still lands when they wake, so the
        # acks=1 stream lasts 1.5 s: longer than one fetch round (500 ms).
        for f in followers:
            cluster.pause_node(f)
        try:
            ledger.stream(send, first, n, 2_000.0)
            tot = wait_reports(ek, topic, 20)
            assert tot["delivered"] == first + n, tot  # acknowledged by the leader alone
            cluster.kill_node(leader)
        finally:
            for f in followers:
                cluster.resume_node(f)

        def follower_leads() -> bool:
            with contextlib.suppress(Exception):  # the metadata request may fail meanwhile
                return partition_state(cluster, topic)[0][0] in followers
            return False

        with contextlib.suppress(AssertionError):  # as before: the verdict below tells
            wait_until(follower_leads, 60, "a follower leading", step=0.2)
        ek.close(5)
    finally:
        ek.close(1)
    heal(cluster, topic)
    records = consume_all(cluster.bootstrap, topic, timeout=30)
    verdict = verify(ledger, records, exact=False)
    assert len(verdict.ok) == first + n and not verdict.duplicates
    assert verdict.lost, "expected acknowledged-but-lost messages"
    assert verdict.lost <= set(range(first, first + n)), "lost one replicated before the pause"
    lost = verdict.lost
    print(
        f"\n[acks=1, leader died before replicating] success reports {first + n}, "
        f"lost {len(lost)} (of the {n} acknowledged by the leader alone)"
    )


def _pause_leader_briefly(cluster: LocalKafka, props: str) -> tuple[Ledger, Verdict]:
    """Stream while one node freezes for 4 s: shorter than the broker session (no failover),
    longer than ``request.timeout.ms``. With acks=all every partition waits for the frozen
    replica, so the client gives up on requests that leaders have already written and will
    commit when it wakes."""
    topic = new_topic(cluster, 3)
    victim = partition_state(cluster, topic)[0][0]
    ledger = Ledger()
    ek = EventKafka([f"[k]{cluster.bootstrap}/{topic}?{props}"], queue_full_wait=5.0)
    try:
        send = publish_path(ek, cluster, topic, ledger)

        def pause() -> None:
            cluster.pause_node(victim)
            time.sleep(4.0)  # the fault under test: a node frozen for 4 s
            cluster.resume_node(victim)

        ledger.stream(send, 0, 60_000, RATE, at={15_000: pause})
        assert wait_reports(ek, topic, 90)["in_flight"] == 0
        assert ek.close(30) == 0
    finally:
        cluster.resume_node(victim)
        ek.close(1)
    # Everything is acknowledged or failed by now: read to the end, no count to wait for.
    records = consume_all(cluster.bootstrap, topic, timeout=60)
    return ledger, verify(ledger, records, exact=False)


SHORT_REQUEST = "t.request.timeout.ms=1500"


def test_without_idempotence_a_retry_can_duplicate(cluster: LocalKafka) -> None:
    ledger, v = _pause_leader_briefly(cluster, f"t.acks=all&{SHORT_REQUEST}")
    assert not v.failed and not v.lost and v.in_kafka == set(ledger.accepted)  # nothing lost...
    assert v.duplicates > 0  # ...but librdkafka's retries wrote some twice
    print(
        f"\n[no idempotence, requests timed out] {len(ledger.accepted)} sent, all delivered, "
        f"{v.duplicates} duplicates, order broken for {len(v.order_broken)} keys"
    )


def test_with_idempotence_the_same_retries_do_not_duplicate(cluster: LocalKafka) -> None:
    ledger, v = _pause_leader_briefly(cluster, f"{SAFE}&{SHORT_REQUEST}")
    assert not v.failed and not v.lost and v.in_kafka == set(ledger.accepted)
    assert v.duplicates == 0 and not v.order_broken
    print(f"\n[idempotence, requests timed out] {len(ledger.accepted)} sent, 0 duplicates")


def test_message_timeout_failures_may_be_persisted(cluster: LocalKafka) -> None:
    """message.timeout.ms shorter than a stall: failure reports for messages that are in
    Kafka anyway ("possibly persisted"). Also measured, not asserted (it depends on timing):
    duplicates of successfully reported messages despite idempotence, from librdkafka's epoch
    bump after the timeouts re-sending records the leaders had already written (librdkafka
    2.16.0: seen in about 2 runs out of 3)."""
    props = f"{SAFE}&{SHORT_REQUEST}&t.message.timeout.ms=2000"
    ledger, v = _pause_leader_briefly(cluster, props)
    assert v.failed, "expected message.timeout.ms failures"
    assert all("timed out" in r.lower() for r in v.failed.values())
    assert not v.lost  # a success report is still the truth
    print(
        f"\n[message.timeout.ms < freeze] {len(ledger.accepted)} sent: "
        f"{len(v.failed)} failure reports, {len(v.failed_but_persisted)} of them in Kafka "
        f"anyway; {v.duplicates} duplicates despite idempotence; order broken for "
        f"{len(v.order_broken)} keys"
    )
    assert v.failed_but_persisted, "a failure report does not prove the message is absent"


def test_close_during_a_stall_fails_every_message_it_left(
    cluster: LocalKafka,
) -> None:
    """flush time: close() waits at most its timeout, then every message still held gets a
    failure report ("not delivered before shutdown"). The ones already in flight may still be
    written by the broker once it resumes: that count is printed, not asserted, because
    whether any request was in flight at the moment of close depends on timing (a CI run on
    2 busy cores saw none)."""
    topic = new_topic(cluster, 3)
    victim = partition_state(cluster, topic)[0][0]
    ledger = Ledger()
    ek = EventKafka([f"[k]{cluster.bootstrap}/{topic}?{SAFE}"], flush_timeout=1.0)
    try:
        send = publish_path(ek, cluster, topic, ledger)
        ledger.stream(send, 0, 10_000, RATE)
        cluster.pause_node(victim)  # acks=all: every partition waits for the frozen replica
        ledger.stream(send, 10_000, 10_000, RATE)
        t0 = time.monotonic()
        left = ek.close()
        took = time.monotonic() - t0
    finally:
        cluster.resume_node(victim)
        ek.close(0.1)
    assert left > 0 and took < 1.0 + 6.0
    records = consume_all(cluster.bootstrap, topic, timeout=30)
    v = verify(ledger, records, exact=False)
    assert len(v.failed) == left
    assert set(v.failed.values()) == {"not delivered before shutdown"}
    assert not v.lost and not v.duplicates
    print(
        f"\n[close(1 s) during a stall] {len(ledger.accepted)} accepted, close took "
        f"{took:.1f}s, {left} failure reports, {len(v.failed_but_persisted)} of them in "
        "Kafka anyway"
    )
