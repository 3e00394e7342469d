"""Rate-limited logging: one line, then a count, never a flood (broker down, bad input)."""

from __future__ import annotations

import logging
import time

from . import forksafe


class RateLimitedLog:
    """Log at most one line per ``interval`` seconds; later lines say how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self.suppressed = 0
        self._last = -float("inf")
        self._lock = forksafe.lock()

    def log(self, level: int, msg: str, *args: object) -> bool:
        """Log unless a line went out less than ``interval`` ago; True if it was logged."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                self.suppressed += 1
                return False
            self._last = now
            suppressed, self.suppressed = self.suppressed, 0
        if suppressed:
            msg += " (%d similar lines suppressed)"
            args = (*args, suppressed)
        self.logger.log(level, msg, *args)
        return True

    def error(self, msg: str, *args: object) -> bool:
        return self.log(logging.ERROR, msg, *args)

    def warning(self, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, msg, *args)
