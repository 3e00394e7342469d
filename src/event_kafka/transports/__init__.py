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

Transports are chosen per Event Interface, never process-wide: it starts from
:data:`BUILTIN_TRANSPORTS` and takes others by injection (``EventInterface(transports=[...])``
for instances, ``factories={...}`` or ``evi.register_transport(scheme, factory)`` for
factories). See :mod:`event_kafka.transports.base` for the interface and an example.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType

from ..errors import SocketError
from ..kafka_socket import mask_secrets
from .base import (
    Destination,
    SendFunction,
    Transport,
    TransportContext,
    TransportFactory,
)

__all__ = [
    "BUILTIN_TRANSPORTS",
    "Destination",
    "SendFunction",
    "Transport",
    "TransportContext",
    "TransportFactory",
    "check_scheme",
    "split_socket",
]


def check_scheme(scheme: object) -> str:
    """``scheme`` if it can name a transport (a non-empty str without ``:``).

    Raises:
        ValueError: it cannot.
    """
    if not isinstance(scheme, str) or not scheme or ":" in scheme:
        raise ValueError(f"transport scheme must be a non-empty str without ':', not {scheme!r}")
    return scheme


def split_socket(socket: str, known: Collection[str]) -> tuple[str, str]:
    """``(scheme, address)`` of subscriber socket ``<scheme>:<address>``, the one place a
    socket's transport is picked; ``known``: the schemes that may be used.

    Raises:
        TypeError: ``socket`` is not a str.
        SocketError: no scheme, or one not in ``known`` (the message quotes the socket
            without its query part and with secret-looking values masked).
    """
    if not isinstance(socket, str):
        raise TypeError(f"socket must be str, not {type(socket).__name__}")
    shown = _shown(socket)
    colon = socket.find(":")
    if colon <= 0:
        what = "missing transport" if colon < 0 else "empty transport name"
        raise SocketError(
            f"invalid socket {shown!r}: {what}: expected <transport>:<address>", max(colon, 0)
        )
    scheme = socket[:colon]
    if scheme not in known:
        hint = ""
        if scheme.lower() in known:
            hint = f" (transport names are case-sensitive: write {scheme.lower()!r})"
        names = ", ".join(f"{s}:" for s in sorted(known))
        raise SocketError(
            f"invalid socket {shown!r}: unknown transport {mask_secrets(scheme)!r}{hint} "
            f"(known: {names})",
            0,
        )
    return scheme, socket[colon + 1 :]


def _shown(socket: str) -> str:
    # Property values may be secrets: quote a rejected socket without its query part, and
    # what looks like a secret before it (a socket pasted with its scheme missing) masked.
    head, q, _ = socket.partition("?")
    return mask_secrets(head) + ("?..." if q else "")


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


BUILTIN_TRANSPORTS: Mapping[str, TransportFactory] = MappingProxyType(
    {"kafka": _kafka, "udp": _udp, "tcp": _tcp}
)
"""The transports every Event Interface knows, by scheme (read-only)."""
