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
as when librdkafka's own queue is full. It lasts until librdkafka has reported what the quiet
handle held: on a healthy cluster about one linger and round trip with a short backlog; with
the brokers down, until those messages are delivered or time out. librdkafka reports every
message within ``message.timeout.ms``; a reference held past that and :data:`GRACE` (a kept
exception whose traceback holds a call's frame) no longer holds the handover back: it goes on,
and says so in the log.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import forksafe
from ..poller import POLLER

if TYPE_CHECKING:
    from ..report import Report
    from .lane import Lane

__all__ = ["CHUNK", "MAX_WAITING", "Handover"]

MAX_WAITING = 100_000
"""Calls a handover holds at most (librdkafka's default ``queue.buffering.max.messages``)."""

CHUNK = 10_000
"""Held calls sent per poller round (publishers wait on the handover's lock meanwhile)."""

GRACE = 30.0
"""Seconds past ``message.timeout.ms`` after which a handover stops waiting (module doc)."""

# (lane, value, key, headers, on_report) of one call that waits; str already encoded
_Waiting = tuple["Lane", "bytes | None", "bytes | None", Any, "Callable[[Report], object] | None"]


def _encoded(v: bytes | str | None, what: str) -> bytes | None:
    # As produce() would: the caller learns of a wrong type or an unencodable str at once.
    if v is None or type(v) is bytes:
        return v
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, bytes):
        return bytes(v)
    raise TypeError(f"{what} must be str or bytes, not {type(v).__name__}")


class Handover:
    """Holds a ``broker_id``'s calls until its quiet lane's messages are all reported."""

    def __init__(self, quiet: Lane, patience: float) -> None:
        self.quiet = quiet  # the route-less lane that produced through the quiet handle
        self.lanes: list[Lane] = [quiet]  # every lane whose calls wait here
        self.waiting: deque[_Waiting] = deque()
        self.waiting_quiet = 0  # of them, calls of ``quiet`` (its derived count excludes them)
        self.give_up_at = time.monotonic() + patience + GRACE
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
        v, k = _encoded(value, "message"), _encoded(key, "key")
        with self.lock:
            if self.done:
                return None
            if lane.refuse_waiting(on_report, len(self.waiting), MAX_WAITING):
                return -1
            self.waiting.append((lane, v, k, headers, on_report))
            if lane is self.quiet:
                self.waiting_quiet += 1
            lane.took(on_report)
        POLLER.kick()
        return 1

    def advance(self) -> bool:
        """Send the held calls once the quiet handle holds none of the ``broker_id``'s
        messages; True once the handover is over. Called by the poller (and ``close()``)."""
        if self.done:
            return True
        held = self.quiet.held()
        if held > 0 and time.monotonic() < self.give_up_at:
            return False
        with self.lock:
            if self.done:
                return True
            if not self.switched:
                if held > 0:
                    self.quiet.gave_up_waiting(held)
                self.quiet.report_each(self.waiting_quiet)
                self.switched = True
            for _ in range(CHUNK):
                if not self.waiting:
                    break
                lane, value, key, headers, on_report = self.waiting[0]
                if not lane.send_held(value, key, headers, on_report):
                    return False  # librdkafka's queue is full: the next round sends the rest
                self.waiting.popleft()
            if self.waiting:
                return False
            self._end()
        return True

    def fail_waiting(self) -> int:
        """Report failed what still waits (its producer closed first); how many that was."""
        with self.lock:
            n = len(self.waiting)
            while self.waiting:
                lane, value, key, _headers, on_report = self.waiting.popleft()
                lane.fail_held(value, key, on_report)
                if lane is self.quiet:
                    self.waiting_quiet -= 1  # after it is counted failed: never delivered
            self._end()
            return n

    def _end(self) -> None:
        self.done = True
        for ln in self.lanes:
            ln.handover = None
            ln.hands_over = False
