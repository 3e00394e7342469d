"""Network addresses as text: ``host:port``, with brackets around an IPv6 host (``[::1]:80``).

The one way the library and the service print an address (a listener, a peer, a broker, a
UDP/TCP subscriber), so log lines and replies read the same everywhere.
"""

from __future__ import annotations

from typing import Any

__all__ = ["bound_address", "format_address", "format_peer"]


def format_address(host: str, port: int) -> str:
    """``host:port``; an IPv6 host (it holds a ``:``) is bracketed.

    >>> format_address("127.0.0.1", 9092), format_address("::1", 9092)
    ('127.0.0.1:9092', '[::1]:9092')
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_peer(addr: Any) -> str:
    """A socket address as ``getpeername``/``recvfrom`` give it, printed by
    :func:`format_address` (anything else, e.g. a Unix socket path, as ``str``)."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        return format_address(str(addr[0]), addr[1])
    return str(addr)


def bound_address(sock: Any) -> tuple[str, int]:
    """``(host, port)`` a listening socket is bound to (the real port when 0 was asked for)."""
    sockname = sock.getsockname()
    return str(sockname[0]), int(sockname[1])
