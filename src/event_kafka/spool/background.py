"""One background thread per process for every open spool: fsyncs and ack persistence.

A process may open many owner directories (a spool per broker_id and per event subscriber);
they share this thread rather than each waking its own ten times a second. The thread ends
when no spool is left and starts again with the next; a forked child starts afresh (the
parent's thread does not exist there).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Protocol

from .. import forksafe

__all__ = ["Background", "BackgroundWork", "background"]

log = logging.getLogger("event_kafka.spool")


class BackgroundWork(Protocol):
    def _background_step(self, now: float) -> float:
        """Do what is due at monotonic time ``now``; return the period wanted (seconds)."""
        ...


class Background:
    def __init__(self) -> None:
        self._lock = forksafe.lock()
        self._wake = forksafe.event()
        self._work: weakref.WeakSet[BackgroundWork] = weakref.WeakSet()
        self._thread: threading.Thread | None = None

    def add(self, work: BackgroundWork) -> None:
        with self._lock:
            self._work.add(work)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ek-spool-sync", daemon=True)
                self._thread.start()

    def discard(self, work: BackgroundWork) -> None:
        with self._lock:
            self._work.discard(work)

    def _run(self) -> None:
        period = 0.1
        while True:
            self._wake.wait(period)
            with self._lock:
                work = list(self._work)
                if not work:
                    self._thread = None
                    return
            period = 0.1
            now = time.monotonic()
            for w in work:
                try:
                    period = min(period, w._background_step(now))
                except Exception:
                    log.exception("spool: background sync of %r failed", w)
            del work

    def _after_fork_in_child(self) -> None:
        self._work = weakref.WeakSet()
        self._thread = None


background = Background()
forksafe.register(background)
