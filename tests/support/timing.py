"""Measuring a RATIO of work (linear-time checks): never an absolute wall-clock bound.

:func:`best_of` times a call a few times and keeps the shortest run (one run descheduled on a
loaded machine does not decide); :func:`deadline` interrupts a block that would otherwise run
for hours (a quadratic parser), so such a test fails in seconds instead of hanging.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class TooSlow(BaseException):
    """Raised by :func:`deadline`; not an Exception, so ``suppress(Exception)`` lets it pass."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with :class:`TooSlow` (SIGALRM; the regex engine
    and CPython's loops check for signals); an outer timer (pytest-timeout's) is restored."""

    def alarm(signum: int, frame: object) -> None:
        raise TooSlow

    old_handler = signal.signal(signal.SIGALRM, alarm)
    old_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_timer[0]:
            signal.setitimer(signal.ITIMER_REAL, *old_timer)


def best_of(run: Callable[[], object], runs: int, limit: float = 5.0) -> float:
    """The shortest of ``runs`` timed calls of ``run``; a call interrupted after ``limit``
    seconds counts as ``inf``."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        try:
            with deadline(limit):
                run()
        except TooSlow:
            continue
        best = min(best, time.perf_counter() - start)
    return best
