"""The producer core: shared, lazy, fork-safe confluent-kafka producers with exact reporting.

One :class:`SharedProducer` exists per distinct (brokers, global properties, topic properties),
whoever uses it: ``broker_id`` entries and Event Interface subscribers alike. Users hold a
:class:`Lane` — the per-user view (topic, counters, report route) — obtained from
:meth:`ProducerPool.lane`.

Guarantees, and how:

* **Never blocks on the network.** ``produce()`` only enqueues; nothing connects at start-up.
  A full queue waits at most ``queue_full_wait`` (default 0), then the call returns -1, counted.
* **Exactly one report per accepted message.** Every message carries a delivery callback;
  one thread per process (:mod:`event_kafka.poller`) serves every producer's callbacks. User
  code (report routes, ``on_report``) runs on worker threads (:class:`RouteWorker`), never on
  that thread, and nothing it raises or how long it takes can stop other reports. At close,
  what is left after the flush time is purged, and the purge reports say so.
* **Bounded.** A route's backlog (accepted, not yet reported) is bounded by
  ``report_queue_size``: past it, ``publish`` refuses (-1, counted as queue full) instead of
  ever blocking the poller. ``max_producers`` bounds the distinct producers (and so the
  librdkafka threads) a pool creates: :class:`ProducerLimitError`.
* **Fatal errors** (idempotence) rebuild the producer; the old one's messages are purged and
  each gets a failure report naming the fatal error.
* **Fork safety.** :mod:`event_kafka.forksafe` re-creates every lock, queue and thread
  handle in a forked child; a child drops (never touches) its parent's producers and creates
  its own on first use. Hosts that fork in C without Python's fork hooks call
  :func:`after_fork` in the child.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from . import forksafe
from .errors import EventKafkaError
from .forksafe import after_fork
from .poller import POLLER
from .poller import guarded as _guarded
from .properties import is_sensitive, mask_properties
from .ratelimit import RateLimitedLog
from .report import STATUS_FAIL, STATUS_SUCCESS, Report, RouteWorker, _count_value

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


__all__ = [
    "Lane",
    "LaneStats",
    "ProducerLimitError",
    "ProducerPool",
    "SharedProducer",
    "after_fork",
]

# Producers created before a fork belong to the parent: the child keeps a reference so their
# destructors (which would join librdkafka threads that do not exist here) never run.
_orphans: list[object] = []


NO_RESOLVER = (
    "getaddrinfo is deadlocked in this forked process (the fork came while a thread of the "
    "parent was resolving, e.g. a producer (re)connecting): a producer here could never "
    "connect, so messages are refused"
)
_HOME_PID = os.getpid()
_resolver: dict[int, bool] = {}  # pid -> getaddrinfo answered (probed once per forked child)


def resolver_usable(timeout: float = 2.0) -> bool:
    """Whether ``getaddrinfo`` works in this process; probed once in each forked child.

    A fork while one of the parent's librdkafka threads is inside glibc's ``getaddrinfo``
    (every connection attempt takes its ``__check_pf`` lock) leaves that lock held for ever in
    the child. A producer built there never connects, and librdkafka's ``purge`` then waits
    for the stuck broker thread holding the GIL, freezing the whole process at close. So a
    child checks first, on a thread it can give up on, with librdkafka's flags."""
    pid = os.getpid()
    if pid == _HOME_PID:
        return True
    ok = _resolver.get(pid)
    if ok is None:
        done = threading.Event()

        def probe() -> None:
            with contextlib.suppress(OSError):
                socket.getaddrinfo("127.0.0.1", 9, 0, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)
            done.set()

        threading.Thread(target=probe, name="ek-resolver-probe", daemon=True).start()
        ok = _resolver[pid] = done.wait(timeout)
        if not ok:
            _guarded(log.error, "%s", NO_RESOLVER)
    return ok


