"""The producer core: shared, lazy, fork-safe confluent-kafka producers with exact reporting.

One :class:`SharedProducer` exists per distinct (brokers, global properties, topic properties),
whoever uses it: ``broker_id`` entries and Event Interface subscribers alike. Users hold a
:class:`Lane` — the per-user view (topic, counters, report route) — obtained from
:meth:`ProducerPool.lane`.

Guarantees, and how:

* **Never blocks on the network.** ``produce()`` only enqueues; nothing connects at start-up.
  A full queue waits at most ``queue_full_wait`` (default 0), then the call returns -1, counted.
* **Exactly one report per accepted message.** Every message carries a delivery callback; a
  background thread per producer serves them continuously (``poll(0.2)``: near-zero idle CPU).
  At close, what is left after the flush time is purged, and the purge reports say so.
* **Fatal errors** (idempotence) rebuild the producer; the old one's messages are purged and
  each gets a failure report naming the fatal error.
* **Fork safety.** ``os.register_at_fork`` makes a child drop (never touch) its parent's
  producers; a child creates its own on first use. Hosts that fork in C without Python's fork
  hooks call :func:`after_fork` in the child.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from .properties import is_sensitive, mask_properties
from .ratelimit import RateLimitedLog
from .report import STATUS_FAIL, STATUS_SUCCESS, Report, RouteWorker

if TYPE_CHECKING:
    from .kafka_socket import KafkaSocket

log = logging.getLogger("event_kafka.producer")
rdlog = logging.getLogger("event_kafka.librdkafka")

SHUTDOWN_REASON = "not delivered before shutdown"
_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
_DOWN = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)


class _Closed(Exception):
    """Raised by a closed producer's ``produce`` stand-in."""


def _closed_produce(*args: object, **kwargs: object) -> None:
    raise _Closed


# Producers created before a fork belong to the parent: the child keeps a reference so their
# destructors (which would join librdkafka threads that do not exist here) never run.
_orphans: list[object] = []
_pools: weakref.WeakSet[ProducerPool] = weakref.WeakSet()


def after_fork() -> None:
    """Forget every producer inherited from the parent process; call in a forked child.

    Python's ``os.fork()`` (and ``multiprocessing``) run this automatically. Hosts that fork
    from C without ``PyOS_AfterFork_Child`` must call it at the start of each child.
    """
    for pool in list(_pools):
        pool._reset_after_fork()


os.register_at_fork(after_in_child=after_fork)


class _Scrubber:
    """Removes secret property values from text that librdkafka or Kafka hand us."""

    def __init__(self, config: dict[str, str]) -> None:
        self.secrets = sorted(
            (v for k, v in config.items() if v and is_sensitive(k)), key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "*****")
        return text


class _LibrdkafkaLogger:
    """confluent-kafka ``logger``: scrubbed, and rate-limited per facility so no floods."""

    def __init__(self, scrub: _Scrubber, label: str) -> None:
        self.scrub = scrub
        self.label = label
        self._limits: dict[str, RateLimitedLog] = {}

    def log(self, level: int, fmt: str, *args: object) -> None:
        text = self.scrub(fmt % args if args else fmt)
        fac = str(args[0]) if args else ""
        lim = self._limits.get(fac)
        if lim is None:
            lim = self._limits[fac] = RateLimitedLog(rdlog, 10.0)
        lim.log(level, "[%s] %s", self.label, text)


