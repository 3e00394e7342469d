"""Processes this package starts: spawned in their own session, dying with their parent,
stopped by PID (on request or at interpreter exit); whether a PID still runs; free loopback
ports; log tails."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()


def _kill_all_at_exit() -> None:
    with _live_lock:
        procs = list(_live)
    for p in procs:
        _terminate(p, grace=5.0)


atexit.register(_kill_all_at_exit)


def _die_with_parent() -> None:
    # Linux: the child gets SIGKILL when the process that started it dies, so a crashed or
    # kill -9'd test run never leaves a JVM behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _spawn(cmd: list[str], log: Path, *, detach: bool = False) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent,
        )
    if not detach:
        with _live_lock:
            _live.add(proc)
    return proc


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process we started, SIGKILL it if it lingers; only ever by its own PID."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(10)
    with _live_lock:
        _live.discard(proc)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs any thread (and so may still hold its files, ports
    and flocks).

    A killed multi-threaded process (a JVM, librdkafka's threads) shows its leader as a
    zombie while the other threads are still exiting, and its files are closed only by the
    last one: gone means no /proc entry, or a zombie leader with no other thread left."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False
