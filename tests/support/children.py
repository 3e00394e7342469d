"""Forked children of the test process: run a body in a child, wait for it by its pidfd.

A child that does not finish in time is killed by its PID (it is ours) and fails the test.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable

import pytest


def fork_child(body: Callable[[], int]) -> int:
    """Fork; the child runs ``body`` and exits with its result (1 if it raised). The PID."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = body()
        finally:
            os._exit(code)
    return pid


def exited(pids: list[int], timeout: float) -> bool:
    """Wait until one of ``pids`` (our children) exits, at most ``timeout`` s; True if one did.

    Blocks on the children's pidfds: woken by the exit itself, no polling."""
    fds = [os.pidfd_open(pid) for pid in pids]
    try:
        return bool(select.select(fds, [], [], max(timeout, 0.0))[0])
    finally:
        for fd in fds:
            os.close(fd)


def wait_child(pid: int, timeout: float) -> int:
    """The child's exit code; kills it (by PID) and fails the test after ``timeout`` s."""
    if exited([pid], timeout):
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"child {pid} did not finish within {timeout}s (deadlocked?)")


def in_child(body: Callable[[], int], timeout: float) -> int:
    """Run ``body`` in a forked child; its exit code (see :func:`wait_child`)."""
    return wait_child(fork_child(body), timeout)