class SharedProducer:
    """One confluent-kafka Producer shared by every lane with the same configuration."""

    def __init__(self, pool: ProducerPool, key: object, config: dict[str, str], label: str):
        self.pool = pool
        self.key = key
        self.config = config
        self.label = label  # brokers only: never the properties (they may hold secrets)
        self.name = producer_name(key)  # the pool makes it unique among its producers
        self.scrub = _Scrubber(config)
        self.lanes = 0
        self._producer: Any = None
        self.produce: Callable[..., None] = self._first_produce
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.purge_reason = SHUTDOWN_REASON
        self.fatal_pending: str | None = None
        self.rebuilds = 0
        self.down = False
        self.down_since = 0.0  # time.monotonic() when ``down`` became true
        self.down_errors = 0
        self.lost_reports = 0
        self.closed = False
        self.rd_stats: str | None = None  # latest librdkafka statistics JSON (stats_cb)
        # The last broker-side error (auth, TLS, ...): a timed-out message names it, since
        # librdkafka's own report only says "Message timed out".
        self.last_error: str | None = None
        self.errlog = RateLimitedLog(log, 10.0)

    # -- lifecycle ---------------------------------------------------------------------------

    def _first_produce(self, *args: Any, **kwargs: Any) -> None:
        # Replaced by the real Producer.produce once built: laziness costs nothing per call.
        with self._lock:
            if self.closed:
                raise _Closed
            if self._producer is None:
                self._build()
        self.produce(*args, **kwargs)

    def _new_producer(self) -> Any:
        conf: dict[str, Any] = dict(self.config)
        conf["error_cb"] = self._on_error
        conf["logger"] = _LibrdkafkaLogger(self.scrub, self.label)
        conf.setdefault("client.id", "event-kafka")
        # A socket's own g.statistics.interval.ms wins over the pool's default.
        interval = int(conf.get("statistics.interval.ms") or self.pool.statistics_interval_ms)
        if interval > 0:
            conf["statistics.interval.ms"] = str(interval)
            conf["stats_cb"] = self._on_stats
        return Producer(conf)

    def _build(self) -> None:
        p = self._new_producer()
        self._producer = p
        self.produce = p.produce
        self._stop.clear()
        t = threading.Thread(target=self._poll_loop, name=f"ek-poll-{self.label}", daemon=True)
        self._thread = t
        t.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            p = self._producer
            try:
                p.poll(0.2)
            except (KafkaException, SystemError) as exc:
                # confluent-kafka raises fatal errors from poll(); SystemError is its known
                # failure mode when a callback runs with the fatal exception pending.
                self._note_fatal(exc)
            if self.fatal_pending is not None:
                self._rebuild()

    def _note_fatal(self, exc: BaseException) -> None:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is None or err.fatal() or err.code() == KafkaError._FATAL:
            reason = err.str() if err is not None else str(exc)
            if self._producer is not None:
                with _suppress():
                    fe = (
                        self._producer.fatal_error()
                        if hasattr(self._producer, "fatal_error")
                        else None
                    )
                    if fe is not None:
                        reason = fe.str()
            self.fatal_pending = self.scrub(reason)
        else:
            log.error("[%s] producer error: %s", self.label, self.scrub(str(exc)))

    def _rebuild(self) -> None:
        """Replace a producer in fatal state; its messages get failure reports with the reason."""
        reason = self.fatal_pending or "fatal error"
        log.error("[%s] producer in fatal state (%s): rebuilding it", self.label, reason)
        old = self._producer
        with self._lock:
            if self.closed:
                self.fatal_pending = None
                return
            new = self._new_producer()
            self._producer = new
            self.produce = new.produce
            self.fatal_pending = None
            self.rebuilds += 1
        self.purge_reason = f"fatal producer error: {reason}"
        self._purge_and_serve(old, 5.0)
        self.purge_reason = SHUTDOWN_REASON

    def _purge_and_serve(self, p: Any, timeout: float) -> int:
        """Purge what ``p`` still holds and serve the resulting failure reports."""
        with _suppress():
            p.purge(in_queue=True, in_flight=True, blocking=False)
        deadline = time.monotonic() + timeout
        left = len(p)
        while left and time.monotonic() < deadline:
            with _suppress():
                p.poll(0.05)
            left = len(p)
        if left:
            self.lost_reports += left
            log.error(
                "[%s] %d message(s) got no delivery report from librdkafka; counted as lost",
                self.label,
                left,
            )
        return left

    def close(self, timeout: float) -> int:
        """Stop accepting, flush up to ``timeout``, fail what is left; returns that count."""
        with self._lock:
            self.closed = True
            self.produce = _closed_produce
            p = self._producer
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(timeout, 1.0) + 1.0)
            self._thread = None
        if p is None:
            return 0
        deadline = time.monotonic() + timeout
        while len(p) and time.monotonic() < deadline:
            try:
                p.flush(min(0.5, max(deadline - time.monotonic(), 0.0)))
            except (KafkaException, SystemError) as exc:
                self._note_fatal(exc)
                break
        left = len(p)
        if left:
            log.warning(
                "[%s] %d message(s) not delivered within %.1fs of shutdown: reporting them failed",
                self.label,
                left,
                timeout,
            )
            self.purge_reason = SHUTDOWN_REASON
            self._purge_and_serve(p, 5.0)
        return left

    def reset_after_fork(self) -> None:
        if self._producer is not None:
            _orphans.append(self._producer)
        self._producer = None
        self.produce = self._first_produce if not self.closed else _closed_produce
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self.fatal_pending = None
        self.down = False
        self.rd_stats = None
        self.down_errors = self.rebuilds = self.lost_reports = 0

    # -- callbacks (poll thread) -------------------------------------------------------------

    def _on_error(self, err: KafkaError) -> None:
        code = err.code()
        if code != KafkaError._ALL_BROKERS_DOWN and not err.fatal():
            self.last_error = self.scrub(err.str())
        if code in _DOWN:
            if not self.down:
                self.down_since = time.monotonic()
                self.down = True
                log.warning("[%s] brokers unreachable: %s", self.label, self.scrub(err.str()))
            else:
                self.down_errors += 1
            return
        if err.fatal():
            self.fatal_pending = self.scrub(err.str())
            return
        self.errlog.error("[%s] kafka error: %s", self.label, self.scrub(err.str()))

    def _on_stats(self, text: str) -> None:
        # Kept as text, parsed when /metrics is scraped (here only while down: rare).
        self.rd_stats = text
        if self.down and _any_broker_up(text):
            self.mark_up()  # an idle producer sends nothing, so no delivery would say so

    def probe(self, timeout: float) -> bool:
        """Whether a metadata request gets an answer within ``timeout`` (with this producer's
        own TLS/SASL settings); a reply clears ``down``. False while no producer is built."""
        p = self._producer
        if p is None:
            return False
        try:
            p.list_topics(timeout=timeout)
        except (KafkaException, SystemError):
            return False
        if self.down:
            self.mark_up()
        return True

    def mark_up(self) -> None:
        self.down = False
        log.warning(
            "[%s] brokers reachable again (%d connection errors while down)",
            self.label,
            self.down_errors,
        )
        self.down_errors = 0

    @property
    def queue_length(self) -> int:
        p = self._producer
        return len(p) if p is not None else 0


