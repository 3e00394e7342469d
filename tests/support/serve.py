"""``event-kafka serve`` as a process under test: one runner for every test that starts it.

Ready when ``GET /health/live`` answers 200 (never by scraping the log); output goes to a file;
stopped by its PID (SIGTERM, then SIGKILL after a deadline).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from .mi_client import MIHttpClient
from .waiting import wait_until

BIN = Path(sys.executable).parent
EVENT_KAFKA = str(BIN / "event-kafka")


def bound(port: int) -> bool:
    """Something listens on loopback TCP ``port`` or holds loopback UDP ``port`` (read from
    /proc/net: no connection is made, so a datagram service sees no probe)."""
    hexport = f":{port:04X}"
    for proto, listening in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
                f = line.split()
                if f[1].endswith(hexport) and f[3] == listening:
                    return True
    return False


def http_status(url: str, timeout: float = 2.0) -> int:
    """The status of ``GET url``; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


class ServeProcess(MIHttpClient):
    """One ``event-kafka serve -c <workdir>/event-kafka.toml`` process.

    ``mi_port`` is where the MI listens; ``health_port`` where ``/health/*`` is served (the
    ``[metrics]`` listener when the config has one, else the MI's). Subclasses may change
    :meth:`command` (to run it as another user, say). ``listeners``: ingest ports that must be
    bound too before it counts as started (the HTTP side answers before ingest binds);
    ``args``: more command-line options (``--log-level`` ...).
    """

    def __init__(
        self,
        workdir: Path,
        config: str,
        mi_port: int = 0,
        health_port: int | None = None,
        listeners: Sequence[int] = (),
        args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.args = tuple(args)
        self.config_path = workdir / "event-kafka.toml"
        self.config_path.write_text(config)
        self.log_path = workdir / "serve.log"
        self.mi_port = mi_port
        self.health_port = health_port
        self.listeners = tuple(listeners)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.mi_port}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port or self.mi_port}/health"

    def command(self) -> list[str]:
        return [EVENT_KAFKA, "serve", "-c", str(self.config_path), *self.args]

    def start(
        self, mi_port: int | None = None, timeout: float = 60.0, env: dict[str, str] | None = None
    ) -> ServeProcess:
        """Start it and wait until ``/health/live`` answers 200 (fails at once if it exits)."""
        if mi_port is not None:
            self.mi_port = mi_port
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )
        wait_until(self._live, timeout, f"serve's {self.health_url}/live")
        return self

    def _live(self) -> bool:
        if not self.alive:
            assert self.proc is not None
            raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.tail()}")
        live = http_status(self.health_url + "/live") == 200
        return live and all(bound(port) for port in self.listeners)

    def ready(self) -> bool:
        """``/health/ready`` answers 200."""
        return http_status(self.health_url + "/ready") == 200

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal it by PID and wait; its exit status (SIGKILL and fail after ``timeout``)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"serve did not stop in {timeout}s:\n{self.tail()}") from None

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def status(self, field: str) -> int:
        """A number from /proc/<pid>/status (``VmRSS`` in kB, ``Threads``)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def accepted(self, port: int) -> int:
        """How many TCP connections to local ``port`` the process has accepted (holds an fd
        for: a connection still in the listen backlog is not counted)."""
        assert self.proc is not None
        inodes = set()
        for fd in Path(f"/proc/{self.proc.pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        hexport = f":{port:04X}"
        n = 0
        for proto in ("tcp", "tcp6"):
            for line in Path(f"/proc/{self.proc.pid}/net/{proto}").read_text().splitlines()[1:]:
                f = line.split()
                n += f[1].endswith(hexport) and f[3] == "01" and f[9] in inodes  # ESTABLISHED
        return n

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
