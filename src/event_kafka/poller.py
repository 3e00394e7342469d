"""One thread per process serves the delivery reports and errors of every producer.

A thread per producer made Python threads grow with the number of distinct producer
configurations (300 subscriptions with distinct properties: 300 poll threads on top of
librdkafka's own). The poller instead serves, in one loop:

* **busy** producers (messages in flight, ``len(producer) > 0``, or calls waiting for a
  handover) every round: a single busy producer is polled with a blocking timeout, so its
  reports are served the moment they arrive; several are polled without waiting, then the
  loop waits a short, growing interval (1 ms to 20 ms) while nothing arrives;
* **idle** producers every 0.25 s only, for their error and log events;
* and it sleeps when nothing is in flight anywhere. ``kick()`` (called by ``publish`` when
  the poller sleeps) wakes it, so the first report after a quiet spell is not delayed.

Only the library's own callbacks run here (counting, queueing reports for the route
workers): user code (report routes, ``on_report``) never runs on this thread, so it cannot
stall or kill it. It never blocks on anything but librdkafka's poll and its wake-up event.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from . import forksafe

log = logging.getLogger("event_kafka.producer")

IDLE_INTERVAL = 0.25
BUSY_WAIT_MIN = 0.001
BUSY_WAIT_MAX = 0.02


class Pollable(Protocol):
    """What the poller needs from a producer (:class:`~event_kafka.producer.SharedProducer`)."""

    @property
    def busy(self) -> bool:
        """Whether it has work in flight (then it is served every round)."""
        ...

    def serve(self, timeout: float) -> int: ...


class Poller:
    """Serves every registered producer from one daemon thread (started on first use)."""

    def __init__(self) -> None:
        self._lock = forksafe.lock()
        self._members: dict[int, Pollable] = {}
        self._snapshot: tuple[Pollable, ...] = ()
        self._wake = forksafe.event()
        self.sleeping = False
        self._thread: threading.Thread | None = None
        forksafe.register(self)

    def add(self, p: Pollable) -> None:
        with self._lock:
            self._members[id(p)] = p
            self._snapshot = tuple(self._members.values())
            if self._thread is None:
                t = threading.Thread(target=self._run, name="ek-poller", daemon=True)
                self._thread = t
                t.start()
        self._wake.set()

    def remove(self, p: Pollable) -> None:
        with self._lock:
            if self._members.pop(id(p), None) is not None:
                self._snapshot = tuple(self._members.values())

    def kick(self) -> None:
        """Wake the poller if it sleeps (something was just produced)."""
        if self.sleeping:
            self._wake.set()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _run(self) -> None:
        wait = BUSY_WAIT_MIN
        next_idle = 0.0
        while True:
            try:
                wait, next_idle = self._round(wait, next_idle)
            except BaseException as exc:  # never let anything end the thread
                guarded(log.error, "poller round failed: %r", exc)
                time.sleep(BUSY_WAIT_MAX)

    def _round(self, wait: float, next_idle: float) -> tuple[float, float]:
        snap = self._snapshot
        now = time.monotonic()
        idle_round = now >= next_idle
        if idle_round:
            next_idle = now + IDLE_INTERVAL
        busy = [p for p in snap if p.busy]
        served = 0
        if idle_round:
            for p in snap:
                if not p.busy:
                    served += p.serve(0)
        if len(busy) == 1:
            # Blocks in librdkafka (GIL released) and returns as soon as a report arrives.
            served += busy[0].serve(wait)
        else:
            for p in busy:
                served += p.serve(0)
        if served:
            return BUSY_WAIT_MIN, next_idle
        if busy:
            if len(busy) > 1:
                self._wait(wait)
            return min(wait * 2, BUSY_WAIT_MAX), next_idle
        # Nothing in flight: sleep until the next idle round or a kick. The re-check after
        # raising the flag closes the race with a publish that read it just before.
        self.sleeping = True
        try:
            if any(p.busy for p in self._snapshot):
                return BUSY_WAIT_MIN, next_idle
            self._wait(max(next_idle - time.monotonic(), 0.0) if self._snapshot else None)
        finally:
            self.sleeping = False
        return BUSY_WAIT_MIN, next_idle

    def _wait(self, timeout: float | None) -> None:
        self._wake.wait(timeout)
        self._wake.clear()

    def _after_fork_in_child(self) -> None:
        # The parent's thread and producers are not this process's.
        self._members = {}
        self._snapshot = ()
        self._thread = None
        self.sleeping = False


def guarded(fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)`` (a logging call), ignoring whatever it raises.

    Logging runs handlers, which are user code: nothing they raise (``BaseException``
    included) may reach librdkafka's callbacks or end a library thread."""
    with contextlib.suppress(BaseException):
        fn(*args)


POLLER = Poller()
"""The process's poller (every producer pool shares it)."""