def _any_broker_up(stats_json: str) -> bool:
    try:
        brokers = orjson.loads(stats_json).get("brokers", {})
        return any(b.get("state") == "UP" for b in brokers.values())
    except (orjson.JSONDecodeError, AttributeError):
        return False


def describe_config(key: object) -> str:
    """``g.name=value&t.name=value`` of a producer key, secret values masked."""
    if not (isinstance(key, tuple) and len(key) == 3):
        return ""
    _brokers, g, t = key
    pairs = [f"g.{n}={v}" for n, v in sorted(mask_properties(g).items())]
    pairs += [f"t.{n}={v}" for n, v in sorted(mask_properties(t).items())]
    return "&".join(pairs)


def producer_name(key: object) -> str:
    """A stable, non-secret name for a producer configuration: ``p`` + 8 hex digits of a hash
    of brokers and *masked* properties (equal across restarts and reloads; secret values never
    enter it, so the hash reveals nothing about them)."""
    brokers = key[0] if isinstance(key, tuple) and key else ""
    canon = f"{brokers}?{describe_config(key)}"
    return "p" + hashlib.sha256(canon.encode()).hexdigest()[:8]


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


@dataclass
class LaneStats:
    """Counters of one lane; ``in_flight = accepted - delivered - failed``."""

    accepted: int
    delivered: int
    failed: int
    rejected_queue_full: int
    rejected_too_large: int
    rejected_fatal: int
    rejected_closed: int
    rejected_other: int
    route_errors: int

    @property
    def in_flight(self) -> int:
        return self.accepted - self.delivered - self.failed

    @property
    def rejected(self) -> int:
        return (
            self.rejected_queue_full
            + self.rejected_too_large
            + self.rejected_fatal
            + self.rejected_closed
            + self.rejected_other
        )

    def as_dict(self) -> dict[str, int]:
        d = dict(self.__dict__)
        d["in_flight"] = self.in_flight
        d["rejected"] = self.rejected
        return d


