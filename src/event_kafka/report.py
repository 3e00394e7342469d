"""Delivery reports and the threads that run report routes.

A report route is a named callable run once per accepted message that asked for it, like
OpenSIPS's ``route[kafka_report]``. It receives a :class:`Report` carrying the four OpenSIPS AVPs
(``kafka_id``, ``kafka_status``, ``kafka_key``, ``kafka_msg``) plus what OpenSIPS cannot give:
the error reason, topic, partition and offset.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import forksafe
from .poller import guarded
from .ratelimit import RateLimitedLog

log = logging.getLogger("event_kafka.report")

STATUS_SUCCESS = 0
STATUS_FAIL = -1


class Report:
    """The delivery report of one message.

    Attributes mirror OpenSIPS's AVPs: ``kafka_id`` (the broker ID, or the subscriber for events),
    ``kafka_status`` (0 delivered, -1 failed), ``kafka_key`` and ``kafka_msg`` (text; ``key`` and
    ``message`` hold the raw bytes). ``reason`` says why it failed (``None`` on success);
    ``topic``, ``partition`` and ``offset`` are known once the broker acknowledged it.

    >>> r.avp["kafka_status"]      # doctest: +SKIP
    0
    """

    __slots__ = (
        "kafka_id",
        "kafka_status",
        "key",
        "message",
        "offset",
        "partition",
        "reason",
        "topic",
    )

    def __init__(
        self,
        kafka_id: str,
        kafka_status: int,
        key: bytes | None,
        message: bytes | None,
        reason: str | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.kafka_id = kafka_id
        self.kafka_status = kafka_status
        self.key = key
        self.message = message
        self.reason = reason
        self.topic = topic
        self.partition = partition
        self.offset = offset

    @property
    def ok(self) -> bool:
        return self.kafka_status == STATUS_SUCCESS

    @property
    def kafka_key(self) -> str:
        """The key as text; empty when the record had none (as OpenSIPS's ``$avp(kafka_key)``)."""
        return self.key.decode("utf-8", "replace") if self.key else ""

    @property
    def kafka_msg(self) -> str:
        return self.message.decode("utf-8", "replace") if self.message else ""

    @property
    def avp(self) -> Mapping[str, str | int]:
        """The four OpenSIPS AVPs as a mapping."""
        return {
            "kafka_id": self.kafka_id,
            "kafka_status": self.kafka_status,
            "kafka_key": self.kafka_key,
            "kafka_msg": self.kafka_msg,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.avp,
            "reason": self.reason,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }

    def __repr__(self) -> str:
        return (
            f"Report(kafka_id={self.kafka_id!r}, kafka_status={self.kafka_status}, "
            f"key={self.key!r}, reason={self.reason!r}, topic={self.topic!r}, "
            f"partition={self.partition}, offset={self.offset})"
        )


ReportRoute = Callable[[Report], object]

# What the poller hands to a route worker: the lane (counters to blame, report context), the
# raw librdkafka results, the failure reason resolved at delivery time, and the callable to
# run (None: the worker's route). The Report is built in the worker, off the poller.
Job = tuple[Any, Any, Any, str | None, ReportRoute | None]


class RouteWorker:
    """Runs one report route (or per-message ``on_report`` callables) on its own thread.

    A slow route stalls only itself; whatever it raises (``BaseException`` included:
    ``SystemExit``, ``KeyboardInterrupt``...) is counted and logged, and the next report
    runs. The backlog is bounded without ever blocking the poller: :meth:`full` is checked
    before a message is accepted and :meth:`reserve` counts it after, so at most about
    ``max_pending`` accepted messages wait for this worker; past that ``publish`` refuses.
    """

    def __init__(self, name: str, route: ReportRoute | None, max_pending: int = 100_000) -> None:
        self.name = name
        self.route = route
        self.max_pending = max_pending
        self.errors = 0
        self.ran = 0  # the worker thread alone writes it
        self._reserved = itertools.count()
        self._submitted = itertools.count()  # the poller and closing threads submit
        self._q: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = forksafe.lock()
        self._errlog = RateLimitedLog(log, interval=10.0)

    # -- publishing side ---------------------------------------------------------------------

    def full(self) -> bool:
        """Messages accepted for this worker whose report has not run yet reach the bound."""
        return _count_value(self._reserved) - self.ran >= self.max_pending

    def reserve(self) -> None:
        """One more accepted message will be reported through this worker."""
        next(self._reserved)

    # -- poller side -------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue one report; never blocks (the bound is enforced at :meth:`full`)."""
        next(self._submitted)
        self._q.put(job)
        # After the put: a worker that is ending re-checks the queue under the lock.
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name=f"ek-route-{self.name}", daemon=True)
                t.start()
                self._thread = t

    def _run(self) -> None:
        get = self._q.get
        while True:
            job = get()
            if job is None:  # stop(): end once nothing is queued any more
                with self._lock:
                    if self._q.empty():
                        self._thread = None
                        return
                continue
            lane, err, msg, reason, fn = job
            try:
                (fn or self.route)(lane.make_report(err, msg, reason))  # type: ignore[misc]
            except BaseException as exc:  # user code: nothing it raises may end this thread
                self._failed(lane, exc)
            self.ran += 1

    def _failed(self, lane: Any, exc: BaseException) -> None:
        self.errors += 1
        lane.route_failed()
        guarded(self._errlog.error, "report route %r raised %s: %s", self.name, _tn(exc), exc)

    # -- life cycle --------------------------------------------------------------------------

    @property
    def submitted(self) -> int:
        return _count_value(self._submitted)

    @property
    def pending(self) -> int:
        """Reports queued (or running) that have not finished yet."""
        return self.submitted - self.ran

    def is_current(self) -> bool:
        """True when called from this worker's thread (i.e. from inside its callback)."""
        t = self._thread
        return t is not None and t is threading.current_thread()

    def drain(self, timeout: float) -> bool:
        """Wait until every submitted report ran (or ``timeout``); True if all ran."""
        deadline = time.monotonic() + timeout
        while self.ran < self.submitted and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.ran >= self.submitted

    def stop(self, timeout: float = 5.0) -> None:
        """Let the thread end once its queue ran; wait up to ``timeout`` for that (never
        when called from the worker itself). A later :meth:`submit` starts a new thread."""
        t = self._thread
        if t is not None:
            self._q.put(None)
            if t is not threading.current_thread():
                t.join(timeout)

    def reset_after_fork(self) -> None:
        # The parent's thread does not exist here; reports of the parent are the parent's.
        self._q = queue.SimpleQueue()
        self._thread = None
        self.errors = self.ran = 0
        self._reserved = itertools.count()
        self._submitted = itertools.count()


def _tn(value: object) -> str:
    return type(value).__name__


def _count_value(c: itertools.count[int]) -> int:
    # itertools.count is the one counter that is atomic across threads at no cost (a C call);
    # its repr is "count(N)".
    return int(repr(c)[6:-1])
