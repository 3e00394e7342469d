"""A report route for tests: records every :class:`~event_kafka.Report` and wakes waiters."""

from __future__ import annotations

import threading

from event_kafka import Report


class Reports:
    """Pass it as a report route (``ek.add_report_route("r", reports)``); :meth:`wait` blocks
    on a condition variable until ``n`` reports arrived (no polling)."""

    def __init__(self) -> None:
        self.items: list[Report] = []
        self._cond = threading.Condition()

    def __call__(self, r: Report) -> None:
        with self._cond:
            self.items.append(r)
            self._cond.notify_all()

    def wait(self, n: int, timeout: float = 30.0, what: str = "") -> list[Report]:
        """The reports so far, once there are at least ``n``; fails after ``timeout`` s."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.items) >= n, timeout), (
                f"{len(self.items)} of {n} reports after {timeout}s{': ' + what if what else ''}"
            )
            return list(self.items)
