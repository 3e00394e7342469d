"""The Event Interface (EVI): published events, their subscribers, and raising events.

The same model as OpenSIPS's ``evi/event_interface.c`` (spec §5, §6), with the decisions of
§9: events are published by name (at most 64 bytes, ids 0, 1, ... in publish order); a
subscriber is an event plus a socket ``<transport>:<address>`` and an optional expiry;
raising an event builds the JSON-RPC notification once and hands it to every live subscriber,
newest first, through its transport (:mod:`event_kafka.transports`).

Subscription rules:

* Sockets that denote the same destination (the transport's *match*) are the same
  subscriber: subscribing again refreshes its subscription time, it never adds a duplicate.
* ``expire`` (seconds): ``None`` never expires (OpenSIPS script ``subscribe_event``); ``0``
  unsubscribes (OpenSIPS MI ``event_subscribe``, which defaults to 3600 — the MI layer passes
  that explicitly). Refreshing with ``expire=None`` keeps the subscriber's previous expiry, as
  OpenSIPS does.
* A subscriber is expired when ``subscription_time + expire < now`` (wall-clock seconds). It
  is removed lazily (when its event is raised, when subscribers are listed) and by a timer
  thread that runs every ``expiry_interval`` seconds once an expiring subscription exists.
  Removal closes the destination (a Kafka subscriber gives its producer lane back).

Example::

    evi = EventInterface(pool)
    evi.publish_event("E_CALL_START")
    evi.subscribe("E_CALL_START", "kafka:127.0.0.1:9092/calls?key=callid")
    evi.subscribe("E_CALL_START", "udp:127.0.0.1:8888", expire=3600)
    n = evi.raise_event("E_CALL_START", {"caller": "alice"}, sip_msg=invite_text)  # 2
    rc = evi.raise_event_script("E_CALL_START", {"caller": "bob"})  # 1 (all) or -1
    evi.close()

Records sent to Kafka subscribers carry a header ``event`` = the event name; see
:mod:`event_kafka.transports.kafka`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from . import forksafe
from .errors import EventKafkaError
from .event_name import MAX_EVENT_NAME, EventNameError, check_event_name, event_name_problem
from .events import (
    INF,
    Event,
    EventInfo,
    EventStats,
    EventSubscribers,
    Subscriber,
    SubscriberInfo,
    UnknownEventError,
    subscriber_info,
)
from .kafka_socket import using_policy
from .payload import Params, build_payload
from .properties import PropertyPolicy
from .ratelimit import RateLimitedLog
from .sip import key_for
from .transports import (
    BUILTIN_TRANSPORTS,
    Transport,
    TransportContext,
    TransportFactory,
    split_socket,
)
from .transports import check_scheme as _check_scheme
from .transports.base import Destination

if TYPE_CHECKING:
    from .producer import ProducerPool

__all__ = [
    "MAX_EVENT_NAME",
    "EventInfo",
    "EventInterface",
    "EventNameError",
    "EventStats",
    "EventSubscribers",
    "SubscriberInfo",
    "UnknownEventError",
]

log = logging.getLogger("event_kafka.event_interface")


class EventInterface:
    """Published events and their subscribers; raises events to every subscriber.

    Example::

        >>> evi = EventInterface()
        >>> evi.publish_event("E_PIKE_BLOCKED")
        0
        >>> evi.subscribe("E_PIKE_BLOCKED", "udp:127.0.0.1:8888", expire=3600)
        True
        >>> evi.subscribe("E_PIKE_BLOCKED", "udp:127.0.0.1:8888", expire=3600)  # a refresh
        False
        >>> evi.raise_event("E_PIKE_BLOCKED", {"ip": "192.168.2.11"})
        1
        >>> evi.close()

    Thread-safe: subscriptions change under a lock; ``raise_event`` takes no lock (it reads an
    immutable snapshot of the subscribers) unless an expired subscriber must be removed.

    Args:
        pool: the producer pool Kafka subscribers use (shared with ``kafka_publish``);
            ``None``: the Kafka transport creates and owns one.
        transports: transport instances to use instead of the built-in ones for their
            schemes (e.g. ``[TcpTransport(reliable=True)]``); closed by :meth:`close`.
        factories: more transport factories by scheme, beside (or replacing)
            :data:`~event_kafka.transports.BUILTIN_TRANSPORTS`; each is called once, when
            a socket first names its scheme (see also :meth:`register_transport`).
        clock: wall-clock seconds (``time.time``), injectable for tests.
        expiry_interval: seconds between timer sweeps of expired subscribers; ``0`` or less
            disables the timer (removal is then only lazy, as in OpenSIPS).
        event_header: ``kafka:`` records carry an ``event`` header with the event name;
            ``False``: no headers, records exactly as OpenSIPS writes them.
    """

    def __init__(
        self,
        pool: ProducerPool | None = None,
        *,
        transports: Iterable[Transport] = (),
        factories: Mapping[str, TransportFactory] | None = None,
        clock: Callable[[], float] = time.time,
        expiry_interval: float = 1.0,
        event_header: bool = True,
    ) -> None:
        self._context = TransportContext(pool, event_header)
        self._transports: dict[str, Transport] = {t.scheme: t for t in transports}
        self._factories: dict[str, TransportFactory] = dict(BUILTIN_TRANSPORTS)
        for scheme, factory in (factories or {}).items():
            self._factories[_check_scheme(scheme)] = factory
        self._clock = clock
        self._expiry_interval = expiry_interval
        self._events: dict[str, Event] = {}
        self._lock = forksafe.rlock()
        self._timer: threading.Thread | None = None
        self._timer_stop = forksafe.event()
        self._closed = False
        self._log = RateLimitedLog(log, 10.0)
        forksafe.register(self)

    def register_transport(
        self, scheme: str, factory: TransportFactory, *, replace: bool = False
    ) -> None:
        """Make this interface's sockets ``<scheme>:...`` use the transport ``factory`` makes.

        Only this instance: ``evi.register_transport("list", lambda ctx: ListTransport())``.
        The factory is called once, with a :class:`~event_kafka.transports.TransportContext`,
        when a socket first names the scheme.

        Raises:
            ValueError: a bad scheme (empty, with ``:``), or one this interface knows
                already (a built-in, injected or registered one) and ``replace`` is false.
        """
        _check_scheme(scheme)
        with self._lock:
            known = scheme in self._factories or scheme in self._transports
            if known and not replace:
                raise ValueError(f"transport {scheme!r} is already registered")
            self._factories[scheme] = factory

    def transport_schemes(self) -> list[str]:
        """The schemes this interface knows (built-in, injected, registered), sorted."""
        with self._lock:
            return sorted(self._factories.keys() | self._transports.keys())

    # -- events ------------------------------------------------------------------------------

    def publish_event(self, name: str) -> int:
        """Register event ``name``; return its id (the existing id if already published).

        Example: ``evi.publish_event("E_MY_EVENT")`` → ``0`` for the first event.

        Raises:
            EventNameError: empty, longer than 64 bytes of UTF-8, not printable (event_name.py).
        """
        _check_event_name(name)
        with self._lock:
            ev = self._events.get(name)
            if ev is None:
                ev = self._events[name] = Event(name, len(self._events))
            return ev.id

    def event_id(self, name: str) -> int:
        """The id of a published event. Raises :class:`UnknownEventError`."""
        return self._event(name).id

    def list_events(self) -> list[EventInfo]:
        """Every published event, in id order (MI ``events_list``)."""
        with self._lock:
            return [EventInfo(ev.name, ev.id) for ev in self._events.values()]

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(
        self,
        event: str,
        socket: str,
        expire: int | None = None,
        *,
        policy: PropertyPolicy | None = None,
    ) -> bool:
        """Subscribe ``socket`` to ``event``, refresh an identical subscriber, or unsubscribe.

        Example::

            evi.subscribe("E_ACC_CDR", "kafka:10.0.0.5:9092/cdr?t.acks=all")   # never expires
            evi.subscribe("E_ACC_CDR", "tcp:10.0.0.7:8090/cdr", expire=3600)    # MI style
            evi.subscribe("E_ACC_CDR", "tcp:10.0.0.7:8090/cdr", expire=0)       # unsubscribes

        Args:
            event: a published event.
            socket: ``<transport>:<address>``; the transport name is case-sensitive.
            expire: seconds; ``None`` = never (a refresh keeps the previous expiry);
                ``0`` = unsubscribe.
            policy: the librdkafka properties the socket's source may set; ``None``: trusted
                (the caller's own code). Pass an untrusted policy for sockets from outside
                (:func:`~event_kafka.properties.untrusted_policy`).

        Returns:
            ``True`` if a new subscriber was added; ``False`` for a refresh or an unsubscribe.

        Raises:
            UnknownEventError: ``event`` was not published.
            SocketError: unknown transport or a socket the transport rejects.
            ValueError: a negative or non-int ``expire``.
            RuntimeError: the Event Interface is closed.
            ProducerLimitError: a Kafka subscriber would need a producer beyond the pool's
                ``max_producers`` (a ``RuntimeError``).
        """
        if expire is not None and (type(expire) is not int or expire < 0):
            raise ValueError(f"expire must be None or an int >= 0, not {expire!r}")
        ev = self._event(event)
        scheme, dest = self._parse(socket, policy)  # outside the lock: it may resolve a host
        if expire == 0:
            self._remove(ev, scheme, dest)
            return False
        now = self._clock()
        with self._lock:
            if self._closed:
                raise RuntimeError("the Event Interface is closed")
            sub = ev.index.get((scheme, dest))
            if sub is not None:
                sub.since = now
                if expire is not None:
                    sub.expire = expire
                ev.set_subs(ev.subs)  # the deadline moved
            else:
                dest.admit()  # may refuse (e.g. max_producers): nothing changed yet
                sub = ev.index[(scheme, dest)] = Subscriber(scheme, dest, expire, now)
                ev.set_subs((sub, *ev.subs))
            if sub.expire is not None:
                self._ensure_timer()
        if sub.dest is not dest:
            dest.close()  # the duplicate just parsed
            return False
        subscribed = getattr(dest, "subscribed", None)
        if subscribed is not None:
            subscribed(event)  # e.g. a spooled kafka: subscriber starts its replay now
        return True

    def unsubscribe(self, event: str, socket: str) -> bool:
        """Remove the subscriber of ``event`` matching ``socket``; ``True`` if there was one.

        Raises:
            UnknownEventError, SocketError: as :meth:`subscribe`.
        """
        ev = self._event(event)
        scheme, dest = self._parse(socket)
        return self._remove(ev, scheme, dest)

    def list_subscribers(self, event: str | None = None) -> list[EventSubscribers]:
        """Live subscribers (expired ones are removed first), newest first.

        Args:
            event: ``None``: every event that has subscribers (MI ``subscribers_list``);
                a name: that event only, even without subscribers (a one-element list).

        Raises:
            UnknownEventError: ``event`` was not published.
        """
        if event is None:
            with self._lock:
                events = list(self._events.values())
        else:
            events = [self._event(event)]
        now = self._clock()
        out = []
        for ev in events:
            self._purge(ev, now)
            subs = tuple(subscriber_info(s, now) for s in ev.subs)
            if subs or event is not None:
                out.append(EventSubscribers(ev.name, ev.id, subs))
        return out

    def find_subscriber(
        self, event: str, socket: str, *, policy: PropertyPolicy | None = None
    ) -> SubscriberInfo | None:
        """The live subscriber of ``event`` matching ``socket``, or ``None``
        (MI ``subscribers_list event socket``).

        Raises:
            UnknownEventError, SocketError: as :meth:`subscribe`.
        """
        ev = self._event(event)
        scheme, dest = self._parse(socket, policy)
        dest.close()
        now = self._clock()
        self._purge(ev, now)
        sub = ev.index.get((scheme, dest))
        return None if sub is None else subscriber_info(sub, now)

    def subscriber_count(self, event: str) -> int:
        """How many subscribers ``event`` has now (expired ones not yet removed included)."""
        return len(self._event(event).subs)

    def purge_expired(self) -> int:
        """Remove every expired subscriber now; return how many. The timer calls this."""
        now = self._clock()
        with self._lock:
            events = list(self._events.values())
        return sum(self._purge(ev, now) for ev in events if ev.snap[2] < now)

    # -- raising -----------------------------------------------------------------------------

    def raise_event(
        self, event: str, params: Params = None, sip_msg: str | bytes | None = None
    ) -> int:
        """Send ``event`` to every live subscriber; return how many accepted it.

        Never blocks on the network: each transport only queues (Kafka producer queue, TCP
        sender queue) or does a non-blocking ``sendto`` (UDP). OpenSIPS script semantics
        (1 = every subscriber accepted it, or there is none; -1 otherwise) are
        :meth:`raise_event_script`.

        Example::

            n = evi.raise_event("E_PIKE_BLOCKED", {"ip": "192.168.2.11"})
            n = evi.raise_event("E_CALL_START", [("callid", cid)], sip_msg=invite_bytes)

        Args:
            event: a published event.
            params: named (mapping or ``(name, value)`` pairs) or positional (sequence)
                params; see :func:`~event_kafka.payload.build_payload`.
            sip_msg: the SIP message the event is about — raw text or bytes, or a
                :class:`~event_kafka.sip.CallId` — for ``key=callid`` Kafka subscribers;
                ``None``: no SIP context, no key. It is parsed only when a subscriber of
                the event needs the Call-ID.

        Raises:
            UnknownEventError: ``event`` was not published.
            SipMessageError: ``sip_msg`` is malformed (raised before anything is sent).
            TypeError, ValueError: bad ``params`` (before anything is sent; only checked
                when the event has subscribers).
        """
        return self._dispatch(event, params, sip_msg, None)[0]

    def raise_event_script(
        self, event: str, params: Params = None, sip_msg: str | bytes | None = None
    ) -> int:
        """:meth:`raise_event` with OpenSIPS script semantics: ``1`` if every subscriber
        accepted the event (or there is none), ``-1`` otherwise. Same exceptions."""
        n, total = self._dispatch(event, params, sip_msg, None)
        return 1 if n == total else -1

    def raise_payload(
        self, event: str, payload: bytes, params: Params = None, sip_msg: str | bytes | None = None
    ) -> tuple[int, int]:
        """Raise with ``payload`` already built and sent as is (ingest: the bytes OpenSIPS
        sent); ``params`` serve transports that rebuild it (``tcp:`` with ``/method`` or
        reliable mode). Returns ``(accepted, subscribers)``."""
        return self._dispatch(event, params, sip_msg, payload)

    def _dispatch(
        self, event: str, params: Params, sip_msg: str | bytes | None, payload: bytes | None
    ) -> tuple[int, int]:
        ev = self._events.get(event) if type(event) is str else self._event(event)
        if ev is None:
            raise _unknown(event)
        if sip_msg is not None and not isinstance(sip_msg, str | bytes):
            raise TypeError(f"sip_msg must be str, bytes, CallId or None, not {_tn(sip_msg)}")
        senders, needs_callid, deadline = ev.snap
        if deadline != INF and deadline < self._clock():
            self._purge(ev, self._clock())
            senders, needs_callid, deadline = ev.snap
        if not senders:
            if params is not None and type(params) is not dict and type(params) is not list:
                _check_params_type(params)  # wrong even when nobody listens (yet)
            ev.raised += 1
            return 0, 0
        key = key_for(sip_msg) if needs_callid and sip_msg is not None else None
        if payload is None:
            payload = build_payload(event, params)
        ev.raised += 1  # only now: a malformed SIP message or bad params raised nothing
        n = 0
        for send, wants_key in senders:
            try:
                n += send(payload, event, params, key if wants_key else None)
            except Exception as exc:  # a transport bug must not cost the other subscribers
                self._log.error("event %s: a subscriber's send raised %r", event, exc)
        ev.accepted += n
        ev.failed += len(senders) - n
        return n, len(senders)

    # -- monitoring and life cycle -----------------------------------------------------------

    def stats(self) -> dict[str, EventStats]:
        """Counters per event, in id order."""
        with self._lock:
            events = list(self._events.values())
        return {
            ev.name: EventStats(ev.name, ev.id, len(ev.subs), ev.raised, ev.accepted, ev.failed)
            for ev in events
        }

    def transport_stats(self) -> dict[str, dict[str, object]]:
        """Each transport in use: its own counters (see the transport modules)."""
        with self._lock:
            transports = dict(self._transports)
        return {scheme: t.stats() for scheme, t in sorted(transports.items())}

    def close(self) -> None:
        """Close the transports (flushing what they queued), then remove every subscriber
        (closing its destination) and stop the timer. Events stay published; raising them
        reaches nobody. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._timer_stop.set()
            timer, self._timer = self._timer, None
            subs = [s for ev in self._events.values() for s in ev.subs]
            for ev in self._events.values():
                ev.index.clear()
                ev.set_subs(())
            transports = list(self._transports.values())
        # Transports first: they flush while every destination still holds its resources
        # (a Kafka producer whose lanes were all given back would be flushed in the
        # background instead, and a process exiting right after close() would lose it).
        for t in transports:
            try:
                t.close()
            except Exception as exc:
                log.error("closing transport %s: %r", t.scheme, exc)
        for sub in subs:
            _close(sub.dest)
        if timer is not None and timer is not threading.current_thread():
            timer.join(5.0)

    def __enter__(self) -> EventInterface:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _event(self, name: str) -> Event:
        if not isinstance(name, str):
            raise TypeError(f"event must be str, not {_tn(name)}")
        ev = self._events.get(name)
        if ev is None:
            raise _unknown(name)
        return ev

    def _parse(self, socket: str, policy: PropertyPolicy | None = None) -> tuple[str, Destination]:
        with self._lock:
            known = self._factories.keys() | self._transports.keys()
        scheme, address = split_socket(socket, known)
        transport = self._transport(scheme)
        with using_policy(policy):  # what the kafka transport's parse_socket applies
            return scheme, transport.parse(address)

    def _transport(self, scheme: str) -> Transport:
        t = self._transports.get(scheme)
        if t is not None:
            return t
        with self._lock:
            if self._closed:
                raise RuntimeError("the Event Interface is closed")
            t = self._transports.get(scheme)
            if t is None:
                t = self._transports[scheme] = self._factories[scheme](self._context)
            return t

    def _remove(self, ev: Event, scheme: str, dest: Destination) -> bool:
        with self._lock:
            sub = ev.index.pop((scheme, dest), None)
            if sub is not None:
                ev.set_subs(tuple(s for s in ev.subs if s is not sub))
        dest.close()
        if sub is None:
            return False
        _close(sub.dest)
        return True

    def _purge(self, ev: Event, now: float) -> int:
        """Remove ``ev``'s subscribers expired at ``now``; closes them outside the lock."""
        if ev.snap[2] >= now:
            return 0
        with self._lock:
            gone = [s for s in ev.subs if s.deadline < now]
            if gone:
                for s in gone:
                    del ev.index[(s.scheme, s.dest)]
                ev.set_subs(tuple(s for s in ev.subs if s.deadline >= now))
            if self._timer is None and ev.snap[2] != INF:
                self._ensure_timer()  # e.g. in a forked child, whose timer is gone
        for s in gone:
            _close(s.dest)
        return len(gone)

    def _ensure_timer(self) -> None:
        # Under the lock. The thread holds only a weak reference, so an Event Interface
        # dropped without close() is still collected (and its thread ends).
        if self._timer is not None or self._closed or self._expiry_interval <= 0:
            return
        self._timer_stop = stop = forksafe.event()
        self._timer = threading.Thread(
            target=_expiry_loop,
            args=(weakref.ref(self), stop, self._expiry_interval),
            name="ek-evi-expiry",
            daemon=True,
        )
        self._timer.start()

    def _after_fork_in_child(self) -> None:
        # The parent's timer thread does not exist here (forksafe released the lock): the
        # timer restarts on the next purge or expiring subscription.
        self._timer = None
        self._timer_stop = forksafe.event()


def _expiry_loop(
    ref: weakref.ReferenceType[EventInterface], stop: threading.Event, interval: float
) -> None:
    while not stop.wait(interval):
        evi = ref()
        if evi is None:
            return
        try:
            evi.purge_expired()
        except Exception as exc:  # keep the timer alive whatever a transport does
            log.error("expiry timer: %r", exc)
        del evi


def _close(dest: Destination) -> None:
    try:
        dest.close()
    except Exception as exc:
        log.error("closing subscriber %r: %r", dest, exc)


def _check_event_name(name: object) -> None:
    check_event_name(name)  # the one rule (event_name.py), shared with config, MI and ingest


def _unknown(name: object) -> EventKafkaError:
    # Only on the not-found path: a published name is valid by construction.
    problem = event_name_problem(name)
    return EventNameError(problem) if problem is not None else UnknownEventError(str(name))


def _tn(value: object) -> str:
    return type(value).__name__


def _check_params_type(params: object) -> None:
    # The shallow check only: the values are checked when a payload is built.
    if isinstance(params, str | bytes | bytearray) or not isinstance(params, Mapping | Sequence):
        raise TypeError(
            "params must be a mapping, a sequence of (name, value) tuples, a sequence of "
            f"values or None, not {_tn(params)}"
        )