def _count_value(c: itertools.count[int]) -> int:
    # itertools.count is the one counter that is atomic across threads at no cost (a C call);
    # its repr is "count(N)".
    return int(repr(c)[6:-1])


class Lane:
    """A user's view of a shared producer: one topic, its counters, its report route.

    Created by :meth:`ProducerPool.lane`; ``publish`` is the hot path.
    """

    def __init__(
        self,
        pool: ProducerPool,
        sp: SharedProducer,
        socket: KafkaSocket,
        owner: str,
        route: RouteWorker | None,
    ) -> None:
        self.pool = pool
        self.sp = sp
        self.socket = socket
        self.topic = socket.topic
        self.owner = owner
        self.route = route
        self._accepted = itertools.count()
        self.delivered = 0
        self.failed = 0
        self.rejected_queue_full = 0
        self.rejected_too_large = 0
        self.rejected_fatal = 0
        self.rejected_closed = 0
        self.rejected_other = 0
        self.route_errors = 0
        self.released = False
        self._dr = self._dr_route if route is not None else self._dr_count
        self._failog = RateLimitedLog(log, 10.0)

    # -- hot path ----------------------------------------------------------------------------

    def publish(
        self,
        value: bytes | str,
        key: bytes | str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        on_report: Callable[[Report], object] | None = None,
    ) -> int:
        """Enqueue one record; 1 if accepted (a report will follow), -1 if not (counted)."""
        dr = self._dr if on_report is None else partial(self._dr_once, on_report)
        try:
            if headers is None:
                self.sp.produce(self.topic, value, key, on_delivery=dr)
            else:
                self.sp.produce(self.topic, value, key, on_delivery=dr, headers=headers)
        except BufferError:
            return self._queue_full(value, key, headers, dr)
        except KafkaException as exc:
            return self._rejected(exc)
        except _Closed:
            self.rejected_closed += 1
            return -1
        except TypeError as exc:
            raise TypeError(f"message and key must be str or bytes: {exc}") from None
        next(self._accepted)
        return 1

    def _queue_full(
        self, value: bytes | str, key: bytes | str | None, headers: Any, dr: Any
    ) -> int:
        wait = self.pool.queue_full_wait
        if wait > 0:
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                time.sleep(0.0005)
                try:
                    self.sp.produce(self.topic, value, key, on_delivery=dr, headers=headers)
                except BufferError:
                    continue
                except (KafkaException, _Closed):
                    break
                next(self._accepted)
                return 1
        self.rejected_queue_full += 1
        self._failog.warning(
            "[%s] producer queue full: message rejected (queue.buffering.max.messages)",
            self.owner,
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
        self._failog.warning("[%s] message rejected: %s", self.owner, self.sp.scrub(str(err)))
        return -1

    # -- delivery callbacks (poll thread) ----------------------------------------------------

    def _dr_count(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            if self.sp.down:
                self.sp.mark_up()
            if self.sp.last_error is not None:
                self.sp.last_error = None
        else:
            self.failed += 1
            self._failog.warning("[%s] delivery failed: %s", self.owner, self.reason(err))
        if self.released and self.accepted == self.delivered + self.failed:
            self.pool.forget(self)

    def _dr_route(self, err: KafkaError | None, msg: Any) -> None:
        self._dr_count(err, msg)
        # The reason is resolved now: purge_reason is only valid while this purge runs.
        reason = None if err is None else self.reason(err)
        self.route.submit((self, err, msg, reason))  # type: ignore[union-attr]

    def _dr_once(self, on_report: Callable[[Report], object], err: Any, msg: Any) -> None:
        self._dr(err, msg)
        try:
            on_report(self.make_report(err, msg))
        except Exception as exc:
            self.route_errors += 1
            self._failog.error("[%s] on_report raised %s: %s", self.owner, type(exc).__name__, exc)

    def reason(self, err: KafkaError) -> str:
        code = err.code()
        if code in _PURGED:
            return self.sp.purge_reason
        text = f"{err.name()}: {err.str()}"
        if code == KafkaError._MSG_TIMED_OUT and self.sp.last_error:
            text += f" (last broker error: {self.sp.last_error})"
        return self.sp.scrub(text)

    def make_report(self, err: KafkaError | None, msg: Any, reason: str | None = None) -> Report:
        if err is None:
            return Report(
                self.owner,
                STATUS_SUCCESS,
                msg.key(),
                msg.value(),
                None,
                msg.topic(),
                msg.partition(),
                msg.offset(),
            )
        part = msg.partition()
        return Report(
            self.owner,
            STATUS_FAIL,
            msg.key(),
            msg.value(),
            reason or self.reason(err),
            msg.topic(),
            part if part is not None and part >= 0 else None,
            None,
        )

    # -- bookkeeping -------------------------------------------------------------------------

    @property
    def accepted(self) -> int:
        return _count_value(self._accepted)

    @property
    def stats(self) -> LaneStats:
        return LaneStats(
            self.accepted,
            self.delivered,
            self.failed,
            self.rejected_queue_full,
            self.rejected_too_large,
            self.rejected_fatal,
            self.rejected_closed,
            self.rejected_other,
            self.route_errors,
        )

    def reset_after_fork(self) -> None:
        self._accepted = itertools.count()
        self.delivered = self.failed = self.route_errors = 0
        self.rejected_queue_full = self.rejected_too_large = self.rejected_fatal = 0
        self.rejected_closed = self.rejected_other = 0


class ProducerPool:
    """Shares producers between lanes; owns their poll threads and report-route workers.

    >>> pool = ProducerPool(flush_timeout=10)                      # doctest: +SKIP
    >>> lane = pool.lane(parse_socket("kafka:127.0.0.1:9092/cdr"), owner="cdr")
    >>> lane.publish(b"{...}", key=b"call-id")
    1
    """

    def __init__(
        self,
        *,
        flush_timeout: float = 10.0,
        queue_full_wait: float = 0.0,
        report_queue_size: int = 100_000,
        statistics_interval_ms: int = 0,
    ) -> None:
        self.flush_timeout = flush_timeout
        self.queue_full_wait = queue_full_wait
        # librdkafka statistics (stats_cb) for producers built from now on; 0: off.
        self.statistics_interval_ms = statistics_interval_ms
        self.report_queue_size = report_queue_size
        self._producers: dict[object, SharedProducer] = {}
        self._lanes: list[Lane] = []
        self._routes: dict[str, RouteWorker] = {}
        self._releasing: set[SharedProducer] = set()
        self._lock = threading.RLock()
        self.closed = False
        _pools.add(self)

    def route_worker(self, name: str, fn: Callable[[Report], object]) -> RouteWorker:
        """The worker thread (created lazily) that runs report route ``name``."""
        with self._lock:
            w = self._routes.get(name)
            if w is None or w.route is not fn:
                w = self._routes[name] = RouteWorker(name, fn, self.report_queue_size)
            return w

    def lane(self, socket: KafkaSocket, owner: str, route: RouteWorker | None = None) -> Lane:
        """A lane on the producer for ``socket``'s configuration (shared, created lazily)."""
        with self._lock:
            if self.closed:
                raise RuntimeError("producer pool is closed")
            key = socket.producer_key
            sp = self._producers.get(key)
            if sp is None:
                sp = SharedProducer(self, key, socket.producer_config(), socket.brokers)
                taken = {p.name for p in (*self._producers.values(), *self._releasing)}
                base, n = sp.name, 1
                while sp.name in taken:  # same masked config (only secrets differ)
                    n += 1
                    sp.name = f"{base}-{n}"
                self._producers[key] = sp
            sp.lanes += 1
            lane = Lane(self, sp, socket, owner, route)
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
        threading.Thread(
            target=self._close_released, args=(sp, lane), name="ek-release", daemon=True
        ).start()

    def forget(self, lane: Lane) -> None:
        """Drop a released lane that has nothing in flight any more (KB16)."""
        with self._lock:
            if lane in self._lanes:
                self._lanes.remove(lane)

    def _close_released(self, sp: SharedProducer, lane: Lane) -> None:
        sp.close(self.flush_timeout)
        with self._lock:
            self._releasing.discard(sp)
            # Keep counters of released lanes visible until they have nothing in flight.
            if lane.stats.in_flight == 0 and lane in self._lanes:
                self._lanes.remove(lane)

    def close(self, timeout: float | None = None) -> int:
        """Flush every producer for up to ``timeout`` (default ``flush_timeout``) in total.

        Returns how many messages were not delivered; each of them got a failure report.
        """
        timeout = self.flush_timeout if timeout is None else timeout
        with self._lock:
            if self.closed:
                return 0
            self.closed = True
            producers = list(self._producers.values())
        deadline = time.monotonic() + timeout
        self._wait_released(deadline)
        left = 0
        threads: list[threading.Thread] = []
        results: list[int] = []
        for sp in producers:
            # In parallel: one slow cluster must not eat the others' flush time.
            t = threading.Thread(
                target=lambda s=sp: results.append(s.close(max(deadline - time.monotonic(), 0))),
                daemon=True,
            )
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout + 10.0)
        left = sum(results)
        for w in list(self._routes.values()):
            w.drain(max(deadline - time.monotonic(), 0) + 5.0)
            w.stop()
        return left

    def _wait_released(self, deadline: float) -> None:
        """Wait for producers that release() is flushing in the background."""
        while time.monotonic() < deadline + 5.0:
            with self._lock:
                if not self._releasing:
                    return
            time.sleep(0.01)

    @property
    def producers(self) -> list[SharedProducer]:
        with self._lock:
            return list(self._producers.values())

    @property
    def lanes(self) -> list[Lane]:
        with self._lock:
            return list(self._lanes)

    def stats(self) -> dict[str, Any]:
        """Counters per lane owner and per producer."""
        with self._lock:
            lanes = list(self._lanes)
            producers = list(self._producers.values())
        return {
            "lanes": [
                {"owner": ln.owner, "topic": ln.topic, "brokers": ln.sp.label, **ln.stats.as_dict()}
                for ln in lanes
            ],
            "producers": [
                {
                    "name": sp.name,
                    "brokers": sp.label,
                    "lanes": sp.lanes,
                    "queue_length": sp.queue_length,
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
                for n, w in self._routes.items()
            },
        }

    def _reset_after_fork(self) -> None:
        self._lock = threading.RLock()
        for sp in self._producers.values():
            sp.reset_after_fork()
        for ln in self._lanes:
            ln.reset_after_fork()
        for w in self._routes.values():
            w.reset_after_fork()
