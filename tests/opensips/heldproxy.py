"""A TCP proxy that holds every connection until ``release()``: a broker that answers late."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


class HeldProxy:
    """Listens on 127.0.0.1; forwards to ``target`` only after :meth:`release` (bounded)."""

    def __init__(self, target: tuple[str, int], max_connections: int = 16) -> None:
        self.target = target
        self.released = threading.Event()
        self._closed = threading.Event()
        self._max = max_connections
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []  # each held connection's two pumps
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self) -> None:
        self.released.set()

    def _accept(self) -> None:
        while not self._closed.is_set() and len(self._socks) < 2 * self._max:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._socks.append(conn)
            self._start(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        self.released.wait()
        if self._closed.is_set():
            return
        try:
            up = socket.create_connection(self.target, timeout=10)
        except OSError:
            conn.close()
            return
        up.settimeout(None)
        self._socks.append(up)
        self._start(self._pump, up, conn)
        self._pump(conn, up)

    def _start(self, target: Callable[..., None], *args: socket.socket) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def forwarded(self, timeout: float = 30.0) -> None:
        """After :meth:`release`, once the clients are gone: wait until every held byte was
        forwarded and the target closed each connection (a positive event that proves
        anything the clients had sent would have arrived by now)."""
        assert self.released.is_set()
        deadline = time.monotonic() + timeout
        for t in list(self._threads):  # a _serve adds its reverse pump before it ends
            t.join(max(deadline - time.monotonic(), 0.0))
        for t in list(self._threads):
            t.join(max(deadline - time.monotonic(), 0.0))
            assert not t.is_alive(), f"held connections still open after {timeout}s"

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        self.released.set()
        self._listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()
