"""systemd's notify protocol (``Type=notify``): ``READY=1``, ``RELOADING=1``, ``STOPPING=1``."""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["sd_notify"]

log = logging.getLogger("event_kafka.service")


def sd_notify(state: str) -> None:
    """Tell systemd (``Type=notify``) about ``state``; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
