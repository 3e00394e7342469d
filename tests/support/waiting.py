"""Waiting on something observable: one condition poller, sync and async, always with a deadline.

Tests never sleep a fixed time to synchronise: they wait until a condition (a counter, a consumer
read, a health endpoint, a log line) holds, and fail naming ``what`` they waited for.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

STEP = 0.02  # poll period: short enough not to slow tests, long enough not to burn a core


def wait_until(
    cond: Callable[[], T], timeout: float = 15.0, what: str = "condition", step: float = STEP
) -> T:
    """Poll ``cond`` until it returns something truthy (returned) or fail after ``timeout`` s.

    ``cond`` may raise AssertionError to end the wait early (a process that died, say)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


async def await_until(
    cond: Callable[[], Any] | Callable[[], Awaitable[Any]],
    timeout: float = 15.0,
    what: str = "condition",
    step: float = STEP,
) -> Any:
    """:func:`wait_until` inside an event loop: ``cond`` may be sync or async; the loop keeps
    running between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)


def wait_event(event: threading.Event, timeout: float = 15.0, what: str = "event") -> None:
    """Wait for ``event`` to be set, or fail naming ``what``."""
    if not event.wait(timeout):
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")
