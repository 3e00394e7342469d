"""``EventKafka``: the module loaded with its parameters — broker_ids, kafka_publish, report routes.

Example, in the seed's style::

    from event_kafka import EventKafka

    ek = EventKafka(broker_ids=["[k1]127.0.0.1:9092/topic1?g.linger.ms=100&t.acks=all"])

    @ek.report_route("kafka_report")
    def kafka_report(r):
        print(f"Delivery status: {r.kafka_status} for broker: {r.kafka_id}")

    ek.kafka_publish("k1", "my msg content", key=call_id, report_route="kafka_report")
    ek.close()          # flushes (10 s by default); anything left gets a failure report
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from . import forksafe
from .errors import ConfigError, EventKafkaError
from .kafka_socket import KafkaSocket, mask_secrets, parse_broker_id
from .producer import Lane, ProducerLimitError, ProducerPool
from .ratelimit import RateLimitedLog
from .report import Report, RouteWorker
from .statistics import BrokerOwner, LaneCounters, group

if TYPE_CHECKING:
    from .event_interface import EventInfo, EventInterface, EventSubscribers
    from .payload import Params
    from .spool import FsyncPolicy
    from .spool.lane import SpoolRoute, Spools

    SipMsg = str | bytes | None

log = logging.getLogger("event_kafka")

_TEXT = (str, bytes)  # a tuple: ``str | bytes`` builds a union object at every call

R = TypeVar("R", bound=Callable[[Report], object])


class UnknownReportRouteError(EventKafkaError, LookupError):
    """``kafka_publish`` named a report route that was never registered."""


_instances: weakref.WeakSet[EventKafka] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    # Flush at interpreter exit: nothing accepted may vanish because a script forgot close().
    for ek in list(_instances):
        ek.close()  # a second close() waits for what a close() from a callback left


class EventKafka:
    """One instance = the ``event_kafka`` module loaded with its parameters.

    Args:
        broker_ids: ``[ID]brokers/topic?props`` strings (the ``broker_id`` modparam). A bad
            entry or a duplicate ID raises :class:`~event_kafka.errors.ConfigError` /
            :class:`~event_kafka.errors.SocketError` here, at construction.
        flush_timeout: seconds :meth:`close` waits for deliveries (default 10; OpenSIPS: 0.25).
        queue_full_wait: seconds ``kafka_publish`` may wait when the producer queue is full
            before returning -1 (default 0: never blocks).
        report_queue_size: per report route (and for ``on_report`` callbacks), accepted
            messages whose report has not run yet; past it ``kafka_publish`` returns -1
            (counted as ``rejected_queue_full``).
        max_producers: the most distinct producers (one per distinct brokers + properties,
            shared by broker_ids and Kafka event subscribers alike; each has its own
            librdkafka threads). ``None`` (default): no limit. Past it, ``kafka_publish`` to
            a broker_id needing a new producer returns -1 (``rejected_producer_limit``) and
            :meth:`subscribe` raises :class:`~event_kafka.producer.ProducerLimitError`.
        event_header: event records (``kafka:`` subscribers) carry an ``event`` header with
            the event name (default); ``False`` writes them exactly as OpenSIPS does, with no
            headers. ``kafka_publish`` records never have headers (except ``ek-spool-id``
            with a spool).
        spool_dir: a directory for the durable spool (:mod:`event_kafka.spool.lane`):
            every broker_id and ``kafka:`` subscriber writes each record there before
            librdkafka gets it; a record leaves it only once the broker acknowledged it (or
            with a failure report for a permanent error or ``spool_max_age``). It survives
            kill -9 and Kafka outages of any length; a later ``EventKafka`` on the same
            directory (same broker_ids) delivers what is left, from construction on, with
            ``Report.replayed`` true. ``None`` (default): no spool, no cost.
        spool_max_bytes: the most bytes one owner directory (a broker_id, a subscriber)
            holds; past it ``kafka_publish`` returns -1 (``spool_full``).
        spool_max_age: seconds after which a spooled record still not sent is failed
            (report ``expired in the spool``); ``None`` (default): never.
        spool_fsync: ``"never"`` (default: survives the death of the process, not of the
            machine), ``"always"`` (fsync per record) or seconds between fsyncs.
        spool_exclude: broker_ids that publish without the spool.
        spool_max_total_bytes: the most bytes of the whole spool (every owner directory of
            this instance); ``None`` (default): only ``spool_max_bytes`` per owner. Set it
            where subscribers can be added from outside (the MI): each new one is a
            directory of up to ``spool_max_bytes``.

    Nothing connects at construction: producers are created on first use, per process.
    Report routes and ``on_report`` run on worker threads, never on the thread serving
    librdkafka: whatever they raise or however long they take, every other report still
    runs (see :meth:`close` for calling it from inside one).
    """

    def __init__(
        self,
        broker_ids: Iterable[str] = (),
        *,
        flush_timeout: float = 10.0,
        queue_full_wait: float = 0.0,
        report_queue_size: int = 100_000,
        event_header: bool = True,
        max_producers: int | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = 1 << 30,
        spool_max_age: float | None = None,
        spool_fsync: FsyncPolicy = "never",
        spool_exclude: Iterable[str] = (),
        spool_max_total_bytes: int | None = None,
    ) -> None:
        self.brokers: dict[str, KafkaSocket] = _parse_broker_ids(broker_ids)
        self.event_header = event_header
        self.pool = ProducerPool(
            flush_timeout=flush_timeout,
            queue_full_wait=queue_full_wait,
            report_queue_size=report_queue_size,
            max_producers=max_producers,
        )
        self.flush_timeout = flush_timeout
        self._routes: dict[str, Callable[[Report], object]] = {}
        self._lanes: dict[tuple[str, str | None], Lane | SpoolRoute] = {}
        # kafka_publish's common calls (no on_report, not a tombstone), by report route (None:
        # none) and broker_id: the publish method of their plain Lane, with no key tuple to
        # build and hash and no branch on what the call asked for.
        self._fast: dict[str | None, dict[str, Callable[[str | bytes, str | bytes | None], int]]]
        self._fast = {}
        # broker_ids that have had a report route: their calls report each message (_one_order)
        self._per_message: set[str] = set()
        self._lock = forksafe.lock()
        self.unknown_broker_id = 0
        self.rejected_after_close = 0
        self.rejected_producer_limit = 0
        self._unknown_log = RateLimitedLog(log, 10.0)
        self._evi: EventInterface | None = None
        self.closed = False
        self.spool: Spools | None = None
        if spool_dir is not None:
            self.spool = _make_spools(
                self, spool_dir, spool_max_bytes, spool_max_age, spool_fsync, spool_exclude
            )
            self.spool.max_total_bytes = _check_total(spool_max_total_bytes)
        _instances.add(self)

    def set_broker_ids(self, broker_ids: Iterable[str] | Mapping[str, KafkaSocket]) -> None:
        """Replace the broker_id definitions (a reload): all are checked first, so a bad entry
        changes nothing. IDs removed or changed stop taking messages; what they accepted is
        still flushed and reported. Takes ``[ID]socket`` strings or parsed ``{id: socket}``."""
        new = dict(broker_ids) if isinstance(broker_ids, Mapping) else _parse_broker_ids(broker_ids)
        with self._lock:
            old, self.brokers = self.brokers, new
            for (bid, route), lane in list(self._lanes.items()):
                if new.get(bid) != old.get(bid):
                    self._per_message.discard(bid)
                    del self._lanes[(bid, route)]
                    self._fast.get(route, {}).pop(bid, None)
                    if isinstance(lane, Lane):
                        self.pool.release(lane)
                    elif self.spool is not None:
                        self.spool.release(lane.spooled)

    # -- report routes -----------------------------------------------------------------------

    def report_route(self, name: str) -> Callable[[R], R]:
        """Decorator registering a report route under ``name``.

        >>> @ek.report_route("kafka_report")          # doctest: +SKIP
        ... def kafka_report(report): ...
        """

        def register(fn: R) -> R:
            self.add_report_route(name, fn)
            return fn

        return register

    def add_report_route(self, name: str, fn: Callable[[Report], object]) -> None:
        """Register (or replace) report route ``name``; it runs on its own thread."""
        if not name or not isinstance(name, str):
            raise ValueError("a report route needs a non-empty name")
        if not callable(fn):
            raise TypeError(f"report route {name!r} must be callable")
        with self._lock:
            self._routes[name] = fn
            # Lanes bound to the old callable must pick up the new one.
            for k in [k for k in self._lanes if k[1] == name]:
                del self._lanes[k]
            self._fast.pop(name, None)

    @property
    def report_routes(self) -> list[str]:
        return sorted(self._routes)

    # -- kafka_publish -----------------------------------------------------------------------

    def kafka_publish(
        self,
        broker_id: str,
        message: str | bytes | None,
        key: str | bytes | None = None,
        report_route: str | None = None,
        *,
        on_report: Callable[[Report], object] | None = None,
        tombstone: bool = False,
    ) -> int:
        """Publish ``message`` to ``broker_id``: 1 if queued for sending, -1 otherwise.

        Never blocks on the network. -1 means: unknown broker id, queue full (after
        ``queue_full_wait``), report backlog full, message over ``message.max.bytes``,
        producer in a fatal state, ``max_producers`` reached, closed, or (with a spool) the
        spool full or unwritable — each counted in :meth:`stats`. With a spool, 1 means the
        record is on disk; a full librdkafka queue then only delays it (never -1). An empty
        key is a null key, as in OpenSIPS. With ``report_route``,
        that route runs exactly once for this message with its
        :class:`~event_kafka.report.Report`. ``on_report`` is a per-message alternative (it
        runs on a worker thread shared by all ``on_report`` callbacks, so keep it short).

        ``message`` is ``str`` or ``bytes``; ``None`` is an error, not a null record. A
        tombstone (null value, which deletes ``key`` on a compacted topic) is explicit:
        ``kafka_publish(id, None, key, tombstone=True)`` with a non-empty ``key``.

        Raises:
            TypeError: ``message``/``key`` not ``str``/``bytes`` (``None`` message without
                ``tombstone=True``), ``broker_id``/``report_route`` not ``str``, or
                ``on_report`` not callable.
            ValueError: ``tombstone=True`` with a message or without a key.
            UnknownReportRouteError: ``report_route`` was never registered.
        """
        if on_report is None and tombstone is False and message is not None:
            # The common call. produce() takes str or bytes and raises TypeError for anything
            # else (enqueuing nothing): the checks below then name what was wrong.
            try:
                publish = self._fast[report_route][broker_id]
            except (KeyError, TypeError):  # no lane yet, or unhashable: the full path
                pass
            else:
                try:
                    if key:
                        return publish(message, key)
                    if key is None or isinstance(key, _TEXT):  # an empty key is a null key
                        return publish(message, None)
                except TypeError:
                    pass
        t = type(message)
        if (t is not bytes and t is not str) or tombstone:
            _check_message(message, key, tombstone)
        if key is not None and type(key) is not str and not isinstance(key, _TEXT):
            raise TypeError(f"kafka_publish: key must be str, bytes or None, not {_tn(key)}")
        try:
            lane = self._lanes.get((broker_id, report_route))
        except TypeError:  # unhashable: _new_lane names what is wrong
            lane = None
        if lane is None:
            lane = self._new_lane(broker_id, report_route)
            if lane is None:
                return -1
        if on_report is not None and not callable(on_report):
            raise TypeError(f"kafka_publish: on_report must be callable, not {_tn(on_report)}")
        return lane.publish(message, key or None, None, on_report)

    def _new_lane(self, broker_id: object, route_name: object) -> Lane | SpoolRoute | None:
        if type(broker_id) is not str:
            raise TypeError(f"kafka_publish: broker_id must be str, not {_tn(broker_id)}")
        if route_name is not None and type(route_name) is not str:
            raise TypeError(f"kafka_publish: report_route must be str, not {_tn(route_name)}")
        route: RouteWorker | None = None
        if route_name is not None:
            fn = self._routes.get(route_name)
            if fn is None:
                raise UnknownReportRouteError(
                    f"report route {mask_secrets(route_name)!r} is not defined "
                    f"(defined: {', '.join(self.report_routes) or 'none'})"
                )
            route = self.pool.route_worker(route_name, fn)
        sock = self.brokers.get(broker_id)
        if sock is None:
            self.unknown_broker_id += 1
            # A broker_id definition pasted here would show its password: masked.
            self._unknown_log.warning(
                "kafka_publish: unknown broker_id %r", mask_secrets(broker_id)
            )
            return None
        with self._lock:
            if self.closed:
                self.rejected_after_close += 1
                return None
            lane = self._lanes.get((broker_id, route_name))
            if lane is None:
                try:
                    if self.spool is not None and broker_id not in self.spool.exclude:
                        lane = self.spool.route_view(sock, BrokerOwner(broker_id), route_name)
                        self._lanes[(broker_id, route_name)] = lane
                        return lane
                    lane = self.pool.lane(sock, BrokerOwner(broker_id), route)
                except ProducerLimitError as exc:
                    self.rejected_producer_limit += 1
                    self._unknown_log.warning("kafka_publish to [%s]: %s", broker_id, exc)
                    return None
                self._lanes[(broker_id, route_name)] = lane
                if type(lane) is Lane:
                    self._one_order(broker_id, route_name, lane)
                    fast = lane.publish_plain if route is None else lane.publish_routed
                    self._fast.setdefault(route_name, {})[broker_id] = fast
            return lane

    def _one_order(self, broker_id: str, route_name: str | None, lane: Lane) -> None:
        """A broker_id's calls with and without a report route keep one order: once it has a
        route, all of them go through the handle that reports each message (under the lock,
        before ``lane`` is used)."""
        if route_name is None:
            if lane.quiet and broker_id in self._per_message:
                lane.report_each(0)
            return
        # Remembered, not looked up in _lanes: a replaced route drops its lanes from there
        # while their messages may still be in flight.
        self._per_message.add(broker_id)
        plain = self._lanes.get((broker_id, None))
        if isinstance(plain, Lane):
            h = plain.begin_handover()
            if h is not None and h.join(lane):
                h.advance()  # at once if nothing is in flight

    # -- Event Interface ---------------------------------------------------------------------

    @property
    def evi(self) -> EventInterface:
        """The Event Interface (events, subscribers, transports) of this instance."""
        if self._evi is None:
            from .event_interface import EventInterface

            with self._lock:
                if self._evi is None:
                    factories = None
                    if self.spool is not None:
                        from .transports.kafka import KafkaTransport

                        spool = self.spool
                        factories = {
                            "kafka": lambda ctx: KafkaTransport(
                                ctx.pool, event_header=ctx.event_header, spool=spool
                            )
                        }
                    self._evi = EventInterface(
                        self.pool, event_header=self.event_header, factories=factories
                    )
        return self._evi

    def publish_event(self, name: str) -> int:
        """Register event ``name`` (at most 64 bytes, printable: event_name.py); returns its id.
        Idempotent."""
        return self.evi.publish_event(name)

    def subscribe(self, event: str, socket: str, expire: int | None = None) -> bool:
        """Subscribe ``socket`` to ``event``.

        ``expire=None`` never expires (the script's ``subscribe_event``); seconds otherwise
        (the MI's default is 3600); ``0`` unsubscribes. An identical socket refreshes the
        existing subscriber instead of adding one. Returns True for a new subscriber.
        """
        return self.evi.subscribe(event, socket, expire=expire)

    def unsubscribe(self, event: str, socket: str) -> bool:
        """Remove the subscriber identical to ``socket``; True if there was one."""
        return self.evi.unsubscribe(event, socket)

    def list_events(self) -> list[EventInfo]:
        """Every published event, in id order."""
        return self.evi.list_events()

    def list_subscribers(self, event: str | None = None) -> list[EventSubscribers]:
        """Live subscribers of ``event`` (or of every event that has some)."""
        return self.evi.list_subscribers(event)

    def raise_event(self, event: str, params: Params = None, sip_msg: SipMsg = None) -> int:
        """Raise ``event`` to its subscribers; returns how many accepted it. Never blocks.

        ``sip_msg`` (raw SIP text/bytes, or a :class:`~event_kafka.sip.CallId`) gives the
        record key of ``key=callid`` Kafka subscribers.
        """
        return self.evi.raise_event(event, params, sip_msg)

    def raise_event_script(self, event: str, params: Params = None, sip_msg: SipMsg = None) -> int:
        """:meth:`raise_event` with the script's result: 1 if all subscribers accepted it
        (or there are none), -1 otherwise."""
        return self.evi.raise_event_script(event, params, sip_msg)

    # -- statistics and lifecycle ------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters per broker id, per producer, per report route (and per event)."""
        pool = self.pool.stats()
        per_id = group((ln.owner, ln.counters) for ln in pool["lanes"])
        out: dict[str, Any] = {
            "broker_ids": {
                bid: per_id.get(BrokerOwner(bid), LaneCounters()).as_dict() for bid in self.brokers
            },
            "unknown_broker_id": self.unknown_broker_id,
            "rejected_after_close": self.rejected_after_close,
            "rejected_producer_limit": self.rejected_producer_limit,
            **pool,
        }
        if self._evi is not None:
            out["events"] = self._evi.stats()
        if self.spool is not None:
            out["spool"] = self.spool.stats()
            out["spool_left"] = self.spool.left  # records close() left in the spool
        return out

    def in_flight(self) -> int:
        """Accepted messages whose report has not run yet (report routes included)."""
        lanes = sum(ln.stats.in_flight for ln in self.pool.lanes)
        return lanes + sum(w.pending for w in self.pool.workers())

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` until every accepted message was reported; returns how many
        are still in flight (with a spool: also those waiting in it, a previous process's
        included). It keeps accepting meanwhile.

        It blocks on conditions (deliveries, then report routes), which releases the GIL and
        so lets the delivery and report-route threads run even in hosts whose calling thread
        otherwise never releases it (Kamailio 5.6 workers between requests): call it before a
        planned stop of such a host.
        """
        deadline = time.monotonic() + timeout
        spool = self.spool
        if spool is not None:
            # Records left on disk by a previous process count once they are adopted.
            spool.wait_adopted(deadline)
        while True:
            # Records changing hands (a reload's old lane to the new one) are in no lane; read
            # before the lanes: a hand-over counts in the lanes before it leaves unsettled().
            moving = spool.unsettled() if spool is not None else 0
            left = self.in_flight()
            if moving and not left and time.monotonic() < deadline:
                time.sleep(0.005)  # the sender thread finishes the hand-over shortly
                continue
            left += moving
            if left == 0 or time.monotonic() >= deadline:
                if spool is not None:
                    spool.sync()  # a kill right after flush() re-reports nothing it reported
                return left
            # Routes may publish again from their reports: hence the loop.
            self.pool.wait_delivered(max(deadline - time.monotonic(), 0.0))
            for w in self.pool.workers():
                w.drain(max(deadline - time.monotonic(), 0.0))

    def close(self, timeout: float | None = None) -> int:
        """Stop accepting, flush for ``timeout`` (default ``flush_timeout``), then fail the rest.

        Every message still undelivered gets a failure report ("not delivered before
        shutdown"). Returns how many that were. Report routes get one more second to run the
        reports still queued; a route still stuck after that is left running on its own.

        With a spool (``spool_dir``), what is not delivered within ``timeout`` is left in the
        spool with no report (the next ``EventKafka`` on that directory delivers it); the
        count returned includes those records.

        Safe to call more than once, and from inside a report route or ``on_report``: there
        it flushes and fails the rest as above but does not wait for the calling route's
        own queue (it cannot run while the caller is in it); those reports run after the
        callback returns. A later ``close()`` from another thread (and the exit handler)
        waits up to ``timeout`` for them.
        """
        with self._lock:
            already, self.closed = self.closed, True
        if already:
            done = self.pool.wait_closed(self.flush_timeout if timeout is None else timeout)
            if done:
                _instances.discard(self)
            return 0
        left = 0
        if self.spool is not None:
            # Spooled records are not failed at the deadline: what is not delivered by then
            # stays in the spool (no report) for the next process; the pool then has nothing
            # of theirs left to purge.
            t = self.flush_timeout if timeout is None else timeout
            deadline = time.monotonic() + t
            self.spool.wait_adopted(deadline)
            self.spool.stop_accepting()
            while time.monotonic() < deadline and not self.pool.wait_delivered(
                max(deadline - time.monotonic(), 0.0)
            ):
                pass
            left = self.spool.close(deadline)
            timeout = max(deadline - time.monotonic(), 0.0)
        # The pool first: it flushes every producer, event subscribers' included; closing the
        # Event Interface afterwards only releases lanes of an already flushed pool.
        left += self.pool.close(timeout)
        if self._evi is not None:
            self._evi.close()
        if not self.pool.wait_closed(0):
            return left  # stays registered: the exit handler waits for the rest
        _instances.discard(self)
        return left

    def __enter__(self) -> EventKafka:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _make_spools(
    ek: EventKafka,
    spool_dir: str | os.PathLike[str],
    max_bytes: int,
    max_age: float | None,
    fsync: FsyncPolicy,
    exclude: Iterable[str],
) -> Spools:
    # Imported here: without a spool, none of it is loaded.
    from .spool import SpoolSettings
    from .spool.lane import Spools

    if isinstance(exclude, str):
        raise TypeError("spool_exclude must be a collection of broker_ids, not a str")
    spools = Spools(
        Path(spool_dir),
        SpoolSettings(max_bytes=max_bytes, max_age=max_age, fsync=fsync),
        ek.pool,
        ek._routes.get,
        ek.flush_timeout,
        exclude,
    )
    spools.replay_existing(ek.brokers)
    return spools


def _check_total(value: object) -> int | None:
    if value is not None and (type(value) is not int or value <= 0):
        raise ConfigError(f"spool_max_total_bytes must be None or a positive int, not {value!r}")
    return value


def _check_message(message: object, key: object, tombstone: object) -> None:
    if tombstone is not False and tombstone is not True:
        raise TypeError(f"kafka_publish: tombstone must be a bool, not {_tn(tombstone)}")
    if tombstone:
        if message is not None:
            raise ValueError("kafka_publish: a tombstone has no message: pass None")
        if not key:
            raise ValueError("kafka_publish: a tombstone needs a non-empty key")
        return
    if message is None:
        raise TypeError(
            "kafka_publish: message must be str or bytes, not None "
            "(a null-value record is a tombstone: pass tombstone=True)"
        )
    if not isinstance(message, str | bytes):
        raise TypeError(f"kafka_publish: message must be str or bytes, not {_tn(message)}")


def _tn(value: object) -> str:
    return type(value).__name__


def _parse_broker_ids(entries: Iterable[str]) -> dict[str, KafkaSocket]:
    brokers: dict[str, KafkaSocket] = {}
    for entry in entries:
        bid, sock = parse_broker_id(entry)
        if bid in brokers:
            raise ConfigError(f"Broker ID [{bid}] already defined")
        brokers[bid] = sock
    return brokers
