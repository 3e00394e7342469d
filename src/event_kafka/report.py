"""Delivery reports and the threads that run report routes.

A report route is a named callable run once per accepted message that asked for it, like
OpenSIPS's ``route[kafka_report]``. It receives a :class:`Report` carrying the four OpenSIPS AVPs
(``kafka_id``, ``kafka_status``, ``kafka_key``, ``kafka_msg``) plus what OpenSIPS cannot give:
the error reason, topic, partition and offset.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, InvalidStateError
from typing import Any, NamedTuple, Protocol

from confluent_kafka import KafkaError

from . import forksafe
from .poller import guarded
from .ratelimit import RateLimitedLog
from .statistics import Tally

log = logging.getLogger("event_kafka.report")

NAP = 0.001
"""Seconds a route worker naps when its queue is empty but reports are still due."""
NAPS = 10
"""Naps in a row (about 10 ms) before it sleeps until :meth:`RouteWorker.submit` wakes it."""

STATUS_SUCCESS = 0
STATUS_FAIL = -1


class StandIn:
    """A record in the shape of a confluent-kafka ``Message``, for the report of a record
    that never went through librdkafka in this process (spooled, or refused before it)."""

    __slots__ = ("_key", "_offset", "_partition", "_topic", "_value")

    def __init__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self._topic, self._key, self._value = topic, key, value
        self._partition, self._offset = partition, offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int | None:
        return self._partition

    def offset(self) -> int | None:
        return self._offset


class Report:
    """The delivery report of one message.

    Attributes mirror OpenSIPS's AVPs: ``kafka_id`` (the broker ID, or the subscriber for events),
    ``kafka_status`` (0 delivered, -1 failed), ``kafka_key`` and ``kafka_msg`` (text; ``key`` and
    ``message`` hold the raw bytes). ``reason`` says why it failed (``None`` on success);
    ``topic``, ``partition`` and ``offset`` are known once the broker acknowledged it.
    ``replayed`` is true for a spooled record that another process accepted (and left in the
    spool when it died or closed), or a lane this process retired at a reload: this one
    delivered it (or found it already in Kafka) and reports it.

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
        "replayed",
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
        replayed: bool = False,
    ) -> None:
        self.kafka_id = kafka_id
        self.kafka_status = kafka_status
        self.key = key
        self.message = message
        self.reason = reason
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.replayed = replayed

    @classmethod
    def from_delivery(cls, d: Delivery) -> Report:
        """The report of delivery ``d`` (built on a route worker, off the poller).

        A successful delivery's key, message, topic, partition and offset are read from the
        librdkafka message only when the route asks for them (:class:`_DeliveredReport`)."""
        if d.error is None and cls is Report:
            return _DeliveredReport(d.source.kafka_id, d.message, d.replayed)
        msg = d.message
        if d.error is None:
            return cls(
                d.source.kafka_id,
                STATUS_SUCCESS,
                msg.key(),
                msg.value(),
                None,
                msg.topic(),
                msg.partition(),
                msg.offset(),
                d.replayed,
            )
        part = msg.partition()
        return cls(
            d.source.kafka_id,
            STATUS_FAIL,
            msg.key(),
            msg.value(),
            d.reason or d.error.str(),
            msg.topic(),
            part if part is not None and part >= 0 else None,
            None,
            d.replayed,
        )

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
            "replayed": self.replayed,
        }

    def __repr__(self) -> str:
        return (
            f"Report(kafka_id={self.kafka_id!r}, kafka_status={self.kafka_status}, "
            f"key={self.key!r}, reason={self.reason!r}, topic={self.topic!r}, "
            f"partition={self.partition}, offset={self.offset})"
        )


