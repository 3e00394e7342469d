"""Typed statistics: owners are never bare strings; one aggregation; exact lock-free tallies."""

from __future__ import annotations

import threading

from event_kafka.statistics import (
    COUNTERS,
    BrokerOwner,
    EventOwner,
    LaneCounters,
    Tally,
    group,
)


def test_a_broker_id_and_an_event_of_the_same_name_are_two_owners() -> None:
    assert BrokerOwner("E1") != EventOwner("E1")
    sums = group(
        [
            (BrokerOwner("E1"), LaneCounters(accepted=2, delivered=1)),
            (EventOwner("E1"), LaneCounters(accepted=5, rejected_fatal=1)),
            (BrokerOwner("E1"), LaneCounters(accepted=1, failed=1)),
        ]
    )
    assert sums[BrokerOwner("E1")] == LaneCounters(accepted=3, delivered=1, failed=1)
    assert sums[EventOwner("E1")].as_dict()["rejected"] == 1
    assert sums[EventOwner("E1")].in_flight == 5


def test_counter_names_come_from_one_place() -> None:
    d = LaneCounters().as_dict()
    assert tuple(d)[: len(COUNTERS)] == COUNTERS
    assert set(d) - set(COUNTERS) == {"in_flight", "rejected"}
    assert set(LaneCounters().summary()) <= set(d)


def test_tally_is_exact_under_concurrent_bumps_and_reads() -> None:
    t = Tally()
    reads: list[int] = []
    stop = threading.Event()

    def bump() -> None:
        for _ in range(20_000):
            t.bump()

    def read() -> None:
        while not stop.is_set():
            reads.append(t.value)

    reader = threading.Thread(target=read)
    reader.start()
    bumpers = [threading.Thread(target=bump) for _ in range(4)]
    for b in bumpers:
        b.start()
    for b in bumpers:
        b.join()
    stop.set()
    reader.join()
    assert t.value == 80_000
    assert t.value == 80_000  # reading does not count
    assert reads == sorted(reads) and all(0 <= r <= 80_000 for r in reads)
