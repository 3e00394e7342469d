"""Event Interface transports, chosen by socket scheme.

A subscriber socket is ``<scheme>:<rest>``; the scheme (the text before the first ``:``,
case-sensitive, as in OpenSIPS) selects a transport. Built in:

==========  ============================================  ==================================
scheme      socket                                        sends
==========  ============================================  ==================================
``kafka``   ``kafka:brokers/topic[?props][&key=callid]``  one record per event (producer
                                                          core), header ``event``
``udp``     ``udp:host:port`` / ``udp:[v6]:port``         one datagram per event
                                                          (event_datagram)
``tcp``     ``tcp:host:port[/method]``                    JSON objects back to back on a
                                                          persistent connection (event_stream)
==========  ============================================  ==================================

Add one with :func:`register_transport`; see :mod:`event_kafka.transports.base` for the
interface and an example.
"""

from __future__ import annotations

from .. import forksafe
from .base import (
    Destination,
    SendFunction,
    Transport,
    TransportContext,
    TransportFactory,
)

__all__ = [
    "Destination",
    "SendFunction",
    "Transport",
    "TransportContext",
    "TransportFactory",
    "register_transport",
    "registered_schemes",
    "transport_factory",
    "unregister_transport",
]

_lock = forksafe.lock()
_registry: dict[str, TransportFactory] = {}


def register_transport(scheme: str, factory: TransportFactory, *, replace: bool = False) -> None:
    """Make sockets ``<scheme>:...`` use the transport ``factory`` creates.

    Affects Event Interfaces when they first meet the scheme. Example::

        register_transport("list", lambda ctx: ListTransport())

    Args:
        scheme: non-empty, without ``:``; case-sensitive.
        factory: called once per Event Interface with a :class:`TransportContext`.
        replace: allow replacing an existing registration (built-ins included).

    Raises:
        ValueError: a bad scheme, or one already registered and ``replace`` is false.
    """
    if not isinstance(scheme, str) or not scheme or ":" in scheme:
        raise ValueError(f"transport scheme must be a non-empty str without ':', not {scheme!r}")
    with _lock:
        if scheme in _registry and not replace:
            raise ValueError(f"transport {scheme!r} is already registered")
        _registry[scheme] = factory


def unregister_transport(scheme: str) -> None:
    """Forget ``scheme`` (no error if unknown). Existing Event Interfaces keep theirs."""
    with _lock:
        _registry.pop(scheme, None)


def transport_factory(scheme: str) -> TransportFactory | None:
    """The factory registered for ``scheme``, or ``None``."""
    return _registry.get(scheme)


def registered_schemes() -> list[str]:
    """The registered schemes, sorted."""
    with _lock:
        return sorted(_registry)


# Built-ins, imported on first use so that e.g. a udp-only user never loads the others.
def _kafka(ctx: TransportContext) -> Transport:
    from .kafka import KafkaTransport

    return KafkaTransport(ctx.pool, event_header=ctx.event_header)


def _udp(ctx: TransportContext) -> Transport:
    from .udp import UdpTransport

    return UdpTransport()


def _tcp(ctx: TransportContext) -> Transport:
    from .tcp import TcpTransport

    return TcpTransport()


register_transport("kafka", _kafka)
register_transport("udp", _udp)
register_transport("tcp", _tcp)
