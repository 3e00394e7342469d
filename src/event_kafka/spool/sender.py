"""The sender: one thread per process that feeds spooled records from disk to librdkafka.

A spooled lane sends directly (``append`` then ``produce`` in the caller's thread) while it
can. It hands over to this thread when it cannot: librdkafka's queue is full, a report
route's backlog is full, a replay of records left by a dead process runs, or records that
failed retriably (timed out, purged by a producer rebuild) wait to be sent again. The
thread then reads them from disk in sequence order (bounded memory: nothing waits in RAM),
deduplicates against the topic's tail where needed, expires those older than ``max_age``,
and switches the lane back to direct mode once it has caught up.

Like the poller, it only runs library code; it sleeps while no lane needs it and is woken
(:meth:`Sender.wake`) by the events that give it work.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from .. import forksafe
from ..poller import guarded

__all__ = ["IDLE", "SENDER", "WAITING", "WORKED", "Pumped", "Sender"]

log = logging.getLogger("event_kafka.spool")

WORKED = 2  # did something: pump again at once
WAITING = 1  # has work it cannot do yet (queue full, broker down): try again soon
IDLE = 0  # nothing to do until woken

RETRY_MIN = 0.002
RETRY_MAX = 0.1
IDLE_WAIT = 1.0


class Pumped(Protocol):
    """What the sender drives (:class:`~event_kafka.spool.lane.SpooledLane`)."""

    def pump(self) -> int:
        """One bounded step of work; never raises. Returns WORKED, WAITING or IDLE."""
        ...


class Sender:
    """Drives every registered spooled lane from one daemon thread (started on first use)."""

    def __init__(self) -> None:
        self._lock = forksafe.lock()
        self._lanes: tuple[Pumped, ...] = ()
        self._wake = forksafe.event()
        self._thread: threading.Thread | None = None
        forksafe.register(self)

    def add(self, lane: Pumped) -> None:
        with self._lock:
            if lane not in self._lanes:
                self._lanes = (*self._lanes, lane)
            if self._thread is None:
                t = threading.Thread(target=self._run, name="ek-spool-sender", daemon=True)
                self._thread = t
                t.start()
        self._wake.set()

    def remove(self, lane: Pumped) -> None:
        with self._lock:
            self._lanes = tuple(ln for ln in self._lanes if ln is not lane)

    def wake(self) -> None:
        """Something changed (a lane left direct mode, a record failed retriably...)."""
        self._wake.set()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _run(self) -> None:
        wait = RETRY_MIN
        while True:
            best = IDLE
            for lane in self._lanes:
                try:
                    best = max(best, lane.pump())
                except BaseException as exc:  # never let anything end the thread
                    guarded(log.error, "spool sender: %r", exc)
                    best = max(best, WAITING)
            if best == WORKED:
                wait = RETRY_MIN
                continue
            if best == WAITING:
                self._wake.wait(wait)
                wait = min(wait * 2, RETRY_MAX)
            else:
                self._wake.wait(IDLE_WAIT)
                wait = RETRY_MIN
            self._wake.clear()

    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist here; lanes re-register on their first use.
        self._lanes = ()
        self._thread = None


SENDER = Sender()
"""The process's sender (every spooled lane shares it)."""
