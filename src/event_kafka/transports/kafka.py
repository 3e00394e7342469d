"""``kafka:`` — publish each event as one Kafka record (OpenSIPS event_kafka).

Socket: ``kafka:brokers/topic[?g.<prop>=v&t.<prop>=v&key=callid]``, parsed and checked by
:func:`~event_kafka.kafka_socket.parse_socket` at subscribe time.

Record produced for an event:

* **topic**: the socket's topic;
* **value**: the OpenSIPS JSON-RPC notification, byte for byte (§5.2);
* **key**: with ``key=callid``, the Call-ID of the SIP message the event was raised for;
  otherwise (or with no SIP message / no Call-ID) no key. With ``key=param:<name>`` (an
  event-kafka extension), the value of the first named event parameter ``<name>`` as UTF-8
  (an int as its decimal text); no such parameter, positional params, ``null`` or ``""``: no key;
* **headers**: ``event`` = the event name (UTF-8), so consumers of a topic shared by several
  events can route without parsing the value. OpenSIPS writes no headers: with
  ``event_header=False`` (``EventKafka(event_header=False)``, service ``[events]
  event_header = false``) there are none, and records are exactly OpenSIPS's;
* **partition**: librdkafka's partitioner (by key when there is one).

Match: equal sockets (brokers, topic, properties, ``key=callid``). Print: ``brokers/topic``
(properties are never shown). Subscribers whose sockets share brokers and properties share one
producer of the :class:`~event_kafka.producer.ProducerPool`; the producer is acquired on the
first event (lane owner = the event name) and given back when the subscriber goes — the last
user's departure flushes and closes it in the background.

``send`` returns ``True`` when the record was accepted into the producer queue; delivery
results are in the pool's lane statistics.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .. import forksafe
from ..kafka_socket import PREFIX, KafkaSocket, parse_socket
from ..payload import Params
from ..producer import Lane, ProducerLimitError, ProducerPool
from ..ratelimit import RateLimitedLog
from ..statistics import EventOwner, group
from .base import Destination, Transport

if TYPE_CHECKING:
    from ..spool.lane import SpooledLane, Spools

__all__ = ["EVENT_HEADER", "KafkaDestination", "KafkaTransport", "param_key"]

_log = RateLimitedLog(logging.getLogger("event_kafka.transports.kafka"), 10.0)

EVENT_HEADER = "event"
"""Name of the record header carrying the event name."""


def param_key(params: Params, name: str) -> bytes | None:
    """The record key of ``key=param:<name>``: the first parameter called ``name``.

    Example::

        >>> param_key({"callid": "a84b@pc33", "duration": 118}, "callid")
        b'a84b@pc33'
        >>> param_key([("ip", "10.0.0.1")], "callid") is None
        True
    """
    value: object = None
    if isinstance(params, Mapping):
        value = params.get(name)
    elif params is not None and not isinstance(params, str | bytes):
        for item in params:
            if isinstance(item, tuple) and len(item) == 2 and item[0] == name:
                value = item[1]
                break
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        return None
    return str(value).encode()


class KafkaTransport(Transport):
    """The ``kafka`` transport.

    Example::

        >>> t = KafkaTransport(ProducerPool())                   # doctest: +SKIP
        >>> d = t.parse("127.0.0.1:9092/sip?key=callid")          # doctest: +SKIP
        >>> d.print(), d.needs_callid                             # doctest: +SKIP
        ('127.0.0.1:9092/sip', True)

    Args:
        pool: the producer pool to share; ``None`` creates one on first use, owned (and
            closed) by this transport.
        event_header: add the ``event`` header to every record (``False``: no headers).
        spool: the durable spool of the ``EventKafka`` (:mod:`event_kafka.spool.lane`):
            every record is written there first; ``send`` is true once it is.
    """

    scheme = "kafka"

    def __init__(
        self,
        pool: ProducerPool | None = None,
        *,
        event_header: bool = True,
        spool: Spools | None = None,
    ) -> None:
        self.event_header = event_header
        self.spool = spool
        self._pool = pool
        self._owns_pool = pool is None
        self._lock = forksafe.lock()
        # By identity: equal destinations (one socket, two events) are counted apart.
        self._dests: weakref.WeakValueDictionary[int, KafkaDestination] = (
            weakref.WeakValueDictionary()
        )

    @property
    def pool(self) -> ProducerPool:
        """The producer pool destinations take their lanes from."""
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ProducerPool()
                pool = self._pool
        return pool

    def parse(self, text: str) -> KafkaDestination:
        dest = KafkaDestination(self, parse_socket(PREFIX + text))
        self._dests[id(dest)] = dest
        return dest

    def close(self) -> None:
        if self._owns_pool and self._pool is not None:
            self._pool.close()

    def stats(self) -> dict[str, object]:
        """Lane counters (:class:`~event_kafka.statistics.LaneCounters` as dicts) summed per
        ``kafka:brokers/topic``, over subscribers that have sent at least one event."""
        dests = list(self._dests.values())
        sums = group((f"kafka:{d.print()}", d.lane.stats) for d in dests if d.lane is not None)
        return {k: c.as_dict() for k, c in sums.items()}


class KafkaDestination(Destination):
    """A Kafka subscriber: a parsed :class:`~event_kafka.kafka_socket.KafkaSocket` plus its
    lane, acquired on first send."""

    __slots__ = (
        "__weakref__", "_claimed", "_closed", "_event", "_headers", "_lane", "_lock",
        "needs_callid", "socket", "transport",
    )  # fmt: skip

    def __init__(self, transport: KafkaTransport, socket: KafkaSocket) -> None:
        self.transport = transport
        self.socket = socket
        self._lane: Lane | SpooledLane | None = None
        self._event = ""
        self._headers: list[tuple[str, bytes]] = []
        self._closed = False
        self._claimed = False
        self._lock = forksafe.lock()
        self.needs_callid = socket.key_callid

    @property
    def lane(self) -> Lane | SpooledLane | None:
        """The producer lane, once the first event was sent."""
        return self._lane

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KafkaDestination) and other.socket == self.socket

    def __hash__(self) -> int:
        return hash(self.socket)

    def print(self) -> str:
        return self.socket.address

    def send(self, payload: bytes, event: str, params: Params, key: bytes | None) -> bool:
        lane = self._lane
        if lane is None:
            lane = self._open(event)
            if lane is None:
                return False
        if event != self._event:
            # Only on the first event: an instance serves one event (see Destination).
            if self.transport.event_header:
                self._headers = [(EVENT_HEADER, event.encode())]
            self._event = event
        if self.socket.key_param is not None:
            key = param_key(params, self.socket.key_param)
        return lane.publish(payload, key, self._headers or None) == 1

    def admit(self) -> None:
        """Reserve this subscriber's producer slot (the pool's ``max_producers``)."""
        self.transport.pool.claim(self.socket.producer_key)
        self._claimed = True

    def subscribed(self, event: str) -> None:
        """Now a subscriber of ``event``: with a spool, records a previous process left in
        its directory are replayed from now on (not only from the first event)."""
        spool = self.transport.spool
        if spool is None or self._lane is not None:
            return
        with self._lock:
            if self._lane is None and not self._closed:
                try:
                    self._lane = spool.replay_subscriber(self.socket, EventOwner(event))
                except (ProducerLimitError, RuntimeError) as exc:
                    _log.error("kafka:%s: %s", self.print(), exc)

    def _open(self, event: str) -> Lane | SpooledLane | None:
        with self._lock:
            if self._lane is None and not self._closed:
                spool = self.transport.spool
                try:
                    if spool is not None:
                        self._lane = spool.lane(self.socket, EventOwner(event))
                    else:
                        self._lane = self.transport.pool.lane(self.socket, EventOwner(event))
                except (ProducerLimitError, RuntimeError) as exc:
                    _log.error("kafka:%s: %s", self.print(), exc)
                    self._closed = True  # refused for good: later sends count as failed
            return self._lane

    def close(self) -> None:
        with self._lock:
            self._closed = True
            lane, self._lane = self._lane, None
            claimed, self._claimed = self._claimed, False
        if lane is not None:
            spool = self.transport.spool
            if spool is None:
                self.transport.pool.release(lane)  # type: ignore[arg-type]
            else:
                spool.release(lane)  # type: ignore[arg-type]
        if claimed:
            self.transport.pool.unclaim(self.socket.producer_key)

    def __repr__(self) -> str:
        return f"KafkaDestination({self.socket})"