class _DeliveredReport(Report):
    """A success :class:`Report` that reads the message's fields when first asked for.

    Routes mostly read ``kafka_status`` alone; five C calls per report for the rest were
    the largest cost of the route thread (docs/benchmarks.md)."""

    __slots__ = ("_msg",)

    def __init__(self, kafka_id: str, msg: Any, replayed: bool = False) -> None:
        self.kafka_id = kafka_id
        self.kafka_status = STATUS_SUCCESS
        self.reason = None
        self.replayed = replayed
        self._msg = msg

    @property
    def key(self) -> bytes | None:  # type: ignore[override]
        k: bytes | None = self._msg.key()
        return k

    @property
    def message(self) -> bytes | None:  # type: ignore[override]
        v: bytes | None = self._msg.value()
        return v

    @property
    def topic(self) -> str | None:  # type: ignore[override]
        t: str | None = self._msg.topic()
        return t

    @property
    def partition(self) -> int | None:  # type: ignore[override]
        p: int | None = self._msg.partition()
        return p

    @property
    def offset(self) -> int | None:  # type: ignore[override]
        o: int | None = self._msg.offset()
        return o


ReportRoute = Callable[[Report], object]


class ReportSource(Protocol):
    """Where a reported message came from (a producer lane), as report routes need it."""

    @property
    def kafka_id(self) -> str:
        """The broker_id, or the event of a Kafka subscriber."""
        ...

    def route_failed(self) -> None:
        """Count that a report route (or ``on_report``) raised for one of its messages."""
        ...


class Delivery(NamedTuple):
    """One message's outcome as librdkafka gave it, handed by the poller to a route worker.

    The :class:`Report` is built from it on the worker (:meth:`Report.from_delivery`), off
    the poller. ``reason`` is resolved at delivery time (a purge's reason is only known
    then); ``callback`` is a per-message ``on_report`` (``None``: the worker's route). A
    tuple: the poller builds one per report, and a tuple is the cheapest to build (a route's
    success reports travel as plain tuples in this field order; the worker reads by position).
    """

    source: ReportSource
    error: KafkaError | None
    message: Any  # confluent_kafka.Message
    reason: str | None
    callback: ReportRoute | None = None
    replayed: bool = False  # a spooled record accepted by another (gone) process


def report_future() -> tuple[Future[Report], Callable[[Report], None]]:
    """A future for one message's report, and the ``on_report`` callback that resolves it.

    >>> fut, on_report = report_future()                               # doctest: +SKIP
    >>> ek.kafka_publish("cdr", "msg", on_report=on_report)
    1
    >>> fut.result(timeout=5).ok                    # or: await asyncio.wrap_future(fut)
    True

    Only pass ``on_report`` with a publish that returned 1: a refused message (-1) gets no
    report, so its future never resolves.
    """
    fut: Future[Report] = Future()

    def resolve(report: Report) -> None:
        with contextlib.suppress(InvalidStateError):  # the waiter cancelled it
            fut.set_result(report)

    return fut, resolve


