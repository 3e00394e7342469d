"""Ingest: receive a real OpenSIPS's events over ``udp:``/``tcp:`` and raise them here.

An OpenSIPS subscribed with ``udp:HOST:PORT`` (event_datagram) or ``tcp:HOST:PORT``
(event_stream) pointing at this service sends each event as its JSON-RPC notification. Each
one is raised as that event in our Event Interface, so its Kafka subscribers get it,
byte for byte as OpenSIPS sent it.

* :mod:`.notification` — decoding one notification, the pass-through rules;
* :mod:`.listener` — one listener's core: decode, raise (through the :data:`RaiseFunction`
  the service gives it), count, reply;
* :mod:`.udp` — one notification per datagram, never answered;
* :mod:`.tcp` — concatenated notifications, answered when they carry an id.

Refused input is counted as malformed, logged rate-limited, and never fatal.
"""

from .listener import ACCEPTED, IngestCounters, RaiseFunction, RaiseOutcome
from .notification import MAX_DEPTH, IngestError, Notification, parse_notification
from .tcp import TcpIngestServer
from .udp import UDP_RCVBUF, UdpIngestServer

__all__ = [
    "ACCEPTED",
    "MAX_DEPTH",
    "UDP_RCVBUF",
    "IngestCounters",
    "IngestError",
    "Notification",
    "RaiseFunction",
    "RaiseOutcome",
    "TcpIngestServer",
    "UdpIngestServer",
    "parse_notification",
]
