"""The shared producer: one confluent-kafka Producer per distinct configuration.

One :class:`SharedProducer` exists per distinct (brokers, global properties, topic properties),
whoever uses it (``broker_id`` entries and Event Interface subscribers alike). It is built
lazily on the first ``produce``, served by the process's poller
(:mod:`event_kafka.poller`), rebuilt off the poller after a fatal error (the old producer's
messages are purged, each failure report naming the fatal error), and closed with a bounded
flush whose leftovers are purged and reported. librdkafka's text (logs, errors) is scrubbed of
secret property values before anyone sees it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from .. import forksafe
from ..poller import POLLER
from ..poller import guarded as _guarded
from ..properties import is_sensitive, mask_properties, redact
from ..ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from .handover import Handover

__all__ = ["SHUTDOWN_REASON", "SharedProducer", "describe_config", "producer_name"]

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


class _LibrdkafkaLogger:
    """confluent-kafka ``logger``: scrubbed, and rate-limited per facility so no floods."""

    def __init__(self, scrub: Callable[[str], str], label: str) -> None:
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


class ProducerHost(Protocol):
    """What a shared producer reads from the pool that made it."""

    statistics_interval_ms: int  # librdkafka statistics for producers built from now; 0: off

    def in_flight_of(self, sp: SharedProducer) -> int:
        """Messages accepted through ``sp`` whose report has not come yet."""
        ...

    def delivered_of(self, sp: SharedProducer) -> int:
        """Messages delivered through ``sp`` so far (its lanes' ``delivered``)."""
        ...


class SharedProducer:
    """One confluent-kafka Producer shared by every lane with the same configuration.

    Two librdkafka handles at most, each built on first use: ``produce`` (a delivery report
    for every message: lanes with a report route, ``on_report`` messages) and
    ``produce_quiet`` (``delivery.report.only.error``: lanes that only count; their
    successes cost no Python call, see :class:`~event_kafka.producer.lane.Lane`).
    """

    def __init__(self, host: ProducerHost, key: object, config: dict[str, str], label: str):
        self.host = host
        self.key = key
        self.config = config
        self.label = label  # brokers only: never the properties (they may hold secrets)
        self.name = producer_name(key)  # the pool makes it unique among its producers
        self._secrets = tuple(v for k, v in config.items() if v and is_sensitive(k))
        self.lanes = 0
        self._producer: Any = None
        self._quiet: Any = None  # the delivery.report.only.error handle
        self.produce: Callable[..., None] = self._first_produce
        self.produce_quiet: Callable[..., None] = self._first_produce_quiet
        self._seen_delivered: int | None = None  # see _quiet_progress
        self.handovers: list[Handover] = []  # broker_ids moving off the quiet handle
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
        self._ensure(False)
        self.produce(*args, **kwargs)

    def _first_produce_quiet(self, *args: Any, **kwargs: Any) -> None:
        self._ensure(True)
        self.produce_quiet(*args, **kwargs)

    def _ensure(self, quiet: bool) -> None:
        with self._lock:
            if self.closed:
                raise _Closed
            if (self._quiet if quiet else self._producer) is None:
                if not forksafe.resolver_usable():
                    _guarded(log.error, "[%s] %s", self.label, forksafe.NO_RESOLVER)
                    raise KafkaException(KafkaError(KafkaError._RESOLVE, forksafe.NO_RESOLVER))
                self._build(quiet)

    @property
    def handles(self) -> list[Any]:
        """The librdkafka producers built so far (none, one or both kinds)."""
        return [p for p in (self._producer, self._quiet) if p is not None]

    def _new_producer(self, quiet: bool = False) -> Any:
        conf: dict[str, Any] = dict(self.config)
        if quiet:
            # confluent-kafka handles this one itself (it does not reach librdkafka): every
            # message still gets its C delivery callback, which frees its per-message state
            # and drops its reference to the Python callback, but the Python callback runs
            # only for failures. (Passed to librdkafka, successes would never free it: the
            # leak confluent-kafka's own test_producer_dr_only_error is about.)
            conf["delivery.report.only.error"] = True
        conf["error_cb"] = self._on_error
        conf["logger"] = _LibrdkafkaLogger(self.scrub, self.label)
        conf.setdefault("client.id", "event-kafka")
        # A socket's own g.statistics.interval.ms wins over the pool's default.
        interval = int(conf.get("statistics.interval.ms") or self.host.statistics_interval_ms)
        if interval > 0:
            conf["statistics.interval.ms"] = str(interval)
            conf["stats_cb"] = self._on_stats
        return Producer(conf)

    def _build(self, quiet: bool = False) -> None:
        p = self._new_producer(quiet)
        if quiet:
            self._quiet = p
            self.produce_quiet = p.produce
        else:
            self._producer = p
            self.produce = p.produce
        POLLER.add(self)

    def serve(self, timeout: float) -> int:
        """Serve this producer's callbacks for up to ``timeout`` s (the poller calls this)."""
        p, q = self._producer, self._quiet
        if p is None and q is None:
            if self.handovers:  # nothing on a handle: only a call in progress can hold it back
                self.advance_handovers()
                if self.handovers:
                    time.sleep(timeout)  # the poller's wait, which a handle's poll would be
            return 0
        try:
            if q is None:
                n: int = p.poll(timeout)
            elif p is None:
                n = q.poll(timeout)
            else:
                n = p.poll(0)
                n += q.poll(0 if n else timeout)
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
        if self.handovers:
            self.advance_handovers()  # guarded inside: nothing stops the poller here
        if q is not None and (self.down or self.last_error is not None):
            self._quiet_progress()
        else:
            self._seen_delivered = None
        return n

    def add_handover(self, h: Handover) -> bool:
        """Serve ``h`` until it is over; False if this producer is closed (nothing to wait for:
        its calls are refused as closed)."""
        with self._lock:
            if self.closed:
                return False
            self.handovers = [*self.handovers, h]
        POLLER.add(self)  # it may have produced nothing yet: the poller must still look
        return True

    def advance_handovers(self) -> None:
        """Send what waits in handovers whose quiet messages are all reported."""
        done = []
        for h in self.handovers:
            try:
                if h.advance():
                    done.append(h)
            except BaseException as exc:  # a bug here must not stop the poller
                _guarded(
                    self.errlog.error, "[%s] handover failed: %s", self.label, self.scrub(repr(exc))
                )
        if done:
            with self._lock:
                self.handovers = [h for h in self.handovers if h not in done]

    def produce_held(self, *args: Any) -> None:
        """``produce`` on the per-message handle for a call a handover held: it was accepted,
        so it is sent even while closing (built now if it never was)."""
        with self._lock:
            if self._producer is None:
                self._build(False)
            p = self._producer
        p.produce(*args)

    def _finish_handovers(self, deadline: float) -> None:
        # Closing: the calls a handover holds are accepted calls. The poller still serves
        # this producer and advances them; wait for it, up to the deadline.
        while self.handovers and time.monotonic() < deadline:
            self.advance_handovers()
            if self.handovers:
                time.sleep(0.002)

    def _quiet_progress(self) -> None:
        """Deliveries prove the brokers reachable; the quiet handle's come with no callback,
        so while down (or with an error noted) the lanes' derived ``delivered`` is watched."""
        d = self.host.delivered_of(self)
        if self._seen_delivered is not None and d > self._seen_delivered:
            if self.down:
                self.mark_up()
            self.last_error = None
        self._seen_delivered = d

    def _note_fatal(self, exc: BaseException) -> None:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is None or err.fatal() or err.code() == KafkaError._FATAL:
            reason = err.str() if err is not None else str(exc)
            for p in self.handles:
                with contextlib.suppress(Exception):
                    fe = p.fatal_error() if hasattr(p, "fatal_error") else None
                    if fe is not None:
                        reason = fe.str()
                        break
            self.fatal_pending = self.scrub(reason)
        else:
            _guarded(log.error, "[%s] producer error: %s", self.label, self.scrub(str(exc)))

    def _rebuild(self) -> None:
        """Replace a producer in fatal state; its messages get failure reports with the reason."""
        try:
            reason = self.fatal_pending or "fatal error"
            _guarded(log.error, "[%s] producer in fatal state (%s): rebuilding", self.label, reason)
            with self._lock:
                old = self.handles
                if self.closed:
                    self.fatal_pending = None
                    return
                if self._producer is not None:
                    self._producer = self._new_producer()
                    self.produce = self._producer.produce
                if self._quiet is not None:
                    self._quiet = self._new_producer(True)
                    self.produce_quiet = self._quiet.produce
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
        return self.host.in_flight_of(self)

    def scrub(self, text: str) -> str:
        """``text`` with this producer's secret property values masked."""
        return redact(text, self._secrets)

    def _purge_and_serve(
        self, ps: list[Any], timeout: float, remaining: Callable[[], int] | None = None
    ) -> int:
        """Purge what the handles ``ps`` still hold and serve the resulting failure reports."""
        remaining = remaining or (lambda: sum(len(p) for p in ps))
        for p in ps:
            with contextlib.suppress(Exception):
                p.purge(in_queue=True, in_flight=True, blocking=False)
        deadline = time.monotonic() + timeout
        left = remaining()
        while left and time.monotonic() < deadline:
            for p in ps:
                with contextlib.suppress(Exception):
                    p.poll(0.05 / len(ps))
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
        deadline = time.monotonic() + timeout
        with self._lock:
            self.closed = True
            self.produce = self.produce_quiet = _closed_produce
        self._finish_handovers(deadline)
        with self._lock:
            ps = self.handles
        POLLER.remove(self)
        unsent = 0
        for h in self.handovers:  # the quiet handle did not empty in time: fail what waits
            unsent += h.fail_waiting()
        self.handovers = []
        if not ps:
            return unsent
        stop = False
        while not stop and self._in_flight() and time.monotonic() < deadline:
            for p in ps:
                try:
                    p.flush(min(0.5 / len(ps), max(deadline - time.monotonic(), 0.0)))
                except (KafkaException, SystemError) as exc:
                    self._note_fatal(exc)
                    stop = True
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
            self._purge_and_serve(ps, 2.0, self._in_flight)
        return left + unsent

    def reset_after_fork(self) -> None:
        _orphans.extend(self.handles)
        self.handovers = []
        self._producer = self._quiet = None
        self.produce = self._first_produce if not self.closed else _closed_produce
        self.produce_quiet = self._first_produce_quiet if not self.closed else _closed_produce
        self._seen_delivered = None
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
        p = self._producer if self._producer is not None else self._quiet
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
        p, q = self._producer, self._quiet
        return (len(p) if p is not None else 0) + (len(q) if q is not None else 0)

    @property
    def message_timeout(self) -> float:
        """Seconds within which librdkafka reports every message (``message.timeout.ms``)."""
        c = self.config  # values librdkafka validated when the socket was parsed
        names = ("message.timeout.ms", "delivery.timeout.ms")  # g. or t. (topic.) properties
        ms = next((c[k] for n in names for k in (f"topic.{n}", n) if c.get(k)), 300_000)
        return float(ms) / 1000

    @property
    def busy(self) -> bool:
        """Messages in librdkafka, or calls waiting in a handover (the poller serves it)."""
        return bool(self.handovers) or self.queue_length > 0


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