class RouteWorker:
    """Runs one report route (or per-message ``on_report`` callables) on its own thread.

    A slow route stalls only itself; whatever it raises (``BaseException`` included:
    ``SystemExit``, ``KeyboardInterrupt``...) is counted and logged, and the next report
    runs. The backlog is bounded without ever blocking the poller: :meth:`full` is checked
    before a message is accepted and :meth:`reserve` counts it after, so at most about
    ``max_pending`` accepted messages wait for this worker; past that ``publish`` refuses.

    Reports are handed over in batches: :meth:`submit` appends to a deque and wakes the
    thread only when it sleeps; once awake it runs everything queued. Then, while accepted
    messages still await their report, it naps (:data:`NAP`, up to :data:`NAPS` times in a
    row) instead of sleeping until woken: under load each nap finds a batch, and neither
    side pays a wake-up per few reports (when the poller and this thread took turns with
    the GIL for every handful, that cost more than the reports: docs/benchmarks.md). With
    nothing due, or nothing come after the naps (a broker down), it sleeps until woken.
    A report therefore waits at most about a millisecond more for its route.
    """

    def __init__(self, name: str, route: ReportRoute | None, max_pending: int = 100_000) -> None:
        self.name = name
        self.route = route
        self.max_pending = max_pending
        self.errors = 0
        self.ran = 0  # the worker thread alone writes it
        self._reserved = Tally()
        self.reserve = self._reserved.bump
        self._submitted = Tally()  # the poller and closing threads submit
        self._items: deque[Delivery] = deque()
        # Wake-ups: True = reports queued, None = stop(); at most one True while _awake.
        self._q: queue.SimpleQueue[bool | None] = queue.SimpleQueue()
        self._awake = False
        self._budget = 0  # full() calls left before it reads the exact backlog again
        self._ran_cond = forksafe.condition()  # drain() waits on it
        self._draining = 0
        self._thread: threading.Thread | None = None
        self._lock = forksafe.lock()
        self._errlog = RateLimitedLog(log, interval=10.0)

    # -- publishing side ---------------------------------------------------------------------

    def full(self) -> bool:
        """Messages accepted for this worker whose report has not run yet reach the bound.

        Reading the exact backlog takes a lock; it is read again only after half of the
        headroom it last showed has been used, so the bound holds without a lock per call."""
        self._budget -= 1
        if self._budget > 0:
            return False
        pending = self._reserved.value - self.ran
        self._budget = (self.max_pending - pending) // 2
        return pending >= self.max_pending

    reserve: Callable[[], object]
    """``reserve()``: one more accepted message will be reported through this worker (the
    counter's own C bump: ``publish`` calls it once per message, without a Python frame)."""

    # -- poller side -------------------------------------------------------------------------

    def submit(self, d: Delivery) -> None:
        """Queue one report; never blocks (the bound is enforced at :meth:`full`)."""
        self._submitted.bump()
        self._items.append(d)
        if not self._awake:
            self._awake = True
            self._q.put(True)
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
        items = self._items
        stopping = False
        while True:
            if get() is None:
                stopping = True
            self._run_queued(stopping)
            if stopping:
                with self._lock:
                    if not items:
                        self._thread = None
                        return

    def _run_queued(self, stopping: bool) -> None:
        """Run every queued report, then mark the worker asleep (re-checking the deque: a
        submit that saw it awake put no wake-up). A stopping worker does not nap."""
        popleft = self._items.popleft
        route = self.route
        build = Report.from_delivery
        naps = 0
        while True:
            try:
                d = popleft()
            except IndexError:
                # Reports still due: nap, still marked awake so that submit() signals
                # nothing (a stop() ends the naps: it puts on _q).
                if (
                    naps < NAPS
                    and not stopping
                    and self._q.empty()
                    and self._reserved.value > self.ran
                ):
                    naps += 1
                    time.sleep(NAP)
                    continue
                self._awake = False
                if not self._items:
                    return
                self._awake = True
                continue
            naps = 0
            # By position: a route's success reports come as plain tuples (Lane._dr_route).
            source, error, message, _reason, callback, replayed = d
            try:
                if error is None:  # from_delivery's success case, one call less
                    report: Report = _DeliveredReport(source.kafka_id, message, replayed)
                else:
                    report = build(d)
                (callback or route)(report)  # type: ignore[misc]
            except BaseException as exc:  # user code: nothing it raises may end this thread
                self._failed(source, exc)
            self.ran += 1
            if self._draining:
                with self._ran_cond:
                    self._ran_cond.notify_all()

    def _failed(self, source: ReportSource, exc: BaseException) -> None:
        self.errors += 1
        source.route_failed()
        guarded(self._errlog.error, "report route %r raised %s: %s", self.name, _tn(exc), exc)

    # -- life cycle --------------------------------------------------------------------------

    @property
    def submitted(self) -> int:
        return self._submitted.value

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
        with self._ran_cond:
            self._draining += 1
            try:
                # The worker notifies after each report while someone drains; the timeout
                # bounds the wait if its thread is gone (it left reports for a new thread).
                self._ran_cond.wait_for(lambda: self.ran >= self.submitted, timeout)
            finally:
                self._draining -= 1
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
        self._items = deque()
        self._awake = False
        self._budget = 0
        self._thread = None
        self.errors = self.ran = 0
        self._reserved = Tally()
        self.reserve = self._reserved.bump
        self._submitted = Tally()
        self._draining = 0


def _tn(value: object) -> str:
    return type(value).__name__
