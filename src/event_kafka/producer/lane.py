"""A lane: one owner's use of a shared producer (one topic, its counters, its report route).

A ``broker_id`` has one lane per report route it publishes with; an Event Interface Kafka
subscriber has one. ``publish`` is the hot path: it only enqueues (never blocks on the
network), returns 1 or -1, and counts every refusal by reason. The delivery callbacks here
run on the poller thread: they count, and hand a :class:`~event_kafka.report.Delivery` to a
report-route worker; user code never runs on the poller.

A lane without a report route only counts, and its successes cost no Python call: it
produces through the producer's ``delivery.report.only.error`` handle with one callback object
of its own, which confluent-kafka references once per message until librdkafka has reported
it. So that object's reference count, less its own references, is exactly how many of the
lane's messages librdkafka still holds; failures still come one by one (counted, logged), and
``delivered = accepted - in flight - failed`` (read in that order, it never counts a message
that has not been acknowledged). A broker_id's calls that want a report for each message (a
report route, ``on_report``) go through the other handle; the first of them moves the whole
broker_id there, in order (:mod:`~event_kafka.producer.handover`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from confluent_kafka import KafkaError, KafkaException

from .. import forksafe
from ..poller import POLLER
from ..poller import guarded as _guarded
from ..ratelimit import RateLimitedLog
from ..report import Delivery, Report, RouteWorker, StandIn
from ..statistics import BrokerOwner, LaneCounters, LaneOwner, Tally
from .handover import Handover
from .shared import _PURGED, SharedProducer, _Closed, log

if TYPE_CHECKING:
    from ..kafka_socket import KafkaSocket

__all__ = ["Lane", "LaneHost"]

# Builds a Delivery without NamedTuple's Python-level __new__; it skips the field defaults too,
# so every call passes all of Delivery's fields.
_tuple_new = tuple.__new__


class LaneHost(Protocol):
    """What a lane needs from the pool that made it."""

    callbacks: RouteWorker  # runs per-message ``on_report`` callables
    queue_full_wait: float  # seconds ``publish`` may wait on a full producer queue
    flushing: int  # threads waiting for deliveries (then each one is notified)

    def note_delivery(self) -> None:
        """A delivery report came while someone waits for deliveries."""
        ...

    def forget(self, lane: Lane) -> None:
        """Drop a released lane whose last report has come."""
        ...


class Lane:
    """A user's view of a shared producer: one topic, its counters, its report route.

    Created by :meth:`~event_kafka.producer.ProducerPool.lane`; ``publish`` is the hot path.
    Counters that several threads bump (publishers, the poller, a closing thread, route workers) are
    :class:`~event_kafka.statistics.Tally`. For report routes it is a
    :class:`~event_kafka.report.ReportSource`: its ``kafka_id``, and where a route's failure
    is counted.
    """

    derives_successes: ClassVar[bool] = True
    """A lane without a route derives its successes from what librdkafka holds; a subclass
    that produces with callbacks of its own (the spool's) counts them itself instead."""

    _accepted: Tally
    _delivered: Tally
    _failed: Tally
    _delivered_seen: int
    _dr: Callable[[Any, Any], None]

    def __init__(
        self,
        pool: LaneHost,
        sp: SharedProducer,
        socket: KafkaSocket,
        owner: LaneOwner,
        route: RouteWorker | None,
    ) -> None:
        self.pool = pool
        self.sp = sp
        self.socket = socket
        self.topic = socket.topic
        self.owner = owner
        self.route = route
        self.kafka_id = owner.name
        # A lane without a route only counts: its successes are derived (module docstring).
        self.quiet = route is None and self.derives_successes
        # A broker_id's calls with and without reports share an order: they hand over.
        self.hands_over = self.quiet and isinstance(owner, BrokerOwner)
        self.handover: Handover | None = None
        self._new_counters()
        self.released = False
        self._failog = RateLimitedLog(log, 10.0)

    # -- hot path ----------------------------------------------------------------------------

    def publish(
        self,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        on_report: Callable[[Report], object] | None = None,
    ) -> int:
        """Enqueue one record; 1 if accepted (a report will follow), -1 if not (counted)."""
        dr = self._dr  # first: a handover waits while a call holds it (Handover.advance)
        if self.handover is not None or (on_report is not None and self.hands_over):
            held = self._hand_over(value, key, headers, on_report)
            if held is not None:
                return held
            dr = self._dr
        route = self.route
        if on_report is None:
            if route is None:
                produce = self.sp.produce_quiet if self.quiet else self.sp.produce
            else:
                if route.full():
                    return self._backlog_full(route)
                produce = self.sp.produce
        else:
            cbw = self.pool.callbacks
            if cbw.full():
                return self._backlog_full(cbw)
            if route is not None and route.full():
                return self._backlog_full(route)
            dr = partial(self._dr_once_ref, on_report)
            produce = self.sp.produce
        try:
            # Positional (partition -1 = librdkafka's partitioner, timestamp 0 = now): a call
            # with keywords costs confluent-kafka 0.3 us more, a third of a produce.
            if headers is None:
                produce(self.topic, value, key, -1, dr)
            else:
                produce(self.topic, value, key, -1, dr, None, 0, headers)
        except BufferError:
            quiet = self.quiet and on_report is None
            return self._queue_full(value, key, headers, dr, on_report, quiet)
        except KafkaException as exc:
            return self._rejected(exc)
        except _Closed:
            self.rejected_closed += 1
            return -1
        except TypeError as exc:
            del dr  # a kept exception keeps this frame: it must not hold a handover back
            raise TypeError(f"message and key must be str or bytes: {exc}") from None
        # _took, inlined for the common case: this runs once per message.
        self._bump_accepted()
        if route is not None:
            route.reserve()
        if on_report is not None:
            self.pool.callbacks.reserve()
        if POLLER.sleeping:
            POLLER.kick()
        return 1

    def publish_plain(self, value: bytes | str | None, key: bytes | str | None) -> int:
        """:meth:`publish` of a lane without a route, no headers, no ``on_report``: the
        common ``kafka_publish`` call. Any refusal goes through :meth:`publish` again, which
        retries the same ``produce`` and counts it (nothing was enqueued by the failed call);
        a ``TypeError`` (not str or bytes) is the caller's to name."""
        dr = self._dr  # first, as in publish()
        if self.handover is not None:
            return self.publish(value, key)
        try:
            if self.quiet:
                self.sp.produce_quiet(self.topic, value, key, -1, dr)
            else:
                self.sp.produce(self.topic, value, key, -1, dr)
        except (BufferError, KafkaException, _Closed):
            return self.publish(value, key)
        self._bump_accepted()
        if POLLER.sleeping:
            POLLER.kick()
        return 1

    def publish_routed(self, value: bytes | str | None, key: bytes | str | None) -> int:
        """:meth:`publish` of a lane with a report route, no headers, no ``on_report``: the
        common ``kafka_publish(id, msg, key, route)``. Any refusal goes through :meth:`publish`
        again, as in :meth:`publish_plain`."""
        if self.handover is not None:
            return self.publish(value, key)
        route: RouteWorker = self.route  # type: ignore[assignment]
        if route.full():
            return self._backlog_full(route)
        try:
            self.sp.produce(self.topic, value, key, -1, self._dr)
        except (BufferError, KafkaException, _Closed):
            return self.publish(value, key)
        self._bump_accepted()
        route.reserve()
        if POLLER.sleeping:
            POLLER.kick()
        return 1

    def _took(self, on_report: object) -> None:
        self.took(on_report)
        POLLER.kick()

    def took(self, on_report: object) -> None:
        """Count an accepted call (its report is due)."""
        self._accepted.bump()
        if self.route is not None:
            self.route.reserve()
        if on_report is not None:
            self.pool.callbacks.reserve()

    # -- handover (see handover.py) ----------------------------------------------------------

    def begin_handover(self) -> Handover | None:
        """Move this quiet broker_id lane to per-message reports, in order; the handover its
        broker_id's calls wait on (None: nothing to hand over)."""
        with self._counts_lock:  # the lane's one lock; taken once per broker_id here
            if self.handover is None and self.quiet and self.hands_over:
                # Set before the poller can see (and end) it.
                h = self.handover = Handover(self, self.sp.message_timeout)
                if not self.sp.add_handover(h):
                    h.fail_waiting()  # closed: a call that came meanwhile is reported failed
            return self.handover

    def _hand_over(
        self,
        value: bytes | str | None,
        key: bytes | str | None,
        headers: Any,
        on_report: Callable[[Report], object] | None,
    ) -> int | None:
        h = self.handover or self.begin_handover()
        return None if h is None else h.hold(self, value, key, headers, on_report)

    def refuse_waiting(self, on_report: object, waiting: int, limit: int) -> bool:
        """Whether a call must be refused instead of waiting for a handover (counted)."""
        if waiting >= limit:
            self.rejected_queue_full += 1
            self._failog.warning(
                "[%s] %d calls wait for the producer's reports to move to one handle: "
                "message rejected",
                self.owner.name,
                waiting,
            )
            return True
        for w in (self.pool.callbacks if on_report is not None else None, self.route):
            if w is not None and w.full():
                self._backlog_full(w)
                return True
        return False

    def held(self) -> int:
        """Messages of this lane on the quiet handle that librdkafka has not reported yet,
        plus the calls that are between reading the lane's callback and returning."""
        return self._held() if self.quiet else 0

    def gave_up_waiting(self, held: int) -> None:
        """A handover stopped waiting for ``held`` references past ``message.timeout.ms``."""
        _guarded(
            log.warning,
            "[%s] %d message(s) still unreported %.0f s after librdkafka had to report them: "
            "moving to per-message reports anyway (their order is not ensured)",
            self.owner.name,
            held,
            self.sp.message_timeout,
        )

    def report_each(self, waiting: int) -> None:
        """Switch to one delivery callback per message: nothing is on the quiet handle any
        more; ``waiting`` of the lane's accepted calls wait in its handover."""
        accepted, failed = self._accepted.value, self._failed.value
        self._delivered = Tally(accepted - failed - waiting)
        self._bump_delivered = self._delivered.bump
        self._dr = self._dr_count
        self.hands_over = False
        self.quiet = False  # last: counts() reads _delivered once this is false

    def _route_dr(self, on_report: Callable[[Report], object] | None) -> Callable[[Any, Any], None]:
        return self._dr if on_report is None else partial(self._dr_once_ref, on_report)

    def send_held(
        self,
        value: bytes | None,
        key: bytes | None,
        headers: Any,
        on_report: Callable[[Report], object] | None,
    ) -> bool:
        """Produce a call that waited for a handover; False if librdkafka's queue is full.
        Anything else that keeps it from librdkafka ends in its failure report."""
        dr = self._route_dr(on_report)
        try:
            self.sp.produce_held(self.topic, value, key, -1, dr, None, 0, headers)
        except BufferError:
            return False
        except _Closed:
            self.fail_held(value, key, on_report)
        except Exception as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is None:
                err = KafkaError(KafkaError._FAIL, self.sp.scrub(str(exc)))
            elif (err.fatal() or err.code() == KafkaError._FATAL) and not self.sp.fatal_pending:
                self.sp.fatal_pending = "producer in fatal state"
            dr(err, StandIn(self.topic, key, value))
        return True

    def fail_held(
        self,
        value: bytes | None,
        key: bytes | None,
        on_report: Callable[[Report], object] | None,
    ) -> None:
        """Report failed a call that waited for a handover: its producer closed first (the
        report's reason is the producer's, ``not delivered before shutdown``)."""
        err = KafkaError(KafkaError._PURGE_QUEUE)
        self._route_dr(on_report)(err, StandIn(self.topic, key, value))

    def _backlog_full(self, w: RouteWorker) -> int:
        self.rejected_queue_full += 1
        self._failog.warning(
            "[%s] report backlog of %r full (%d reports pending): message rejected",
            self.owner.name,
            w.name,
            w.max_pending,
        )
        return -1

    def _queue_full(
        self,
        value: bytes | str | None,
        key: bytes | str | None,
        headers: Any,
        dr: Any,
        on_report: object,
        quiet: bool,
    ) -> int:
        wait = self.pool.queue_full_wait
        if wait > 0:
            # A short bounded retry: librdkafka signals freed queue space only through
            # delivery callbacks (on the poller), and notifying on each of them would put a
            # lock on every delivery for the sake of this rare, opt-in wait.
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                time.sleep(0.0005)
                produce = self.sp.produce_quiet if quiet else self.sp.produce
                try:
                    produce(self.topic, value, key, -1, dr, None, 0, headers)
                except BufferError:
                    continue
                except (KafkaException, _Closed):
                    break
                self._took(on_report)
                return 1
        self.rejected_queue_full += 1
        self._failog.warning(
            "[%s] producer queue full: message rejected (queue.buffering.max.messages)",
            self.owner.name,
        )
        return -1

    def _rejected(self, exc: KafkaException) -> int:
        err = exc.args[0] if exc.args else None
        code = err.code() if isinstance(err, KafkaError) else None
        if code == KafkaError.MSG_SIZE_TOO_LARGE:
            self.rejected_too_large += 1
        elif code == KafkaError._FATAL or (isinstance(err, KafkaError) and err.fatal()):
            self.rejected_fatal += 1
            if self.sp.fatal_pending is None:
                self.sp.fatal_pending = "producer in fatal state"
        else:
            self.rejected_other += 1
        self._failog.warning("[%s] message rejected: %s", self.owner.name, self.sp.scrub(str(err)))
        return -1

    # -- delivery callbacks (poller thread; library code only, never raises) -----------------

    def _dr_count(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self._bump_delivered()
            sp = self.sp
            if sp.down:
                sp.mark_up()
            if sp.last_error is not None:
                sp.last_error = None
        else:
            self._failed.bump()
            _guarded(
                self._failog.warning, "[%s] delivery failed: %s", self.owner.name, self.reason(err)
            )
        if self.released and self.accepted == self.delivered + self.failed:
            self.pool.forget(self)
        if self.pool.flushing:
            self.pool.note_delivery()

    def _dr_quiet(self, err: KafkaError | None, msg: Any) -> None:
        # A quiet lane's callback: failures on its quiet handle, every outcome of its
        # on_report messages (event lanes). Successes are not counted here (derived: see
        # delivered). Once a handover switched the lane, a call that had read this callback
        # before may still have produced with it on the other handle: count it as such.
        if not self.quiet:
            self._dr_count(err, msg)
            return
        if err is None:
            sp = self.sp
            if sp.down:
                sp.mark_up()
            if sp.last_error is not None:
                sp.last_error = None
            return
        self._failed.bump()
        _guarded(
            self._failog.warning, "[%s] delivery failed: %s", self.owner.name, self.reason(err)
        )
        if self.pool.flushing:
            self.pool.note_delivery()

    def _dr_route(self, err: KafkaError | None, msg: Any) -> None:
        route: RouteWorker = self.route  # type: ignore[assignment]
        if err is None and not self.released:
            # _dr_count's success path inlined: one call less per report.
            self._bump_delivered()
            sp = self.sp
            if sp.down:
                sp.mark_up()
            if sp.last_error is not None:
                sp.last_error = None
            if self.pool.flushing:
                self.pool.note_delivery()
            # A plain tuple in Delivery's field order: the route worker unpacks it by position,
            # and building a NamedTuple (even through tuple.__new__) costs 0.1 us more.
            route.submit((self, None, msg, None, None, False))  # type: ignore[arg-type]
            return
        self._dr_count(err, msg)
        # The reason is resolved now: purge_reason is only valid while this purge runs.
        reason = None if err is None else self.reason(err)
        route.submit(_tuple_new(Delivery, (self, err, msg, reason, None, False)))

    def _dr_once(self, on_report: Callable[[Report], object], err: Any, msg: Any) -> None:
        self._dr(err, msg)
        reason = None if err is None else self.reason(err)
        # On a worker, not here: user code never runs on the poller.
        self.pool.callbacks.submit(_tuple_new(Delivery, (self, err, msg, reason, on_report, False)))

    def route_failed(self) -> None:
        """A report route or ``on_report`` raised for one of this lane's messages."""
        self._route_errors.bump()

    def reason(self, err: KafkaError) -> str:
        code = err.code()
        if code in _PURGED:
            return self.sp.purge_reason
        text = f"{err.name()}: {err.str()}"
        if code == KafkaError._MSG_TIMED_OUT and self.sp.last_error:
            text += f" (last broker error: {self.sp.last_error})"
        return self.sp.scrub(text)

    # -- bookkeeping -------------------------------------------------------------------------

    @property
    def accepted(self) -> int:
        return self._accepted.value

    @property
    def delivered(self) -> int:
        return self.counts()[1] if self.quiet else self._delivered.value

    def _held(self) -> int:
        """A quiet lane's messages librdkafka has not reported yet (see the module doc)."""
        return (
            sys.getrefcount(self._dr)
            - self._dr_base
            + sys.getrefcount(self._dr_once_ref)
            - self._once_base
        )

    def counts(self) -> tuple[int, int, int]:
        """``(accepted, delivered, failed)`` read together.

        A quiet lane reads accepted, then what librdkafka holds, then failed: a failure is
        counted before confluent-kafka lets go of its callback, so nothing is ever counted
        delivered that was not; ``delivered`` only grows (a transient undercount, while a
        call is in ``publish`` or a failure callback runs, is held at the last value)."""
        if not self.quiet:
            return self.accepted, self._delivered.value, self._failed.value
        with self._counts_lock:
            accepted = self._accepted.value
            held = self._held()
            failed = self._failed.value
            h = self.handover  # after accepted: a call is counted there once it waits
            delivered = accepted - held - failed - (h.waiting_quiet if h is not None else 0)
            if delivered > self._delivered_seen:
                self._delivered_seen = delivered
            return accepted, self._delivered_seen, failed

    @property
    def failed(self) -> int:
        return self._failed.value

    @property
    def route_errors(self) -> int:
        return self._route_errors.value

    @property
    def stats(self) -> LaneCounters:
        accepted, delivered, failed = self.counts()
        return LaneCounters(
            accepted,
            delivered,
            failed,
            self.rejected_queue_full,
            self.rejected_too_large,
            self.rejected_fatal,
            self.rejected_closed,
            self.rejected_other,
            self.route_errors,
        )

    def _new_counters(self) -> None:
        self._accepted = Tally()
        self._delivered = Tally()
        self._bump_accepted = self._accepted.bump
        self._bump_delivered = self._delivered.bump
        # New callback objects after a fork too: the parent's librdkafka state (orphaned in
        # the child) still references the old ones.
        if self.route is not None:
            self._dr = self._dr_route
        else:
            self._dr = self._dr_quiet if self.quiet else self._dr_count
        self._dr_once_ref = self._dr_once  # one object: partials of it reference it
        self._counts_lock = forksafe.lock()
        self._delivered_seen = 0
        self._dr_base = sys.getrefcount(self._dr)
        self._once_base = sys.getrefcount(self._dr_once_ref)
        self._failed = Tally()
        self._route_errors = Tally()
        self.rejected_queue_full = self.rejected_too_large = self.rejected_fatal = 0
        self.rejected_closed = self.rejected_other = 0

    def reset_after_fork(self) -> None:
        if self.handover is not None:
            # The parent's handover is the parent's; this process has nothing in flight, so
            # its broker_id goes straight to per-message reports.
            self.handover = None
            self.quiet = self.hands_over = False
        self._new_counters()
