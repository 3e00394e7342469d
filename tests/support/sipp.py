"""SIP servers under test (Kamailio, OpenSIPS with its Python module) and SIPp driving them:
loopback UDP ports, the kernel's UDP drop count, the Python they embed, SIPp runs."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import socket
import subprocess
import sysconfig
from pathlib import Path

import event_kafka


def embedded_python(module: str | Path) -> tuple[int, int] | None:
    """The libpython3.X a module (app_python3.so, python.so) is linked against (None if
    unknown)."""
    try:
        ldd = subprocess.run(["ldd", str(module)], capture_output=True, text=True, timeout=10)
        out = ldd.stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"libpython(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def free_udp_port() -> int:
    """A UDP port nobody holds on 127.0.0.1.

    Bound without SO_REUSEADDR on purpose: Kamailio binds its UDP sockets with SO_REUSEADDR,
    so a second Kamailio on a busy port starts fine and silently shares the traffic; a bind
    without the option fails on a port any such socket holds.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def udp_rcvbuf_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets)."""
    try:
        lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()]
    except OSError:
        return -1
    udp = [ln for ln in lines if ln and ln[0] == "Udp:"]
    if len(udp) < 2 or "RcvbufErrors" not in udp[0]:
        return -1
    return int(udp[1][udp[0].index("RcvbufErrors")])


def python_path() -> str:
    """``PYTHONPATH`` making event_kafka and its dependencies importable by Kamailio's Python.

    The package's own source dir comes first (an editable install is a ``.pth`` file, which
    ``PYTHONPATH`` entries do not process), then this interpreter's site-packages.
    """
    src = str(Path(event_kafka.__file__).resolve().parent.parent)
    paths = [src]
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths()[key]
        if p not in paths:
            paths.append(p)
    return os.pathsep.join(paths)


def run_sipp(
    workdir: Path, port: int, args: list[str], timeout: float = 180.0
) -> tuple[int, dict[str, int], str]:
    """Run SIPp against 127.0.0.1:port; returns (exit code, final statistics, output)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stat = workdir / "stat.csv"
    cmd = [
        "sipp",
        f"127.0.0.1:{port}",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
        "-nostdin",
        "-timeout",
        f"{int(timeout - 30)}s",
        "-timeout_error",
        "-trace_err",
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        *args,
    ]
    res = subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    stats: dict[str, int] = {}
    if stat.exists():
        rows = list(csv.reader(stat.read_text().splitlines(), delimiter=";"))
        if len(rows) >= 2:
            for name, value in zip(rows[0], rows[-1], strict=False):
                with contextlib.suppress(ValueError):
                    stats[name] = int(value)
    errors = "\n".join(p.read_text(errors="replace")[-3000:] for p in workdir.glob("*_errors.log"))
    return res.returncode, stats, (res.stdout[-3000:] + res.stderr[-2000:] + errors)


def uac(workdir: Path, port: int, calls: int, rate: int) -> dict[str, int]:
    rc, stats, out = run_sipp(
        workdir, port, ["-sn", "uac", "-s", "1000", "-m", str(calls), "-r", str(rate)]
    )
    assert rc == 0, f"sipp uac exit {rc}, stats {stats}:\n{out}"
    assert stats.get("SuccessfulCall(C)") == calls, stats
    assert stats.get("FailedCall(C)") == 0, stats
    return stats
