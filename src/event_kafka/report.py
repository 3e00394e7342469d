"""Delivery reports and the threads that run report routes.

A report route is a named callable run once per accepted message that asked for it, like
OpenSIPS's ``route[kafka_report]``. It receives a :class:`Report` carrying the four OpenSIPS AVPs
(``kafka_id``, ``kafka_status``, ``kafka_key``, ``kafka_msg``) plus what OpenSIPS cannot give:
the error reason, topic, partition and offset.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

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

# What a poll thread hands to a route worker: the counters to blame on failure, the route
# context, and the raw librdkafka results; the Report is built in the worker, off the poll thread.
Job = tuple[Any, Any, Any, str | None]


class RouteWorker:
    """Runs one report route on its own thread, so a slow route stalls only itself.

    The queue is bounded: when it is full, :meth:`submit` waits (the librdkafka poll thread then
    slows down, its queue fills, and ``kafka_publish`` starts returning -1, counted). Nothing is
    dropped.
    """

    def __init__(self, name: str, route: ReportRoute, max_pending: int = 100_000) -> None:
        self.name = name
        self.route = route
        self.max_pending = max_pending
        self.errors = 0
        self.ran = 0
        self.submitted = 0
        self._q: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._errlog = RateLimitedLog(log, interval=10.0)

    def submit(self, job: Job) -> None:
        if self._thread is None:
            self._start()
        if self._q.qsize() >= self.max_pending:
            while self._q.qsize() >= self.max_pending and self._thread is not None:
                time.sleep(0.001)
        self.submitted += 1
        self._q.put(job)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name=f"ek-route-{self.name}", daemon=True)
                t.start()
                self._thread = t

    def _run(self) -> None:
        get = self._q.get
        route = self.route
        while True:
            job = get()
            if job is None:
                return
            lane, err, msg, reason = job
            try:
                route(lane.make_report(err, msg, reason))
            except Exception as exc:
                self.errors += 1
                lane.route_errors += 1
                self._errlog.error(
                    "report route %r raised %s: %s", self.name, type(exc).__name__, exc
                )
            self.ran += 1

    @property
    def pending(self) -> int:
        return self.submitted - self.ran

    def drain(self, timeout: float) -> bool:
        """Wait until every submitted report ran (or ``timeout``); True if all ran."""
        deadline = time.monotonic() + timeout
        while self.ran < self.submitted and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.ran >= self.submitted

    def stop(self, timeout: float = 5.0) -> None:
        t = self._thread
        if t is not None:
            self._q.put(None)
            t.join(timeout)
            self._thread = None

    def reset_after_fork(self) -> None:
        # The parent's thread does not exist here; reports of the parent are the parent's.
        self._q = queue.SimpleQueue()
        self._thread = None
        self._lock = threading.Lock()
        self.errors = self.ran = self.submitted = 0