class ProducerLimitError(EventKafkaError, RuntimeError):
    """A new producer configuration would exceed the pool's ``max_producers``."""


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
        _guarded(lim.log, level, "[%s] %s", self.label, text)


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
        self._lock = forksafe.lock()
        self._rebuilding = False
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
                if not resolver_usable():
                    raise KafkaException(KafkaError(KafkaError._RESOLVE, NO_RESOLVER))
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
        POLLER.add(self)

    def serve(self, timeout: float) -> int:
        """Serve this producer's callbacks for up to ``timeout`` s (the poller calls this)."""
        p = self._producer
        if p is None:
            return 0
        try:
            n: int = p.poll(timeout)
        except (KafkaException, SystemError) as exc:
            # confluent-kafka raises fatal errors from poll(); SystemError is its known
            # failure mode when a callback runs with the fatal exception pending.
            self._note_fatal(exc)
            n = 1
        except BaseException as exc:  # a callback's logging handler: keep serving
            _guarded(log.error, "[%s] callback raised %r", self.label, exc)
            n = 1
        if self.fatal_pending is not None and not self._rebuilding and not self.closed:
            # Off the poller: a rebuild waits for the old producer's purge reports.
            self._rebuilding = True
            threading.Thread(target=self._rebuild, name="ek-rebuild", daemon=True).start()
        return n

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
            _guarded(log.error, "[%s] producer error: %s", self.label, self.scrub(str(exc)))

    def _rebuild(self) -> None:
        """Replace a producer in fatal state; its messages get failure reports with the reason."""
        try:
            reason = self.fatal_pending or "fatal error"
            _guarded(log.error, "[%s] producer in fatal state (%s): rebuilding", self.label, reason)
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
        finally:
            self._rebuilding = False

    def _in_flight(self) -> int:
        """Messages accepted through this producer whose report has not come yet.

        Not ``len(producer)``: that counts librdkafka's queued error and log events too."""
        return sum(ln.stats.in_flight for ln in self.pool.lanes if ln.sp is self)

    def _purge_and_serve(
        self, p: Any, timeout: float, remaining: Callable[[], int] | None = None
    ) -> int:
        """Purge what ``p`` still holds and serve the resulting failure reports."""
        remaining = remaining or p.__len__
        with _suppress():
            p.purge(in_queue=True, in_flight=True, blocking=False)
        deadline = time.monotonic() + timeout
        left = remaining()
        while left and time.monotonic() < deadline:
            with _suppress():
                p.poll(0.05)
            left = remaining()
        if left:
            self.lost_reports += left
            _guarded(
                log.error,
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
        POLLER.remove(self)
        if p is None:
            return 0
        deadline = time.monotonic() + timeout
        while self._in_flight() and time.monotonic() < deadline:
            try:
                p.flush(min(0.5, max(deadline - time.monotonic(), 0.0)))
            except (KafkaException, SystemError) as exc:
                self._note_fatal(exc)
                break
            except BaseException as exc:  # a callback's logging handler
                _guarded(log.error, "[%s] callback raised %r", self.label, exc)
        left = self._in_flight()
        if left:
            _guarded(
                log.warning,
                "[%s] %d message(s) not delivered within %.1fs of shutdown: reporting them failed",
                self.label,
                left,
                timeout,
            )
            self.purge_reason = SHUTDOWN_REASON
            self._purge_and_serve(p, 2.0, self._in_flight)
        return left

    def reset_after_fork(self) -> None:
        if self._producer is not None:
            _orphans.append(self._producer)
        self._producer = None
        self.produce = self._first_produce if not self.closed else _closed_produce
        self._rebuilding = False
        self.fatal_pending = None
        self.down = False
        self.rd_stats = None
        self.down_errors = self.rebuilds = self.lost_reports = 0

    # -- callbacks (poller thread) -----------------------------------------------------------

    def _on_error(self, err: KafkaError) -> None:
        code = err.code()
        if code != KafkaError._ALL_BROKERS_DOWN and not err.fatal():
            self.last_error = self.scrub(err.str())
        if code in _DOWN:
            if not self.down:
                self.down_since = time.monotonic()
                self.down = True
                _guarded(
                    log.warning, "[%s] brokers unreachable: %s", self.label, self.scrub(err.str())
                )
            else:
                self.down_errors += 1
            return
        if err.fatal():
            self.fatal_pending = self.scrub(err.str())
            return
        _guarded(self.errlog.error, "[%s] kafka error: %s", self.label, self.scrub(err.str()))

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
        _guarded(
            log.warning,
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


class Lane:
    """A user's view of a shared producer: one topic, its counters, its report route.

    Created by :meth:`ProducerPool.lane`; ``publish`` is the hot path. Counters that several
    threads bump (the poller, a closing thread, route workers) are ``itertools.count``.
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
        self._delivered = itertools.count()
        self._failed = itertools.count()
        self._route_errors = itertools.count()
        self.rejected_queue_full = 0
        self.rejected_too_large = 0
        self.rejected_fatal = 0
        self.rejected_closed = 0
        self.rejected_other = 0
        self.released = False
        self._dr = self._dr_route if route is not None else self._dr_count
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
        route = self.route
        if on_report is None:
            dr = self._dr
            if route is not None and route.full():
                return self._backlog_full(route)
        else:
            cbw = self.pool.callbacks
            if cbw.full():
                return self._backlog_full(cbw)
            if route is not None and route.full():
                return self._backlog_full(route)
            dr = partial(self._dr_once, on_report)
        try:
            if headers is None:
                self.sp.produce(self.topic, value, key, on_delivery=dr)
            else:
                self.sp.produce(self.topic, value, key, on_delivery=dr, headers=headers)
        except BufferError:
            return self._queue_full(value, key, headers, dr, on_report)
        except KafkaException as exc:
            return self._rejected(exc)
        except _Closed:
            self.rejected_closed += 1
            return -1
        except TypeError as exc:
            raise TypeError(f"message and key must be str or bytes: {exc}") from None
        self._took(on_report)
        return 1

    def _took(self, on_report: object) -> None:
        next(self._accepted)
        if self.route is not None:
            self.route.reserve()
        if on_report is not None:
            self.pool.callbacks.reserve()
        POLLER.kick()

    def _backlog_full(self, w: RouteWorker) -> int:
        self.rejected_queue_full += 1
        self._failog.warning(
            "[%s] report backlog of %r full (%d reports pending): message rejected",
            self.owner,
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
                self._took(on_report)
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

    # -- delivery callbacks (poller thread; library code only, never raises) -----------------

    def _dr_count(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            next(self._delivered)
            if self.sp.down:
                self.sp.mark_up()
            if self.sp.last_error is not None:
                self.sp.last_error = None
        else:
            next(self._failed)
            _guarded(self._failog.warning, "[%s] delivery failed: %s", self.owner, self.reason(err))
        if self.released and self.accepted == self.delivered + self.failed:
            self.pool.forget(self)

    def _dr_route(self, err: KafkaError | None, msg: Any) -> None:
        self._dr_count(err, msg)
        # The reason is resolved now: purge_reason is only valid while this purge runs.
        reason = None if err is None else self.reason(err)
        self.route.submit((self, err, msg, reason, None))  # type: ignore[union-attr]

    def _dr_once(self, on_report: Callable[[Report], object], err: Any, msg: Any) -> None:
        self._dr(err, msg)
        reason = None if err is None else self.reason(err)
        # On a worker, not here: user code never runs on the poller.
        self.pool.callbacks.submit((self, err, msg, reason, on_report))

    def route_failed(self) -> None:
        """A report route or ``on_report`` raised for one of this lane's messages."""
        next(self._route_errors)

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
    def delivered(self) -> int:
        return _count_value(self._delivered)

    @property
    def failed(self) -> int:
        return _count_value(self._failed)

    @property
    def route_errors(self) -> int:
        return _count_value(self._route_errors)

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
        self._delivered = itertools.count()
        self._failed = itertools.count()
        self._route_errors = itertools.count()
        self.rejected_queue_full = self.rejected_too_large = self.rejected_fatal = 0
        self.rejected_closed = self.rejected_other = 0


class ProducerPool:
    """Shares producers between lanes; owns their report-route workers.

    >>> pool = ProducerPool(flush_timeout=10)                      # doctest: +SKIP
    >>> lane = pool.lane(parse_socket("kafka:127.0.0.1:9092/cdr"), owner="cdr")
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

    def lane(self, socket: KafkaSocket, owner: str, route: RouteWorker | None = None) -> Lane:
        """A lane on the producer for ``socket``'s configuration (shared, created lazily).

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

    def _release_loop(self) -> None:
        """Close released producers once their messages are reported (the poller keeps
        serving them meanwhile) or their flush time is up (then they are purged)."""
        while True:
            with self._lock:
                items = list(self._release_items)
                if not items:
                    self._releaser = None
                    return
            now = time.monotonic()
            for item in items:
                sp, lane, deadline = item
                if sp._in_flight() and now < deadline:
                    continue
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
            time.sleep(0.01)

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
        results: list[int] = []
        for sp in producers:
            # In parallel: one slow cluster must not eat the others' flush time.
            t = threading.Thread(
                target=lambda s=sp: results.append(s.close(max(deadline - time.monotonic(), 0))),
                name="ek-close",
                daemon=True,
            )
            t.start()
            threads.append((t, sp))
        left = 0
        for t, sp in threads:
            t.join(max(deadline - time.monotonic(), 0) + 5.0)
            if t.is_alive():
                # Stuck in librdkafka: what it holds gets no report; say so, never return 0.
                stuck = sp._in_flight()
                left += stuck
                _guarded(log.error, "[%s] close did not finish: %d lost", sp.label, stuck)
        left += sum(results)
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
        while time.monotonic() < deadline + 5.0:
            with self._lock:
                if not self._releasing:
                    return
            time.sleep(0.01)

    # -- monitoring --------------------------------------------------------------------------

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
            routes = dict(self._routes)
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


DRAIN_GRACE = 1.0
"""Seconds report routes get after the flush time to run the reports still queued."""
