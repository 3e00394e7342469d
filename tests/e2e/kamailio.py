"""Kamailio under test (app_python3, KEMI, ``examples/kamailio``): what the Kamailio end-to-end
tests share: the process (started and stopped by PID), SIPp's OPTIONS load, the workers' report
files, why the tests skip on this machine. The ``kamailio_factory`` fixture is in conftest.py.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import wait_until
from tests.support.sip import sip_options
from tests.support.sipp import embedded_python, run_sipp

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "kamailio"
CFG = EXAMPLE / "kamailio.cfg"
KEMI = EXAMPLE / "kamailio_kemi.py"
OPTIONS_XML = EXAMPLE / "options.xml"

CALLS = 2000  # SIPp uac calls (INVITE + ACK + BYE each)
CALL_RATE = 200  # calls per second, steady
OPTIONS = 1000  # OPTIONS requests
OPTIONS_RATE = 200
CHILDREN = 4  # Kamailio UDP workers: 4 processes, each with its own producers


def _kamailio() -> str | None:
    return shutil.which("kamailio") or next(
        (p for p in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio") if os.path.exists(p)),
        None,
    )


def _app_python3() -> str | None:
    found = glob.glob("/usr/lib/*/kamailio/modules/app_python3.so") + glob.glob(
        "/usr/local/lib*/kamailio/modules/app_python3.so"
    )
    return found[0] if found else None


def _skip_reason() -> str | None:
    missing = []
    kam = _kamailio()
    if kam is None:
        missing.append("kamailio")
    mod = _app_python3()
    if mod is None:
        missing.append("kamailio-python3-modules (app_python3.so)")
    if shutil.which("sipp") is None:
        missing.append("sip-tester (sipp)")
    if missing:
        return (
            f"not installed: {', '.join(missing)} "
            "(apt-get install kamailio kamailio-python3-modules sip-tester, "
            "or scripts/install-system-deps.sh --e2e)"
        )
    assert mod is not None
    emb = embedded_python(mod)
    if emb is not None and emb != sys.version_info[:2]:
        return (
            f"app_python3 embeds Python {emb[0]}.{emb[1]} but the tests run on "
            f"{sys.version_info[0]}.{sys.version_info[1]}: their site-packages "
            "(confluent-kafka, orjson) cannot be loaded into Kamailio"
        )
    return None


SKIP = _skip_reason()
"""Why the Kamailio tests cannot run here (None: they can)."""


class Kamailio:
    """One Kamailio started by PID (foreground main, -DD), stopped by PID with SIGTERM."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.rundir = workdir / "run"
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "kamailio.log"
        # RPC socket (kamcmd -s unix:PATH): short, a unix socket path has at most 107 bytes.
        self.ctl = f"/tmp/ek-kam-{port}-{os.getpid()}.ctl"
        kam = _kamailio()
        assert kam is not None
        self.cmd = [
            kam,
            "-f",
            str(CFG),
            "-DD",  # main process stays in the foreground: its PID is ours to stop
            "-E",  # log to stderr -> kamailio.log
            "-Y",
            str(self.rundir),
            "-m",
            "256",  # shm MB: each tm transaction holds ~14 kB for its 5 s wait timer
            "-A",
            f"EK_SIP_PORT={port}",
            "-A",
            f"EK_CHILDREN={CHILDREN}",
            "-A",
            f'EK_KEMI_SCRIPT="{KEMI}"',
            "-A",
            f'EK_CTL_SOCKET="unix:{self.ctl}"',
        ]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.children: set[int] = set()

    def start(self, timeout: float = 20.0) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
            )
        wait_until(self._answers, timeout, f"kamailio answering on udp:127.0.0.1:{self.port}")
        self.children = self._children()

    def _answers(self) -> bool:
        """Kamailio answers an OPTIONS (fails at once if it exited)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"kamailio exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            sip_options(self.port, "ek-drain", timeout=1.0)
        except TimeoutError:
            return False
        return True

    def _children(self) -> set[int]:
        assert self.proc is not None
        pid = self.proc.pid
        kids: set[int] = set()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    kids.update(int(x) for x in f.read().split())
        return kids

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        self.children |= self._children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # main forwards it to every child
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # Children left behind (should not happen) are ours too: by PID, never by name.
        for pid in self.children:
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"kamailio" not in f.read():
                        continue
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.unlink(self.ctl)
        return self.proc.returncode

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def python_errors(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        return [
            ln
            for ln in text.splitlines()
            if ("app_python3" in ln and "ERROR" in ln) or ("event-kafka" in ln and "failed" in ln)
        ]


def options(workdir: Path, port: int, count: int, rate: int, user: str = "ping") -> None:
    rc, stats, out = run_sipp(
        workdir,
        port,
        ["-sf", str(OPTIONS_XML), "-s", user, "-m", str(count), "-r", str(rate)],
    )
    assert rc == 0, f"sipp options exit {rc}, stats {stats}:\n{out}"
    assert stats.get("SuccessfulCall(C)") == count, stats
    assert stats.get("FailedCall(C)") == 0, stats


def read_reports(report_dir: Path) -> list[tuple[int, str, str, str]]:
    """(pid, status, kafka_id, key) of every report line the workers wrote."""
    out = []
    for f in sorted(report_dir.glob("reports.*")):
        pid = int(f.name.split(".", 1)[1])
        for line in f.read_text().splitlines():
            status, kid, key = line.split(" ", 2)
            out.append((pid, status, kid, key))
    return out


def drain_reports(
    k: Kamailio, report_dir: Path, expect: int, timeout: float = 60.0, note: str = ""
) -> None:
    """Send ``ek-drain`` OPTIONS until ``expect`` report lines exist.

    Kamailio 5.6 workers hold the GIL between requests, so event-kafka's poll and report-route
    threads only run while their worker runs Python: the last reports of each worker wait for
    that worker's next request. Each drain request gives one worker (the kernel picks the idle
    one that waited longest) up to 0.5 s to serve them.
    """

    def drained() -> bool:
        if len(read_reports(report_dir)) >= expect:
            return True
        sip_options(k.port, "ek-drain")  # a request: some worker runs Python again
        return False

    wait_until(drained, timeout, f"{expect} delivery reports{note}", step=0)
