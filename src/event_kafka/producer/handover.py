"""A broker_id's handover from the failures-only handle to the per-message one, in order.

A ``broker_id`` used only without report routes publishes through its producer's quiet
handle (``delivery.report.only.error``: no Python call per success, see
:class:`~event_kafka.producer.lane.Lane`). The first call that needs a report for each message
(a report route, ``on_report``) moves the whole ``broker_id`` to the other handle for good.
Two librdkafka handles keep no order between them, so until the quiet handle has reported
every message of the ``broker_id``, its calls wait here, in order, instead of reaching
librdkafka: each is accepted (1) and counted as in flight; the poller sends them all once the
quiet handle holds none of the ``broker_id``'s messages. A value and the tombstone that
deletes it thus reach Kafka in the order they were published.

"Reported them all" covers the calls in progress too: a call reads its lane's callback object
before it looks for a handover and keeps it until it returns, and the quiet lane's in-flight
count is that object's reference count. So once it is zero, no call can still put a message on
the quiet handle.

The wait is bounded: at most :data:`MAX_WAITING` calls, then ``-1`` (counted as queue full),
as when librdkafka's own queue is full. On a healthy cluster it lasts one linger and round
trip; with the brokers down, until the quiet messages are delivered or time out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import forksafe
from ..poller import POLLER

if TYPE_CHECKING:
    from ..report import Report
    from .lane import Lane

__all__ = ["MAX_WAITING", "Handover"]

MAX_WAITING = 100_000
"""Calls a handover holds at most (librdkafka's default ``queue.buffering.max.messages``)."""

# (lane, value, key, headers, on_report) of one call that waits
_Waiting = tuple[
    "Lane", "bytes | str | None", "bytes | str | None", Any, "Callable[[Report], object] | None"
]


class Handover:
    """Holds a ``broker_id``'s calls until its quiet lane's messages are all reported."""

    def __init__(self, quiet: Lane) -> None:
        self.quiet = quiet  # the route-less lane that produced through the quiet handle
        self.lanes: list[Lane] = [quiet]  # every lane whose calls wait here
        self.waiting: deque[_Waiting] = deque()
        self.waiting_quiet = 0  # of them, calls of ``quiet`` (its derived count excludes them)
        self.switched = False
        self.done = False
        self.lock = forksafe.lock()

    def join(self, lane: Lane) -> bool:
        """Make ``lane``'s calls wait here too; False if the handover is already over."""
        with self.lock:
            if self.done:
                return False
            self.lanes.append(lane)
            lane.handover = self
            return True

    def hold(
        self,
        lane: Lane,
        value: bytes | str | None,
        key: bytes | str | None,
        headers: Any,
        on_report: Callable[[Report], object] | None,
    ) -> int | None:
        """Hold one call (1), refuse it (-1), or None: the handover is over, publish it."""
        if not isinstance(value, str | bytes | None) or not isinstance(key, str | bytes | None):
            raise TypeError("message and key must be str or bytes")
        with self.lock:
            if self.done:
                return None
            refused = lane.refuse_waiting(on_report, len(self.waiting) >= MAX_WAITING)
            if refused:
                return -1
            self.waiting.append((lane, value, key, headers, on_report))
            if lane is self.quiet:
                self.waiting_quiet += 1
            lane.took(on_report)
        POLLER.kick()
        return 1

    def advance(self) -> bool:
        """Send the held calls if the quiet handle holds none of the ``broker_id``'s messages
        any more; True once the handover is over. Called by the poller and by ``close()``."""
        if self.done:
            return True
        if self.quiet.held() > 0:
            return False
        with self.lock:
            if not self.switched:
                self.quiet.report_each(self.waiting_quiet)
                self.switched = True
            while self.waiting:
                lane, value, key, headers, on_report = self.waiting[0]
                if not lane.send_held(value, key, headers, on_report):
                    return False  # librdkafka's queue is full: the next round sends the rest
                self.waiting.popleft()
            self.done = True
            for ln in self.lanes:
                ln.handover = None
        return True

    def fail_waiting(self) -> None:
        """Fail what still waits (the producer closed before the quiet handle emptied)."""
        with self.lock:
            while self.waiting:
                lane, value, key, _headers, on_report = self.waiting.popleft()
                lane.fail_held(value, key, on_report)
            self.done = True
            for ln in self.lanes:
                ln.handover = None

    @property
    def held(self) -> int:
        return len(self.waiting)
