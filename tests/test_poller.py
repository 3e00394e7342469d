"""The process's one delivery thread (``event_kafka.poller``), driven by fake producers: who is
served, with which timeout, and that nothing a producer raises ends the thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from event_kafka.poller import Poller
from tests.support import wait_until


class FakeProducer:
    """A :class:`~event_kafka.poller.Pollable`: ``in_flight`` reports pending; each ``serve``
    hands out one of them and records its timeout."""

    def __init__(self, in_flight: int = 0, fail: BaseException | None = None) -> None:
        self.in_flight = in_flight
        self.fail = fail
        self.timeouts: list[float] = []
        self.busy_timeouts: list[float] = []  # of the serves with reports pending
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self.in_flight > 0

    def serve(self, timeout: float) -> int:
        with self._lock:
            self.timeouts.append(timeout)
            if self.fail is not None:
                exc, self.fail = self.fail, None
                raise exc
            if self.in_flight:
                self.busy_timeouts.append(timeout)
                self.in_flight -= 1
                return 1
            return 0

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.timeouts)


@pytest.fixture
def poller() -> Iterator[Poller]:
    p = Poller()
    yield p
    for member in list(p._snapshot):
        p.remove(member)  # nothing left: its daemon thread sleeps for good


def test_a_lone_busy_producer_is_served_with_a_blocking_timeout(poller: Poller) -> None:
    busy = FakeProducer(in_flight=5)
    poller.add(busy)
    wait_until(lambda: busy.in_flight == 0, 10, "the five reports served")
    # Alone, it is polled with a timeout (librdkafka blocks, GIL released): no busy loop.
    assert busy.busy_timeouts and all(t > 0 for t in busy.busy_timeouts), busy.busy_timeouts


def test_several_busy_producers_are_polled_without_waiting(poller: Poller) -> None:
    a, b = FakeProducer(), FakeProducer()
    poller.add(a)
    poller.add(b)
    wait_until(lambda: poller.sleeping, 10, "the poller asleep (nothing in flight)")
    a.in_flight = b.in_flight = 50  # both busy before the kick: the next round sees both
    poller.kick()
    wait_until(lambda: a.in_flight == 0 and b.in_flight == 0, 10, "both producers drained")
    # While both had reports pending, neither was polled with a wait (one would hold up the
    # other's reports): they drained round by round together, every serve with timeout 0.
    assert set(a.busy_timeouts) == set(b.busy_timeouts) == {0}, (a.busy_timeouts, b.timeouts)


def test_what_a_producer_raises_never_ends_the_thread(poller: Poller) -> None:
    bad = FakeProducer(in_flight=1, fail=KeyboardInterrupt())  # a BaseException, even
    poller.add(bad)
    wait_until(lambda: bad.in_flight == 0, 10, "served again after it raised")
    good = FakeProducer(in_flight=3)
    poller.add(good)
    wait_until(lambda: good.in_flight == 0, 10, "a later producer served by the same thread")
    assert poller.thread is not None and poller.thread.is_alive()


def test_a_removed_producer_is_not_served_again(poller: Poller) -> None:
    gone, stays = FakeProducer(in_flight=10**9), FakeProducer(in_flight=10**9)
    poller.add(gone)
    poller.add(stays)
    wait_until(lambda: gone.calls > 0, 10, "the first producer served")
    poller.remove(gone)
    # A round that began before the remove may still serve it once: take its count after a
    # later serve of the other producer, then let more rounds pass (served, counted).
    mark = stays.calls
    wait_until(lambda: stays.calls > mark, 10, "a round after the remove")
    before = gone.calls
    mark = stays.calls
    wait_until(lambda: stays.calls > mark + 20, 10, "twenty more rounds")
    assert gone.calls == before
