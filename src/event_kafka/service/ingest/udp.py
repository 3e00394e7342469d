"""The event_datagram receiver: ``udp:`` ingest, one notification per datagram."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

from ...address import bound_address
from ...ratelimit import RateLimitedLog
from .listener import IngestCounters, Listener, RaiseFunction

__all__ = ["UDP_RCVBUF", "UdpIngestServer"]

log = logging.getLogger("event_kafka.service.ingest")

UDP_RCVBUF = 16 * 1024 * 1024


class UdpIngestServer:
    """The event_datagram receiver: one notification per datagram, never answered.

    Example::

        server = UdpIngestServer(raise_fn, "127.0.0.1", 8090)
        await server.start()         # binds; raises OSError if it cannot
        ...
        server.close()
    """

    def __init__(
        self,
        raise_fn: RaiseFunction,
        host: str,
        port: int,
        *,
        max_datagram: int = 65535,
        log_interval: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self.max_datagram = max_datagram
        self.ingest = Listener("udp", raise_fn, bad_log=RateLimitedLog(log, log_interval))
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def counters(self) -> IngestCounters:
        return self.ingest.counters

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when 0 was asked for)."""
        assert self._sock is not None
        return bound_address(self._sock)

    async def start(self) -> None:
        """Bind (raising OSError if it cannot) and start the reader thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        # A deep receive buffer absorbs bursts (root may exceed net.core.rmem_max).
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if opt is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, UDP_RCVBUF)
                    break
        # Blocking, no timeout: a timeout costs a poll() before every recvfrom (0.7 us per
        # datagram); close() wakes the reader with shutdown() and a datagram instead.
        self._sock = sock
        # A blocking reader thread, not an asyncio transport: asyncio reads one datagram per
        # event-loop wakeup, which costs several times the work of raising the event.
        self._thread = threading.Thread(target=self._read, name="ek-udp-ingest", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        sock, ingest, size = self._sock, self.ingest, self.max_datagram
        assert sock is not None
        counters = ingest.counters
        recvfrom, handle = sock.recvfrom, ingest.handle
        while self._sock is sock:
            try:
                data, addr = recvfrom(size)
            except OSError as exc:
                if self._sock is not sock:
                    return
                ingest.bad_log.warning("udp ingest: socket error: %s", exc)
                continue
            if self._sock is not sock:
                return  # close()'s wake-up
            counters.bytes += len(data)
            try:
                # The peer as recvfrom gave it: formatted only if a log line needs it.
                handle(data, addr)
            except Exception:  # never let one datagram stop the listener
                log.exception("udp ingest: handling a datagram failed")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            # Wake the blocked reader: shutdown() does on Linux; a datagram to itself
            # anywhere else (the reader sees _sock changed and ends without handling it).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
            with contextlib.suppress(OSError):
                host, port = bound_address(sock)
                if host in ("0.0.0.0", "::"):
                    host = "::1" if sock.family == socket.AF_INET6 else "127.0.0.1"
                with socket.socket(sock.family, socket.SOCK_DGRAM) as s:
                    s.sendto(b"", (host, port))
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        if sock is not None:
            sock.close()
