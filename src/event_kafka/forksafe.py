"""Fork safety in one place: locks, events and per-object state re-created in a forked child.

A fork copies only the forking thread. Any lock another thread held at that moment stays held
forever in the child, and every thread handle, queue of work for a thread and librdkafka
producer of the parent is dead weight there. So the library creates its locks and events
through :func:`lock`, :func:`rlock` and :func:`event` (re-initialised in place in the child,
whoever holds a reference), and objects that own threads or queues :func:`register`
themselves: their ``_after_fork_in_child()`` runs in the child.

:func:`after_fork` does all of it. ``os.register_at_fork`` runs it after ``os.fork()``
(and ``multiprocessing``); hosts that fork from C without Python's fork hooks call
:func:`event_kafka.after_fork` first thing in each child. It runs at most once per process
(by PID), so calling it in a process that did not fork, or twice, is harmless.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "NO_RESOLVER",
    "ForkAware",
    "after_fork",
    "event",
    "lock",
    "on_fork",
    "register",
    "resolver_usable",
    "rlock",
]


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


# Only weak references: registration must never keep anything alive.
_primitives: weakref.WeakSet[Any] = weakref.WeakSet()
_objects: weakref.WeakSet[Any] = weakref.WeakSet()
_functions: list[Callable[[], None]] = []
_pid = os.getpid()


def lock() -> threading.Lock:
    """A ``threading.Lock`` that is released (re-initialised) in a forked child."""
    lk = threading.Lock()
    _primitives.add(lk)
    return lk


def rlock() -> threading.RLock:
    """A ``threading.RLock`` that is released (re-initialised) in a forked child."""
    lk = threading.RLock()
    _primitives.add(lk)
    return lk


def event() -> threading.Event:
    """A ``threading.Event`` whose internal lock is re-initialised in a forked child."""
    ev = threading.Event()
    _primitives.add(ev)
    return ev


def condition(lock: threading.Lock | threading.RLock | None = None) -> threading.Condition:
    """A ``threading.Condition`` (on ``lock``, default a new one) re-initialised, lock and
    waiters, in a forked child."""
    cond = threading.Condition(lock if lock is not None else threading.Lock())
    _primitives.add(cond)
    return cond


def register(obj: ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in forked children while ``obj`` lives."""
    _objects.add(obj)


def on_fork(fn: Callable[[], None]) -> Callable[[], None]:
    """Call module-level ``fn`` in forked children (before registered objects); a decorator."""
    _functions.append(fn)
    return fn


def after_fork() -> None:
    """Make this process's copy of the library usable after a fork; idempotent per process."""
    global _pid
    pid = os.getpid()
    if pid == _pid:
        return
    _pid = pid
    for prim in list(_primitives):
        # CPython's own hook for this (threading uses it for its internal locks).
        prim._at_fork_reinit()
    for fn in list(_functions):
        fn()
    for obj in list(_objects):
        obj._after_fork_in_child()


os.register_at_fork(after_in_child=after_fork)


NO_RESOLVER = (
    "getaddrinfo is deadlocked in this forked process (the fork came while a thread of the "
    "parent was resolving, e.g. a producer (re)connecting): a producer here could never "
    "connect, so messages are refused"
)
_HOME_PID = os.getpid()
_resolver: dict[int, bool] = {}  # pid -> getaddrinfo answered (probed once per forked child)


def resolver_usable(timeout: float = 2.0) -> bool:
    """Whether ``getaddrinfo`` works in this process; probed once in each forked child.

    A fork while one of the parent's librdkafka threads is inside glibc's ``getaddrinfo``
    (every connection attempt takes its ``__check_pf`` lock) leaves that lock held for ever in
    the child. A producer built there never connects, and librdkafka's ``purge`` then waits
    for the stuck broker thread while holding the GIL, freezing the whole process at close.
    So a child checks first, on a thread it can give up on, with librdkafka's flags."""
    pid = os.getpid()
    if pid == _HOME_PID:
        return True
    ok = _resolver.get(pid)
    if ok is None:
        done = threading.Event()

        def probe() -> None:
            with contextlib.suppress(OSError):
                socket.getaddrinfo("127.0.0.1", 9, 0, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)
            done.set()

        threading.Thread(target=probe, name="ek-resolver-probe", daemon=True).start()
        ok = _resolver[pid] = done.wait(timeout)
    return ok
