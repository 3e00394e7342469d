"""The Event Interface transport interface: parse, match, send, print, close.

This is the cut-off point between the Event Interface core (subscriptions, expiry, raising)
and the network. The core knows a socket only as ``<scheme>:<rest>``; it asks the
:class:`Transport` registered for ``<scheme>`` to :meth:`~Transport.parse` ``<rest>`` into a
:class:`Destination`, and from then on uses only the five operations below. Each transport
lives in its own module (``kafka``, ``udp``, ``tcp``) and the core imports none of them.

=========  ===========================================================================
parse      :meth:`Transport.parse` — text after ``<scheme>:`` → :class:`Destination`, or
           :class:`~event_kafka.errors.SocketError`. Validates and resolves; acquires
           nothing that needs releasing (a re-subscribe parses, matches, and drops it).
match      ``Destination.__eq__`` / ``__hash__`` — two sockets denote the same subscriber.
send       :meth:`Destination.send` — hand one event over; never blocks on the network.
print      :meth:`Destination.print` — the OpenSIPS print form (without ``<scheme>:``).
close      :meth:`Destination.close` (one subscriber gone) and :meth:`Transport.close`
           (the Event Interface is closing: release every shared resource).
=========  ===========================================================================

Example: a transport that appends every event to a list::

    class ListDestination(Destination):
        needs_callid = False

        def __init__(self, name: str, sink: list[bytes]) -> None:
            self.name, self.sink = name, sink

        def __eq__(self, other: object) -> bool:
            return isinstance(other, ListDestination) and other.name == self.name

        def __hash__(self) -> int:
            return hash(("list", self.name))

        def print(self) -> str:
            return self.name

        def send(self, payload, event, params, key) -> bool:
            self.sink.append(payload)
            return True

    class ListTransport(Transport):
        scheme = "list"

        def __init__(self) -> None:
            self.sink: list[bytes] = []

        def parse(self, text: str) -> Destination:
            return ListDestination(text, self.sink)

    evi = EventInterface(transports=[ListTransport()])     # one instance, injected
    evi.register_transport("list", lambda ctx: ListTransport())  # or: a factory
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from ..payload import Params

if TYPE_CHECKING:
    from ..producer import ProducerPool

__all__ = [
    "Destination",
    "Params",
    "SendFunction",
    "Transport",
    "TransportContext",
    "TransportFactory",
]


class Destination(ABC):
    """One parsed subscriber socket: what a subscriber sends to.

    Equality is the transport's *match*: the Event Interface refreshes (never duplicates) a
    subscriber whose destination equals the new one. Implementations compare by value and
    return ``False`` for destinations of another class.

    Each subscription gets its own ``Destination`` instance (the Event Interface parses the
    socket text once per subscription), so an instance serves exactly one event.
    """

    __slots__ = ()

    needs_callid: bool = False
    """Ask the Event Interface for the Call-ID of the SIP message as ``key`` in :meth:`send`.

    The Call-ID is extracted (and a malformed message rejected) once per raise, before any
    subscriber is sent to, and only when some subscriber of the event needs it."""

    @abstractmethod
    def __eq__(self, other: object) -> bool: ...

    @abstractmethod
    def __hash__(self) -> int: ...

    @abstractmethod
    def print(self) -> str:
        """The socket as OpenSIPS prints it in ``subscribers_list``, without ``<scheme>:``.

        Must never contain secrets."""

    @abstractmethod
    def send(self, payload: bytes, event: str, params: Params, key: bytes | None) -> bool:
        """Hand one event over; ``True`` if accepted, ``False`` if not (the caller counts it).

        Must never block on the network and should not raise for delivery problems.

        Args:
            payload: the OpenSIPS JSON-RPC notification for ``event``/``params``
                (:func:`~event_kafka.payload.build_payload`), built once per raise and shared
                by all subscribers.
            event: the event name.
            params: the event params, for transports that build a different payload
                (``tcp:`` with ``/method`` or reliable-mode ids).
            key: the Call-ID of the SIP message the event was raised for, as UTF-8 bytes,
                if :attr:`needs_callid` is true and the message had one; else ``None``.
        """

    def admit(self) -> None:  # noqa: B027 - optional hook, nothing to reserve by default
        """Reserve what this subscriber will need, or raise to refuse the subscription.

        Called once, when it becomes a subscriber (not for a refresh), under the Event
        Interface lock: keep it short. :meth:`close` gives back what it reserved."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what this subscriber holds (it was unsubscribed or expired).

        Called once, outside the Event Interface lock; a :meth:`send` racing with it may
        return ``False``."""


SendFunction: TypeAlias = Callable[[bytes, str, Params, "bytes | None"], bool]
"""The type of a bound :meth:`Destination.send`."""


@dataclass(frozen=True, slots=True)
class TransportContext:
    """What the Event Interface offers to transport factories.

    Attributes:
        pool: the producer pool Kafka subscribers share with the rest of the application
            (``None``: a transport that needs one creates and owns its own).
        event_header: Kafka records carry an ``event`` header (the event name); ``False``
            writes records exactly as OpenSIPS does, without headers.
    """

    pool: ProducerPool | None = None
    event_header: bool = True


class Transport(ABC):
    """A family of destinations selected by socket scheme (``kafka``, ``udp``, ``tcp``...).

    One instance exists per Event Interface, created on first use of its scheme, and closed
    by :meth:`EventInterface.close <event_kafka.event_interface.EventInterface.close>`.
    """

    scheme: str
    """The text before the first ``:`` of a socket; compared case-sensitively."""

    @abstractmethod
    def parse(self, text: str) -> Destination:
        """Parse the socket text after ``<scheme>:``.

        Raises:
            SocketError: naming what is wrong and where (positions count from the start of
                the whole socket, ``<scheme>:`` included).
        """

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Flush and release shared resources (sockets, threads, an owned producer pool).

        Called once, when the Event Interface closes, *before* the destinations'
        :meth:`Destination.close` (which must then still be harmless)."""

    def stats(self) -> dict[str, object]:
        """Transport counters for monitoring; empty by default."""
        return {}


TransportFactory: TypeAlias = Callable[[TransportContext], Transport]
"""Creates a transport for one Event Interface; see ``EventInterface.register_transport``."""
