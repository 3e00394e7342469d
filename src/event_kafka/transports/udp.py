"""``udp:`` — one datagram per event (OpenSIPS event_datagram).

Socket: ``udp:host:port``. As in OpenSIPS the host ends at the first ``:`` (so it is an IPv4
address or a name resolved to IPv4) and the port is a decimal number 1-65535. Extension:
``udp:[v6-address-or-name]:port`` sends over IPv6. The host is resolved once, at subscribe
time; a name that does not resolve is an error then.

Wire format: each event is one datagram holding exactly the JSON-RPC notification — no
newline, no framing — sent from one shared non-blocking socket per address family (so from
one ephemeral source port). OpenSIPS's receivers and the ``opensips`` Python package's
datagram listener read it as is. A datagram larger than the path allows (README limit 65457
bytes) is not sent.

Match: same host text and port (``udp:localhost:9`` and ``udp:127.0.0.1:9`` are different
subscribers, as in OpenSIPS). Print: ``host:port`` (``[host]:port`` for IPv6).

``send`` returns ``True`` when the kernel took the datagram; a full socket buffer (EAGAIN) or
any other error returns ``False`` at once, counted in :meth:`UdpTransport.stats`. Nothing is
retried or acknowledged.
"""

from __future__ import annotations

# getaddrinfo() imports encodings.idna on first use of a host name; an import under way in
# another thread at a fork leaves its import lock held in the child (whose first subscribe
# then hangs): import it with this module instead.
import encodings.idna  # noqa: F401
import socket
import weakref
from dataclasses import dataclass
from typing import Any

from .. import forksafe
from ..errors import SocketError
from ..kafka_socket import mask_secrets
from ..payload import Params
from .base import Destination, Transport

__all__ = ["InetAddress", "UdpDestination", "UdpTransport", "parse_inet"]


@dataclass(frozen=True, slots=True)
class InetAddress:
    """A parsed and resolved ``host:port`` (shared by the ``udp`` and ``tcp`` grammars).

    Attributes:
        host: the host text as written (without brackets).
        port: 1-65535.
        family: ``AF_INET``, or ``AF_INET6`` for the ``[...]`` form.
        sockaddr: the resolved address, as ``socket.sendto``/``connect`` take it.
        rest: the text after the port (``tcp`` reads ``/method`` from it).
    """

    host: str
    port: int
    family: socket.AddressFamily
    sockaddr: tuple[Any, ...]
    rest: str

    @property
    def text(self) -> str:
        """``host:port``, with brackets around an IPv6 host."""
        host = f"[{self.host}]" if self.family == socket.AF_INET6 else self.host
        return f"{host}:{self.port}"


def parse_inet(
    scheme: str, text: str, *, rest_starts: str = "", socktype: int = socket.SOCK_DGRAM
) -> InetAddress:
    """Parse and resolve ``host:port[rest]`` (the socket text after ``<scheme>:``).

    ``rest`` must be empty or start with one of the characters in ``rest_starts``.

    Raises:
        SocketError: positions count from the start of the whole socket.
    """
    full = f"{scheme}:{text}"
    base = len(scheme) + 1

    def error(what: str, at: int, detail: str = "") -> SocketError:
        detail = f": {detail}" if detail else ""
        return SocketError(
            f"invalid {scheme} socket {mask_secrets(full)!r}: {what} at position "
            f"{base + at}{detail}",
            base + at,
        )

    if not text:
        raise error("no socket specified", 0, f"expected {scheme}:host:port")
    family = socket.AF_INET
    if text[0] == "[":
        close = text.find("]")
        if close < 0:
            raise error("missing ']'", len(text), "write [IPv6-address]:port")
        host = text[1:close]
        if not host:
            raise error("empty host", 1)
        if close + 1 >= len(text) or text[close + 1] != ":":
            raise error("missing port", close + 1, "expected ':' and a port after ']'")
        colon = close + 1
        family = socket.AF_INET6
    else:
        colon = text.find(":")
        if colon < 0:
            raise error("missing port", len(text), "expected host:port")
        host = text[:colon]
        if not host:
            raise error("empty host", 0)
    start = colon + 1
    end = start
    while end < len(text) and text[end] not in rest_starts:
        end += 1
    digits = text[start:end]
    if not digits:
        raise error("missing port", start)
    if not (digits.isascii() and digits.isdigit()):
        bad = next(i for i, c in enumerate(digits) if not (c.isascii() and c.isdigit()))
        hint = "IPv6 addresses need brackets: [addr]:port" if digits[bad] == ":" else ""
        raise error(f"unexpected {digits[bad]!r} in port", start + bad, hint)
    port = int(digits)
    if not 0 < port < 65536:
        raise error(f"port {digits} out of range", start, "a port is 1-65535")
    try:
        infos = socket.getaddrinfo(host, port, family, socktype)
    except (OSError, UnicodeError) as exc:
        kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error(
            f"cannot resolve host {mask_secrets(host)!r} to an {kind} address", 0, reason
        ) from None
    return InetAddress(host, port, family, infos[0][4], text[end:])


