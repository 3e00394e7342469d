"""Slow MI work off the event loop: a small pool of daemon threads with a time budget.

The event loop also answers ``/health/*`` and ``/metrics``: nothing an MI caller sends may
hold it. :class:`WorkerPool` runs a blocking function on one of ``workers`` threads and
waits at most ``budget`` seconds for it (queueing included); past that the caller gets a
JSON-RPC error while the thread finishes on its own. At most ``max_pending`` jobs are
queued or running at once, so stuck jobs cannot pile up without bound. The threads are
daemons: a job that never returns cannot keep the process from exiting on SIGTERM.

Example::

    pool = WorkerPool(workers=4, budget=10.0)
    result = await pool.run(lambda: slow_parse(body))   # MIError 408 after 10 s
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..ratelimit import RateLimitedLog
from .mi import MIError

__all__ = ["BUSY", "TIMEOUT", "WorkerPool"]

log = logging.getLogger("event_kafka.service.mi")

T = TypeVar("T")

TIMEOUT = (408, "Request Timeout")
BUSY = (503, "Service Unavailable")

_Job = tuple[concurrent.futures.Future[Any], Callable[[], Any]]


class WorkerPool:
    """``await run(fn)``: ``fn()`` on a daemon thread, within ``budget`` seconds."""

    def __init__(self, workers: int = 4, budget: float = 10.0, max_pending: int = 64) -> None:
        self.workers = workers
        self.budget = budget
        self.max_pending = max_pending
        self.timeouts = 0
        self.busy = 0
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._threads: list[threading.Thread] = []
        self._log = RateLimitedLog(log, 10.0)  # a caller repeating a slow request: one line

    @property
    def pending(self) -> int:
        """Jobs queued or running now (timed-out jobs still running included)."""
        return self._pending

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` off the loop; its result, or its exception.

        Raises:
            MIError: 408 when ``budget`` seconds pass first (``fn`` may still complete
                later), 503 when ``max_pending`` jobs are already queued or running.
        """
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._pending >= self.max_pending:
                self.busy += 1
                raise MIError(*BUSY, "too many MI requests in progress; retry later")
            self._pending += 1
            if len(self._threads) < self.workers:
                t = threading.Thread(target=self._work, name="event-kafka-mi", daemon=True)
                self._threads.append(t)
                t.start()
        self._jobs.put((fut, fn))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.budget)
        except TimeoutError:
            self.timeouts += 1
            self._log.warning(
                "an MI request ran past its %gs budget (mi.command_timeout)", self.budget
            )
            raise MIError(
                *TIMEOUT,
                f"not finished within {self.budget:g} s (mi.command_timeout); it may still "
                "take effect",
            ) from None

    def close(self) -> None:
        """Let idle threads exit (a stuck one is a daemon: it does not hold the process)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fut, fn = job
            try:
                if fut.set_running_or_notify_cancel():  # False: timed out while queued
                    try:
                        fut.set_result(fn())
                    except BaseException as exc:  # handed to the awaiting request
                        fut.set_exception(exc)
            finally:
                with self._lock:
                    self._pending -= 1
