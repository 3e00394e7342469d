"""The route worker's hand-over (report.py), without a broker: reports are plain tuples here."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pytest

from event_kafka import report
from event_kafka.report import Delivery, Report, RouteWorker
from tests.support import wait_until


class Source:
    kafka_id = "k"
    failures = 0

    def route_failed(self) -> None:
        self.failures += 1


class CountingQueue(queue.SimpleQueue[Any]):
    """The worker's wake-up queue, counting the wake-ups put on it."""

    puts = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.puts += 1
        super().put(item, block, timeout)


def failed(n: int) -> Delivery:
    # A failure report: built by Report.from_delivery without a librdkafka message's fields.
    class Msg:
        def key(self) -> None:
            return None

        def value(self) -> bytes:
            return f"m{n}".encode()

        def topic(self) -> str:
            return "t"

        def partition(self) -> int:
            return -1

    return Delivery(Source(), object(), Msg(), "test failure")  # type: ignore[arg-type]


@pytest.fixture
def worker() -> Iterator[tuple[RouteWorker, list[Report], CountingQueue]]:
    ran: list[Report] = []
    w = RouteWorker("t", ran.append)
    q = w._q = CountingQueue()
    try:
        yield w, ran, q
    finally:
        w.stop(5)


def test_worker_naps_for_reports_still_due_then_sleeps(
    worker: tuple[RouteWorker, list[Report], CountingQueue],
) -> None:
    w, ran, q = worker
    w.reserve()
    w.reserve()  # two accepted messages, one report so far: one is still due
    w.submit(failed(1))
    wait_until(lambda: len(ran) == 1, 5, "the first report")
    # It naps a bounded while for the report still due, then sleeps until woken (a broker
    # down for minutes must not keep it napping): asleep means submit() wakes it again.
    wait_until(lambda: not w._awake, 5, "the worker asleep after its naps")
    w.submit(failed(2))
    wait_until(lambda: len(ran) == 2, 5, "the second report")
    assert q.puts == 2  # one wake-up per submit: it was asleep both times
    assert [r.kafka_msg for r in ran] == ["m1", "m2"]
    assert all(r.kafka_status == report.STATUS_FAIL for r in ran)


def test_reports_that_come_while_it_naps_need_no_wake_up(
    worker: tuple[RouteWorker, list[Report], CountingQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "NAPS", 10_000)  # naps for 10 s: the second report comes first
    w, ran, q = worker
    for _ in range(3):
        w.reserve()
    w.submit(failed(1))
    wait_until(lambda: len(ran) == 1, 5, "the first report")
    assert w._awake  # napping: two reports are due
    w.submit(failed(2))
    w.submit(failed(3))
    wait_until(lambda: len(ran) == 3, 5, "the reports submitted during the naps")
    assert q.puts == 1  # only the first submit woke it
    # Nothing due any more: it sleeps at once instead of napping out the 10 s.
    wait_until(lambda: not w._awake, 5, "the worker asleep with nothing due")


def test_stop_ends_the_naps(
    worker: tuple[RouteWorker, list[Report], CountingQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "NAPS", 100_000)  # 100 s of naps unless stop() ends them
    w, ran, _ = worker
    w.reserve()
    w.reserve()
    w.submit(failed(1))
    wait_until(lambda: len(ran) == 1, 5, "the first report")
    t = w._thread
    assert t is not None and w._awake
    w.stop(10)
    assert not t.is_alive()