class UdpTransport(Transport):
    """The ``udp`` transport: one non-blocking datagram socket per address family, shared.

    Example::

        >>> t = UdpTransport()
        >>> d = t.parse("127.0.0.1:8888")
        >>> d.print()
        '127.0.0.1:8888'
        >>> t.close()
    """

    scheme = "udp"

    def __init__(self) -> None:
        self._lock = forksafe.lock()
        self._sockets: dict[int, socket.socket] = {}
        self._closed = False
        # By identity: equal destinations (one socket, two events) are counted apart.
        self._dests: weakref.WeakValueDictionary[int, UdpDestination] = (
            weakref.WeakValueDictionary()
        )

    def parse(self, text: str) -> UdpDestination:
        dest = UdpDestination(self, parse_inet(self.scheme, text))
        self._dests[id(dest)] = dest
        return dest

    def socket_for(self, family: int) -> socket.socket:
        """The shared non-blocking socket for ``family`` (created on first use)."""
        with self._lock:
            sock = self._sockets.get(family)
            if sock is None:
                if self._closed:
                    raise OSError("udp transport is closed")
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._sockets[family] = sock
            return sock

    def stats(self) -> dict[str, object]:
        """``{"udp:host:port": {"sent": n, "errors": n}}``, summed over live destinations."""
        out: dict[str, dict[str, int]] = {}
        for d in list(self._dests.values()):
            c = out.setdefault(f"udp:{d.print()}", {"sent": 0, "errors": 0})
            c["sent"] += d.sent
            c["errors"] += d.errors
        return dict(out)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks, self._sockets = list(self._sockets.values()), {}
        for sock in socks:
            sock.close()


class UdpDestination(Destination):
    """A ``udp:`` subscriber: one resolved address.

    Attributes:
        sent: datagrams the kernel accepted.
        errors: datagrams not sent (buffer full, too large, unreachable...).
    """

    __slots__ = ("__weakref__", "_sock", "addr", "errors", "sent", "transport")

    def __init__(self, transport: UdpTransport, addr: InetAddress) -> None:
        self.transport = transport
        self.addr = addr
        self._sock: socket.socket | None = None
        self.sent = 0
        self.errors = 0

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UdpDestination)
            and other.addr.host == self.addr.host
            and other.addr.port == self.addr.port
            and other.addr.family == self.addr.family
        )

    def __hash__(self) -> int:
        return hash(("udp", self.addr.host, self.addr.port))

    def print(self) -> str:
        return self.addr.text

    def send(self, payload: bytes, event: str, params: Params, key: bytes | None) -> bool:
        try:
            sock = self._sock
            if sock is None:
                sock = self._sock = self.transport.socket_for(self.addr.family)
            sock.sendto(payload, self.addr.sockaddr)
        except OSError:
            # EAGAIN (buffer full), EMSGSIZE, a closed transport...: counted, never retried.
            self.errors += 1
            return False
        self.sent += 1
        return True

    def __repr__(self) -> str:
        return f"UdpDestination(udp:{self.addr.text})"
