"""Published events and their subscribers, as records.

What the Event Interface (:mod:`event_kafka.event_interface`) holds — an :class:`Event` with
its :class:`Subscriber` s and the lock-free snapshot ``raise_event`` reads — and the values it
hands out: :class:`EventInfo`, :class:`SubscriberInfo`, :class:`EventSubscribers` (what the MI
lists print) and :class:`EventStats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import EventKafkaError
from .kafka_socket import mask_secrets
from .transports.base import Destination, SendFunction

__all__ = [
    "EMPTY",
    "INF",
    "Event",
    "EventInfo",
    "EventStats",
    "EventSubscribers",
    "Snapshot",
    "Subscriber",
    "SubscriberInfo",
    "UnknownEventError",
    "subscriber_info",
]

INF = math.inf


class UnknownEventError(EventKafkaError, LookupError):
    """The event was never published ("Event not published").

    Attributes:
        event: the name asked for.
    """

    def __init__(self, event: str) -> None:
        # Masked: a broker_id definition pasted as an event name would show its password.
        super().__init__(f"Event not published: {mask_secrets(event)!r}")
        self.event = event


@dataclass(frozen=True, slots=True)
class EventInfo:
    """A published event, as MI ``events_list`` shows it."""

    name: str
    id: int

    def to_mi(self) -> dict[str, object]:
        """``{"name": ..., "id": ...}``."""
        return {"name": self.name, "id": self.id}


@dataclass(frozen=True, slots=True)
class SubscriberInfo:
    """One subscriber, as MI ``subscribers_list`` shows it.

    Attributes:
        socket: ``<transport>:<print form>`` (e.g. ``kafka:127.0.0.1:9092/topic``; Kafka
            properties are never shown).
        expire: seconds, or ``None`` when it never expires.
        ttl: whole seconds left (rounded up, at least 1) while not expired; ``None`` when it
            never expires or has expired.
        expired: the expiry time has been reached (it is removed at the next check).
        subscribed_at: wall-clock time of the (last) subscription.
    """

    socket: str
    expire: int | None
    ttl: int | None
    expired: bool
    subscribed_at: float

    def to_mi(self) -> dict[str, object]:
        """OpenSIPS's shape: ``{"socket", "expire": int | "never", "ttl": int | "expired"}``
        (no ``ttl`` when it never expires)."""
        if self.expire is None:
            return {"socket": self.socket, "expire": "never"}
        ttl: object = "expired" if self.expired else self.ttl
        return {"socket": self.socket, "expire": self.expire, "ttl": ttl}


@dataclass(frozen=True, slots=True)
class EventSubscribers:
    """A published event with its live subscribers, newest first."""

    name: str
    id: int
    subscribers: tuple[SubscriberInfo, ...]

    def to_mi(self) -> dict[str, object]:
        """``{"name", "id", "Subscribers": [...]}`` (OpenSIPS's capitalisation)."""
        return {
            "name": self.name,
            "id": self.id,
            "Subscribers": [s.to_mi() for s in self.subscribers],
        }


@dataclass(frozen=True, slots=True)
class EventStats:
    """Counters of one event.

    Attributes:
        subscribers: live subscribers now.
        raised: successful ``raise_event`` calls (with or without subscribers).
        accepted: subscriber sends that accepted the event.
        failed: subscriber sends that did not (queue full, send error...).
    """

    name: str
    id: int
    subscribers: int
    raised: int
    accepted: int
    failed: int


class Subscriber:
    """One subscriber of an event: its transport scheme, destination and expiry."""

    __slots__ = ("dest", "expire", "scheme", "since", "socket")

    def __init__(self, scheme: str, dest: Destination, expire: int | None, since: float) -> None:
        self.scheme = scheme
        self.dest = dest
        self.socket = f"{scheme}:{dest.print()}"
        self.expire = expire
        self.since = since

    @property
    def deadline(self) -> float:
        return INF if self.expire is None else self.since + self.expire


Snapshot = tuple[tuple[tuple[SendFunction, bool], ...], bool, float]
"""What ``raise_event`` reads, replaced as a whole under the lock so it needs none:
((bound send, wants the Call-ID) newest first, whether any wants it, earliest deadline)."""

EMPTY: Snapshot = ((), False, INF)


class Event:
    """A published event: its subscribers (newest first), the snapshot ``raise_event``
    reads without a lock, and its counters."""

    __slots__ = ("accepted", "failed", "id", "index", "name", "raised", "snap", "subs")

    def __init__(self, name: str, id_: int) -> None:
        self.name = name
        self.id = id_
        self.subs: tuple[Subscriber, ...] = ()  # newest first
        self.index: dict[tuple[str, Destination], Subscriber] = {}
        self.snap: Snapshot = EMPTY
        # Counters are updated without a lock: under the GIL an attribute += is not
        # interrupted by another Python thread between its load and store in practice.
        self.raised = 0
        self.accepted = 0
        self.failed = 0

    def set_subs(self, subs: tuple[Subscriber, ...]) -> None:
        self.subs = subs
        self.snap = (
            tuple((s.dest.send, s.dest.needs_callid) for s in subs),
            any(s.dest.needs_callid for s in subs),
            min((s.deadline for s in subs), default=INF),
        )


def subscriber_info(sub: Subscriber, now: float) -> SubscriberInfo:
    """What the MI shows of ``sub`` at wall-clock time ``now``."""
    if sub.expire is None:
        return SubscriberInfo(sub.socket, None, None, False, sub.since)
    left = sub.since + sub.expire - now
    if left > 0:
        return SubscriberInfo(sub.socket, sub.expire, math.ceil(left), False, sub.since)
    return SubscriberInfo(sub.socket, sub.expire, None, True, sub.since)
