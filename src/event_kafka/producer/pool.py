"""The producer pool: shares producers between lanes, bounds them, closes them.

:class:`ProducerPool` hands out :class:`~event_kafka.producer.lane.Lane` s on shared producers
(one per distinct configuration, created lazily, at most ``max_producers``), owns the report
route workers, lets released producers go in the background (one releaser thread) and closes
everything with one flush deadline: what is left is purged and each message gets a failure
report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import forksafe
from ..errors import EventKafkaError
from ..poller import guarded as _guarded
from ..report import Report, RouteWorker
from ..statistics import LaneOwner, LaneStats
from .lane import Lane
from .shared import SharedProducer, describe_config, log

if TYPE_CHECKING:
    from ..kafka_socket import KafkaSocket

__all__ = ["DRAIN_GRACE", "ProducerLimitError", "ProducerPool"]

DRAIN_GRACE = 1.0
"""Seconds report routes get after the flush time to run the reports still queued."""


class ProducerLimitError(EventKafkaError, RuntimeError):
    """A new producer configuration would exceed the pool's ``max_producers``."""


class ProducerPool:
    """Shares producers between lanes; owns their report-route workers.

    >>> pool = ProducerPool(flush_timeout=10)                      # doctest: +SKIP
    >>> lane = pool.lane(parse_socket("kafka:127.0.0.1:9092/cdr"), owner=EventOwner("cdr"))
    >>> lane.publish(b"{...}", key=b"call-id")
    1

    Args:
        flush_timeout: :meth:`close`'s default time for deliveries.
        queue_full_wait: seconds ``publish`` may wait on a full producer queue.
        report_queue_size: per report route (and for ``on_report`` callbacks): messages
            accepted whose report has not run yet; past it ``publish`` returns -1.
        max_producers: distinct producer configurations this pool may create (each costs
            librdkafka threads and connections); ``None``: no limit. Subscribers reserve
            theirs when they subscribe (:meth:`claim`).
    """

    def __init__(
        self,
        *,
        flush_timeout: float = 10.0,
        queue_full_wait: float = 0.0,
        report_queue_size: int = 100_000,
        statistics_interval_ms: int = 0,
        max_producers: int | None = None,
    ) -> None:
        if max_producers is not None and (type(max_producers) is not int or max_producers < 1):
            raise ValueError(f"max_producers must be None or an int >= 1, not {max_producers!r}")
        self.flush_timeout = flush_timeout
        self.queue_full_wait = queue_full_wait
        # librdkafka statistics (stats_cb) for producers built from now on; 0: off.
        self.statistics_interval_ms = statistics_interval_ms
        self.report_queue_size = report_queue_size
        self.max_producers = max_producers
        self._producers: dict[object, SharedProducer] = {}
        self._claims: dict[object, int] = {}
        self._lanes: list[Lane] = []
        self._routes: dict[str, RouteWorker] = {}
        self.callbacks = RouteWorker("on_report", None, report_queue_size)
        self._releasing: set[SharedProducer] = set()
        self._release_items: list[tuple[SharedProducer, Lane, float]] = []
        self._releaser: threading.Thread | None = None
        self._deferred: list[RouteWorker] = []
        self._lock = forksafe.rlock()
        # Notified when a released lane's last report came or a released producer closed.
        self._changed = forksafe.condition(self._lock)
        # Notified on each delivery while someone waits in wait_delivered() (flushing > 0).
        self._delivered = forksafe.condition()
        self.flushing = 0
        self.closed = False
        forksafe.register(self)

    def route_worker(self, name: str, fn: Callable[[Report], object]) -> RouteWorker:
        """The worker thread (created lazily) that runs report route ``name``."""
        with self._lock:
            w = self._routes.get(name)
            if w is None or w.route is not fn:
                w = self._routes[name] = RouteWorker(name, fn, self.report_queue_size)
            return w

    # -- producers and their limit -----------------------------------------------------------

    def _admit(self, key: object) -> None:
        # Under the lock.
        limit = self.max_producers
        if limit is None or key in self._producers or key in self._claims:
            return
        used = len(self._producers.keys() | self._claims.keys())
        if used >= limit:
            raise ProducerLimitError(
                f"max_producers ({limit}) reached: a new producer configuration (brokers, "
                "properties) is refused; reuse an existing one or raise the limit"
            )

    def claim(self, key: object) -> None:
        """Reserve a producer slot for configuration ``key`` (a subscriber that will publish).

        Raises:
            ProducerLimitError: it would need a new producer beyond ``max_producers``.
        """
        with self._lock:
            self._admit(key)
            self._claims[key] = self._claims.get(key, 0) + 1

    def unclaim(self, key: object) -> None:
        """Give back a slot taken by :meth:`claim`."""
        with self._lock:
            n = self._claims.get(key, 0) - 1
            if n > 0:
                self._claims[key] = n
            else:
                self._claims.pop(key, None)

    def lane(
        self,
        socket: KafkaSocket,
        owner: LaneOwner,
        route: RouteWorker | None = None,
        *,
        factory: type[Lane] = Lane,
    ) -> Lane:
        """A lane on the producer for ``socket``'s configuration (shared, created lazily);
        ``factory``: a :class:`Lane` subclass (the spool's counts its records differently).

        Raises:
            ProducerLimitError: a new producer would exceed ``max_producers``.
            RuntimeError: the pool is closed.
        """
        with self._lock:
            if self.closed:
                raise RuntimeError("producer pool is closed")
            key = socket.producer_key
            sp = self._producers.get(key)
            if sp is None:
                self._admit(key)
                sp = SharedProducer(self, key, socket.producer_config(), socket.brokers)
                taken = {p.name for p in (*self._producers.values(), *self._releasing)}
                base, n = sp.name, 1
                while sp.name in taken:  # same masked config (only secrets differ)
                    n += 1
                    sp.name = f"{base}-{n}"
                self._producers[key] = sp
            sp.lanes += 1
            lane = factory(self, sp, socket, owner, route)
            self._lanes.append(lane)
            return lane

    def release(self, lane: Lane) -> None:
        """Give a lane back; the last lane of a producer closes it (flush) in the background."""
        with self._lock:
            if lane.released:
                return
            lane.released = True
            sp = lane.sp
            sp.lanes -= 1
            if sp.lanes > 0 or self.closed:
                if lane.stats.in_flight == 0 and lane in self._lanes:
                    self._lanes.remove(lane)  # else: when its last report comes (_dr_count)
                return
            del self._producers[sp.key]
            # close() must still wait for this one: records in it are accepted records.
            self._releasing.add(sp)
            self._release_items.append((sp, lane, time.monotonic() + self.flush_timeout))
            if self._releaser is None:
                # One thread for every producer being let go, not one each: 300 subscribers
                # expiring at once must not make 300 threads.
                t = threading.Thread(target=self._release_loop, name="ek-release", daemon=True)
                self._releaser = t
                t.start()

    def forget(self, lane: Lane) -> None:
        """Drop a released lane that has nothing in flight any more (KB16)."""
        with self._lock:
            if lane in self._lanes:
                self._lanes.remove(lane)
            self._changed.notify_all()

    def _release_loop(self) -> None:
        """Close released producers once their messages are reported (the poller keeps
        serving them meanwhile) or their flush time is up (then they are purged)."""
        while True:
            with self._lock:
                if not self._release_items:
                    self._releaser = None
                    return
                now = time.monotonic()
                due = [it for it in self._release_items if not it[0]._in_flight() or now >= it[2]]
                if not due:
                    # forget() notifies when a released lane's last report has come.
                    self._changed.wait(min(it[2] for it in self._release_items) - now)
                    continue
            for item in due:
                sp, lane, _deadline = item
                try:
                    sp.close(0)  # nothing left to flush, or the flush time is up: purge
                except BaseException as exc:  # keep serving the others
                    _guarded(log.error, "[%s] closing a released producer: %r", sp.label, exc)
                with self._lock:
                    self._release_items.remove(item)
                    self._releasing.discard(sp)
                    # Keep counters of released lanes visible until nothing is in flight.
                    if lane.stats.in_flight == 0 and lane in self._lanes:
                        self._lanes.remove(lane)
                    self._changed.notify_all()

    # -- shutdown ----------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> int:
        """Flush every producer for up to ``timeout`` (default ``flush_timeout``) in total.

        Returns how many messages were not delivered; each of them got a failure report.
        Report routes then get up to :data:`DRAIN_GRACE` more seconds to run what is queued;
        a route still busy after that is left running on its own (daemon) thread.

        Called from inside a report route or ``on_report`` (a worker thread), it does all of
        that except waiting for the calling worker, which cannot run its queue while the
        caller is in it: that worker runs its remaining reports after the callback returns,
        then ends; :meth:`wait_closed` waits for it from another thread.
        """
        timeout = self.flush_timeout if timeout is None else timeout
        with self._lock:
            if self.closed:
                return 0
            self.closed = True
            producers = list(self._producers.values())
        deadline = time.monotonic() + timeout
        self._wait_released(deadline)
        threads: list[tuple[threading.Thread, SharedProducer]] = []
        results: dict[SharedProducer, int] = {}
        for sp in producers:
            # In parallel: one slow cluster must not eat the others' flush time.
            t = threading.Thread(
                target=lambda s=sp: results.__setitem__(
                    s, s.close(max(deadline - time.monotonic(), 0))
                ),
                name="ek-close",
                daemon=True,
            )
            t.start()
            threads.append((t, sp))
        left = 0
        for t, sp in threads:
            t.join(max(deadline - time.monotonic(), 0) + 5.0)
            got = results.get(sp)
            if got is None:
                # Stuck in librdkafka: what it holds gets no report; say so, never return 0.
                got = sp._in_flight()
                _guarded(log.error, "[%s] close did not finish: %d lost", sp.label, got)
            left += got
        grace = max(deadline, time.monotonic()) + DRAIN_GRACE
        with self._lock:
            workers = [*self._routes.values(), self.callbacks]
        for w in workers:
            if w.is_current():
                w.stop(0)  # ends after the caller returns and the rest of its queue ran
                self._deferred.append(w)
                continue
            if not w.drain(max(grace - time.monotonic(), 0)):
                _guarded(
                    log.error,
                    "report route %r still busy at close: %d report(s) not run yet",
                    w.name,
                    w.pending,
                )
            w.stop(0.1)
        return left

    def wait_closed(self, timeout: float) -> bool:
        """After :meth:`close` from inside a callback: wait (from another thread) until the
        workers it could not wait for ran their reports. True if they did."""
        deadline = time.monotonic() + timeout
        ok = True
        for w in list(self._deferred):
            if w.is_current():
                ok = False
                continue
            ok = w.drain(max(deadline - time.monotonic(), 0)) and ok
        return ok

    def _wait_released(self, deadline: float) -> None:
        """Wait for producers that release() is flushing in the background (their messages
        are accepted messages: their reports must run before close() returns)."""
        with self._lock:
            self._changed.wait_for(
                lambda: not self._releasing, max(deadline + 5.0 - time.monotonic(), 0.0)
            )

    # -- monitoring --------------------------------------------------------------------------

    @property
    def producers(self) -> list[SharedProducer]:
        with self._lock:
            return list(self._producers.values())

    def workers(self) -> list[RouteWorker]:
        """Every report-route worker, and the ``on_report`` one."""
        with self._lock:
            return [*self._routes.values(), self.callbacks]

    def note_delivery(self) -> None:
        """A lane got a delivery report while someone waits in :meth:`wait_delivered`."""
        with self._delivered:
            self._delivered.notify_all()

    def wait_delivered(self, timeout: float) -> bool:
        """Wait up to ``timeout`` until no lane has a message without its delivery report
        (report routes may still be running them); True if none has."""
        with self._delivered:
            self.flushing += 1
            try:
                return self._delivered.wait_for(
                    lambda: not any(ln.stats.in_flight for ln in self.lanes), timeout
                )
            finally:
                self.flushing -= 1

    def in_flight_of(self, sp: SharedProducer) -> int:
        """Messages accepted through ``sp`` whose report has not come yet."""
        return sum(ln.stats.in_flight for ln in self.lanes if ln.sp is sp)

    @property
    def lanes(self) -> list[Lane]:
        with self._lock:
            return list(self._lanes)

    def stats(self) -> dict[str, Any]:
        """Counters per lane (:class:`~event_kafka.statistics.LaneStats`), producer and route."""
        with self._lock:
            lanes = list(self._lanes)
            producers = list(self._producers.values())
            routes = dict(self._routes)
        return {
            "lanes": [LaneStats(ln.owner, ln.topic, ln.sp.label, ln.stats) for ln in lanes],
            "producers": [
                {
                    "name": sp.name,
                    "brokers": sp.label,
                    "lanes": sp.lanes,
                    # Messages, not len(producer): that counts queued error and log events too.
                    "queue_length": sp._in_flight(),
                    "down": sp.down,
                    "down_for": time.monotonic() - sp.down_since if sp.down else 0.0,
                    "config": describe_config(sp.key),
                    "statistics": sp.rd_stats,
                    "rebuilds": sp.rebuilds,
                    "lost_reports": sp.lost_reports,
                }
                for sp in producers
            ],
            "report_routes": {
                n: {"ran": w.ran, "errors": w.errors, "pending": w.pending}
                for n, w in routes.items()
            },
        }

    def _after_fork_in_child(self) -> None:
        for sp in self._producers.values():
            sp.reset_after_fork()
        for ln in self._lanes:
            ln.reset_after_fork()
        for w in self._routes.values():
            w.reset_after_fork()
        self.callbacks.reset_after_fork()
        self._deferred = []
        self._releasing = set()  # the parent's background closes, not ours
        self._release_items = []
        self._releaser = None
        self.flushing = 0
